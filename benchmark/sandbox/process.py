"""The harness's side of one child process: start it in its namespaces, talk to it under a deadline, end it.

Each child gets its own user ID outside its namespace: a fresh high ID when the
harness runs as root (so the child owns no file on the host and RLIMIT_NPROC
counts only its own processes), else the user's own ID. The parent writes that
map, since a process in a new user namespace cannot map itself to another
user.

Time: every exchange has a deadline, and the child's budget is the total wall
time the harness spends waiting on it (start-up and import included). A child
over budget, or one that breaks the protocol, is killed with its whole PID
namespace.

Ending: `close()` returns only once the child's PID 1 has exited (its pidfd is
readable, which the kernel signals after every other process of the PID
namespace is gone) and its waiting parent has exited too. So when the fit
child is closed, nothing it started is left to hold a lock, a socket or a
key while the replace child runs. Each child runs on its own private copy of
the snapshot, and in its own memory cgroup where one can be made
(`memcg.MemoryGroup`).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..errors import SubmissionError, UserError
from ..untrusted import one_line
from .jail import JailSpec
from .memcg import MemoryGroup
from .protocol import ANSWER_DTYPES, Arrays, Channel, ChannelClosed, ChannelTimeout, ProtocolViolation, SharedInputs
from .zygote import FD_NAMES

FORWARDED_OUTPUT_BYTES = 1 << 20  # written of a child's stdout and stderr (labels included), in all, give or take a line
FORWARDED_LINE_BYTES = 4096  # of one line shown
READ_CHUNK_BYTES = 1 << 16
SYSTEM_PATHS = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/ld.so.conf",
                "/etc/ld.so.conf.d", "/etc/localtime")
GONE_TIMEOUT_S = 30.0  # how long a killed child may take to be gone entirely
HOW_TO_ISOLATE = ("enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
                  "user.max_user_namespaces > 0), or score with --in-process (not isolated; the record says so)")


@dataclass(frozen=True)
class Limits:
    """What one child may use. time_s: wall seconds the harness waits on it in total."""

    time_s: float
    memory_bytes: int
    processes: int = 64
    file_bytes: int = 256 << 20

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# `python -I` ignores the working directory and PYTHONPATH, so `-m benchmark...` would import whichever `benchmark` the
# environment installs, which need not be the harness running now (another checkout, an editable install elsewhere).
# The children run the harness's own package instead: its parent folder goes first on sys.path, then the module runs.
_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); module = sys.argv.pop(1); "
         "runpy.run_module(module, run_name='__main__', alter_sys=True)")


def harness_module_command(module: str, *args: str) -> list[str]:
    """The command that runs `module` (e.g. benchmark.sandbox.child) of this very harness package, isolated (-I)."""
    import benchmark

    root = str(Path(benchmark.__file__).resolve().parent.parent)
    return [sys.executable, "-I", "-u", "-c", _BOOT, root, module, *args]


def read_only_paths() -> tuple[str, ...]:
    """What the child sees, read-only: the interpreter, this environment's packages, the harness, system libraries.

    Nothing else of the project (checkpoints, tasks, leaderboard, tests) and no other path on `sys.path` inside it.
    """
    import benchmark

    from .. import paths

    package = Path(benchmark.__file__).resolve().parent
    project = paths.PROJECT_ROOT.resolve()
    environment = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found = {str(p) for p in environment} | {str(package)} | set(SYSTEM_PATHS)
    for entry in sys.path:
        path = Path(entry).resolve() if entry else None
        if path is None or not path.is_dir():
            continue
        if any(path.is_relative_to(e) for e in environment) or not path.is_relative_to(project):
            found.add(str(path))
    return tuple(sorted(found))


def hidden_paths() -> tuple[str, ...]:
    """Folders of the environment that hold evaluation data (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return ()
    data = Path(spec.origin).resolve().parent / "datasets" / "data"
    return (str(data),) if data.is_dir() else ()


def _outer_ids() -> tuple[int, int]:
    if os.geteuid() == 0:
        uid = 1_500_000_000 + secrets.randbelow(500_000_000)
        return uid, uid
    return os.geteuid(), os.getegid()


def _forward(stream: int, sink: TextIO, label: Callable[[], str]) -> None:
    """Copy the child's output to `sink`, each line marked as the submission's (`label()`: what it is doing now).

    Read in chunks of READ_CHUNK_BYTES, never a whole line: a line is kept to its first FORWARDED_LINE_BYTES
    (a longer one shown cut, ending in ' [line cut]'); lines are shown until FORWARDED_OUTPUT_BYTES have been
    written, then '(more output not shown)' once; the rest is read and dropped (the child never blocks on a full
    pipe).
    Memory: O(READ_CHUNK_BYTES + FORWARDED_LINE_BYTES), whatever the child writes. Text: `untrusted.one_line`.
    """
    forwarded, line, cut, full = 0, bytearray(), False, False

    def show(data: bytes, was_cut: bool) -> None:
        nonlocal forwarded, full
        if full:
            return
        if forwarded >= FORWARDED_OUTPUT_BYTES:
            sink.write(f"  [{label()}] (more output not shown)\n")
            sink.flush()
            full = True
            return
        text = one_line(data.decode("utf-8", "replace").removesuffix("\r")) + (" [line cut]" if was_cut else "")
        out = f"  [{label()}] {text}\n"
        forwarded += len(out.encode())
        sink.write(out)
        sink.flush()

    with os.fdopen(stream, "rb", buffering=0) as source:
        while chunk := source.read(READ_CHUNK_BYTES):
            if full:
                continue
            *ended, rest = chunk.split(b"\n")
            for part in ended:
                room = FORWARDED_LINE_BYTES - len(line)
                show(bytes(line + part[:room]), cut or len(part) > room)
                line, cut = bytearray(), False
            room = FORWARDED_LINE_BYTES - len(line)
            cut = cut or len(rest) > room
            line += rest[:room]
        if line or cut:
            show(bytes(line), cut)


def _child_env() -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))})
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see cli.main: no spinning while the other side computes
    return env


class Zygote:
    """The harness's handle on its zygote (`zygote.py`): started once, in the background, on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._ready = False

    def start(self) -> None:
        """Start the zygote if it is not running; returns at once (it imports torch in the background)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._process = subprocess.Popen(
                    harness_module_command("benchmark.sandbox.zygote", str(theirs.fileno())),
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=_child_env(), cwd="/",
                    start_new_session=True)
            finally:
                theirs.close()
            self._socket, self._ready = ours, False

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self._socket is not None
        self._socket.settimeout(timeout)
        try:
            message = self._socket.recv(1 << 16)
        except (TimeoutError, OSError) as exc:
            raise UserError(f"process isolation failed (the zygote did not answer: {exc}); {HOW_TO_ISOLATE}.") from None
        if not message:
            raise UserError(f"process isolation failed (the zygote exited); {HOW_TO_ISOLATE}.")
        return json.loads(message)

    def spawn(self, spec: dict[str, Any], fds: list[int], timeout: float = 120) -> int:
        """Fork a child from the zygote with `fds` as its descriptors; its PID."""
        self.start()
        with self._lock:
            assert self._socket is not None
            if not self._ready:
                self._receive(timeout)
                self._ready = True
            socket.send_fds(self._socket, [json.dumps({"spawn": spec}).encode()], fds)
            reply = self._receive(timeout)
        if "pid" not in reply:
            raise UserError(f"process isolation failed ({reply.get('error')}); {HOW_TO_ISOLATE}.")
        return int(reply["pid"])


ZYGOTE = Zygote()


def _private_copy(folder: Path) -> Path:
    """A copy of the snapshot `folder` for one child alone (modes kept: read-only), so that no inode, lock or page
    of the snapshot is shared with the other child."""
    holder = Path(tempfile.mkdtemp(prefix="replacebench-copy-"))
    copy = holder / "submission"
    shutil.copytree(folder, copy)
    holder.chmod(0o755)
    return copy


def _remove_copy(copy: Path) -> None:
    for root, dirs, _ in os.walk(copy):
        os.chmod(root, 0o755)
    shutil.rmtree(copy.parent, ignore_errors=True)


class Child:
    """One child process serving requests about one submission snapshot, in its own namespaces."""

    def __init__(self, folder: Path, limits: Limits, label: str, probe: bool = False):
        self.label, self.limits = label, limits
        self.used = 0.0
        self._popen: subprocess.Popen | None = None
        self._pidfd: int | None = None  # PID 1 of the child's PID namespace, once it said ready
        self._status_text, self._status_done = b"", False
        self._copy = _private_copy(folder)
        self.memory_group = None if probe else MemoryGroup.create(limits.memory_bytes)
        self._root = tempfile.mkdtemp(prefix="replacebench-root-")
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        sync_in, sync_to_parent = os.pipe()
        sync_from_parent, sync_out = os.pipe()
        status_read, status_write = os.pipe()
        err_read, err_write = os.pipe()
        cpu = int(limits.time_s * (os.cpu_count() or 1)) + 30
        jail = JailSpec(new_root=self._root, read_only=read_only_paths(), submission=str(self._copy), hidden=hidden_paths(),
                        memory_bytes=limits.memory_bytes, processes=limits.processes, file_bytes=limits.file_bytes,
                        cpu_seconds=cpu)
        self.shared = SharedInputs()
        child_fds = [child_reads, child_writes, sync_to_parent, sync_from_parent, status_write, self.shared.fd]
        spec: dict[str, Any] = {"probe": probe, "jail": asdict(jail)}
        try:
            if probe:  # started from scratch: no torch to import, so no zygote needed
                numbered = dict(zip(FD_NAMES, child_fds))
                self._popen = subprocess.Popen(
                    harness_module_command("benchmark.sandbox.child", json.dumps({**spec, **numbered})),
                    pass_fds=child_fds, stdin=subprocess.DEVNULL, stdout=err_write, stderr=err_write, env=_child_env(),
                    cwd="/", start_new_session=True)
                self.pid = self._popen.pid
            else:
                self.pid = ZYGOTE.spawn(spec, [*child_fds, err_write])
        finally:
            for fd in (*child_fds[:-1], err_write):
                os.close(fd)
        self._forwarder = threading.Thread(target=_forward, args=(err_read, sys.stderr, lambda: self.label), daemon=True)
        self._forwarder.start()
        self.channel = Channel(parent_reads, parent_writes)
        self._sync = (sync_in, sync_out)
        self._status = status_read
        self._mapped = False

    def _map_user(self) -> None:
        """Answer the child's unshare: write its user and group maps, then let it go on.

        A child that failed before it unshared says why on the protocol channel, read next.
        """
        import select

        sync_in, sync_out = self._sync
        try:
            ready = select.select([sync_in], [], [], max(self._remaining(), 0.0))[0]
            if ready and os.read(sync_in, 1) == b"u":
                uid, gid = _outer_ids()
                pid = self.pid
                if self.memory_group is not None:  # before it forks PID 1: every process it starts is born inside
                    try:
                        self.memory_group.add(pid)
                    except OSError:  # made but not joinable here (a delegation rule): RLIMIT_AS alone, as without one
                        self.memory_group.remove()
                        self.memory_group = None
                if os.geteuid() != 0:  # an unprivileged map needs setgroups denied
                    Path(f"/proc/{pid}/setgroups").write_text("deny")
                Path(f"/proc/{pid}/uid_map").write_text(f"0 {uid} 1")
                Path(f"/proc/{pid}/gid_map").write_text(f"0 {gid} 1")
                os.write(sync_out, b"g")
        finally:
            os.close(sync_in)
            os.close(sync_out)
        self._mapped = True

    def _remaining(self) -> float:
        return self.limits.time_s - self.used

    def receive_ready(self) -> None:
        """Wait for the child's 'ready' (namespaces, jail, numpy and torch in place)."""
        try:
            if not self._mapped:
                self._map_user()
            header, _ = self._exchange(None, None, 0)
        except OSError as exc:
            self.kill()
            raise UserError(f"process isolation failed ({exc}); {HOW_TO_ISOLATE}.") from None
        if "jail_error" in header:
            self.kill()
            raise UserError(f"process isolation failed ({header['jail_error']}); {HOW_TO_ISOLATE}.")
        self._open_pid_one()

    # -- the status pipe: "pid N\n" (PID 1's outer PID), then the exit code; closed when the waiting parent exits --
    def _read_status(self, timeout: float, enough: Callable[[], bool] = lambda: False) -> None:
        """Read what the status pipe has within `timeout` seconds, up to its end or until `enough()`."""
        deadline = time.monotonic() + timeout
        while not self._status_done and not enough():
            if not select.select([self._status], [], [], max(deadline - time.monotonic(), 0.0))[0]:
                return
            chunk = os.read(self._status, 64)
            if not chunk:
                self._status_done = True
            self._status_text += chunk
            if len(self._status_text) > 256:  # only trusted code writes here; never hold more
                self._status_done = True

    def _status_lines(self) -> tuple[int | None, str | None]:
        """(PID 1's outer PID, the exit code text) as far as read."""
        pid, code = None, None
        for line in self._status_text.decode("ascii", "replace").split("\n"):
            if line.startswith("pid ") and line[4:].isdigit():
                pid = int(line[4:])
            elif line.strip():
                code = line.strip()
        return pid, code

    def _open_pid_one(self) -> None:
        """A pidfd of PID 1 (alive: it just said ready), to kill it and see it gone without a PID-reuse race."""
        self._read_status(5.0, lambda: b"\n" in self._status_text)
        pid, code = self._status_lines()
        if pid is None or code is not None:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        self._read_status(0.0, lambda: self._status_lines()[1] is not None)
        if self._status_lines()[1] is not None:  # it ended meanwhile: that PID may be someone else's now
            os.close(pidfd)
            return
        self._pidfd = pidfd

    def request(self, header: dict[str, Any], arrays: Arrays | None, max_bytes: int) -> tuple[dict[str, Any], Arrays]:
        """Send one request and wait for its answer; failures of the child become SubmissionErrors."""
        return self._exchange(header, arrays, max_bytes)

    def _exchange(self, header: dict[str, Any] | None, arrays: Arrays | None, max_bytes: int) -> tuple[dict[str, Any], Arrays]:
        start = time.monotonic()
        deadline = start + max(self._remaining(), 0.0)
        try:
            if header is not None:
                self.channel.send(header, arrays, deadline, shared=self.shared)
            reply, out = self.channel.receive(max_bytes, deadline, accept=ANSWER_DTYPES)  # float32 answers only
        except ChannelTimeout:
            self.kill()
            raise SubmissionError(f"{self.label} exceeded its time limit of {self.limits.time_s:g} s "
                                  "(raise it with --time-limit SECONDS)") from None
        except ChannelClosed:
            raise SubmissionError(f"{self.label} {self._how_it_ended()} before answering") from None
        except ProtocolViolation as exc:
            self.kill()
            raise SubmissionError(f"{self.label} broke the protocol: {exc}") from None
        finally:
            self.used += time.monotonic() - start
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self.kill()
            raise SubmissionError(f"{self.label} broke the protocol: an answer without an 'ok' field")
        return reply, out

    def _how_it_ended(self) -> str:
        """From the status the child's waiting parent wrote: its exit code, or the signal that ended it."""
        self._read_status(5.0, lambda: self._status_lines()[1] is not None)
        text = self._status_lines()[1]
        if text is None or not text.isdigit():
            self.kill()
            return "closed its pipes"
        code = int(text)
        if self.memory_group is not None and self.memory_group.ran_out():
            return (f"was killed on reaching its memory limit of {self.limits.memory_bytes / (1 << 30):g} GiB "
                    "(raise it with --memory-limit)")
        if code > 128 and code - 128 in signal.valid_signals():
            name = signal.Signals(code - 128).name
            hint = " (a limit: memory, CPU or file size)" if name in ("SIGKILL", "SIGXCPU", "SIGXFSZ", "SIGSEGV") else ""
            return f"was killed by {name}{hint}"
        return f"exited with status {code}"

    def kill(self) -> None:
        """End the child and everything it started, and return only once all of it is gone.

        PID 1 is killed through its pidfd; the pidfd turns readable once PID 1 has exited, which the kernel lets
        happen only after every other process of its PID namespace is gone. Its waiting parent then exits and
        closes the status pipe. A child that never got as far as PID 1 is killed as a process group.
        """
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if not select.select([self._pidfd], [], [], GONE_TIMEOUT_S)[0]:
                raise UserError(f"process isolation failed ({self.label} did not end within {GONE_TIMEOUT_S:g} s "
                                "of being killed)")
        self._read_status(5.0)  # its parent exits after PID 1
        if not self._status_done:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._read_status(GONE_TIMEOUT_S)
        if self._popen is not None:
            self._popen.kill()
            self._popen.wait()

    def close(self, grace: float = 2.0) -> None:
        """Close the pipes (a well-behaved child then exits on its own, within `grace` seconds), then kill; on return
        nothing of the child is left: no process, no mount, no memory group, no copy of the snapshot."""
        for fd in (self.channel.read_fd, self.channel.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.shared.close()
        try:
            self._read_status(grace)
            self.kill()
        finally:
            for fd in (self._status, self._pidfd):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._pidfd, self._status_done = None, True
            self._forwarder.join(timeout=5)
            try:
                os.rmdir(self._root)
            except OSError:
                pass
            if self.memory_group is not None:
                self.memory_group.remove()
            _remove_copy(self._copy)


_PROBE: list[str | None] = []


def isolation_problem() -> str | None:
    """Why process isolation does not work here (one line), or None when it does; checked once per process."""
    if not _PROBE:
        if not sys.platform.startswith("linux"):
            _PROBE.append("process isolation needs Linux namespaces")
        else:
            empty = Path(tempfile.mkdtemp(prefix="replacebench-probe-"))
            child = Child(empty, Limits(time_s=30, memory_bytes=1 << 30), "isolation probe", probe=True)
            try:
                child.receive_ready()
                _PROBE.append(None)
            except (UserError, SubmissionError) as exc:
                _PROBE.append(str(exc))
            finally:
                child.close()
                empty.rmdir()
    return _PROBE[0]
