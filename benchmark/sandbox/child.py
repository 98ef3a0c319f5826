"""A submission's child process: forked by the zygote (`zygote.py`), or started as
`python -I -u -m benchmark.sandbox.child SPEC_JSON` (the isolation probe).

Trusted until it imports the submission:
1. `unshare(2)` into new user, mount, PID, network, IPC and UTS namespaces, then
   tell the parent, which writes the user-ID map (the child cannot map itself to
   an unprivileged outer user), and wait for its go-ahead;
2. fork, so that the grandchild is PID 1 of the new PID namespace (the
   intermediate process tells the harness PID 1's outer PID, then only waits
   and passes on the exit status; the grandchild dies with it). The
   intermediate's wait returns only once the whole PID namespace is gone, so
   its exit tells the harness that nothing of this child is left;
3. build the jail (`jail.enter`), join a fresh session keyring, import numpy
   and torch, cap the address space (`jail.limit_address_space`), say "ready";
4. serve requests (`worker.handle`) on the protocol pipes until the parent
   closes them. The submission's code is imported at the first `load` request.

Standard output is redirected to standard error, which the parent prefixes and
forwards, so nothing the submission prints looks like the harness's own output.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from .framing import frame_header

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG = 1
KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 283, "s390x": 280}
KEYCTL_JOIN_SESSION_KEYRING = 1


def _namespaces(sync_write: int, sync_read: int) -> None:
    """unshare(2) into new namespaces; the harness then writes this process's user map."""
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
    os.write(sync_write, b"u")
    if os.read(sync_read, 1) != b"g":
        raise OSError("the harness did not map this process's user")
    os.close(sync_write)
    os.close(sync_read)


def _become_namespace_root() -> None:
    """Switch to the namespace's root, which the harness mapped to an unprivileged outer user."""
    if os.getgroups():
        try:
            os.setgroups([])  # allowed where the harness is root; otherwise setgroups is denied and these are the user's own
        except PermissionError:
            pass
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _become_pid_one(protocol_fds: tuple[int, int], status_fd: int) -> None:
    """Fork; the parent waits and reports the child's exit status, the child carries on as PID 1.

    The waiting parent closes the protocol pipes, so the harness sees them close when PID 1 dies, and writes
    the status (an exit code, or 128 + the signal) to `status_fd` for the harness's message.
    """
    pid = os.fork()
    if pid == 0:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.close(status_fd)
        return
    os.write(status_fd, f"pid {pid}\n".encode())  # PID 1's PID outside, where the harness can kill and watch it
    for fd in protocol_fds:
        os.close(fd)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    os.write(status_fd, str(code).encode())
    os._exit(0)


def _own_session_keyring() -> None:
    """Join a new anonymous session keyring, so that no key links into the one inherited from the zygote (kernel
    keys outlive a process: a keyring both children share would carry data from fit to replace)."""
    import platform

    number = KEYCTL_SYSCALL.get(platform.machine())
    if number is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(ctypes.c_long(number), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None) < 0:
            err = ctypes.get_errno()
            if err not in (1, 38):  # EPERM (a seccomp filter), ENOSYS: no keys here, so no keyring to share either
                raise OSError(err, f"join a session keyring: {os.strerror(err)}")


def run(spec: dict) -> None:
    """Namespaces, jail, then serve; `spec` names the pipes' descriptors in this process."""
    read_fd, write_fd = spec["read_fd"], spec["write_fd"]
    try:
        from .jail import JailSpec, enter, open_sources

        jail = JailSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["jail"].items()})
        _namespaces(spec["sync_write"], spec["sync_read"])
        sources = open_sources(jail)  # in the new mount namespace, still as the outer user
        _become_namespace_root()
        _become_pid_one((read_fd, write_fd), spec["status_fd"])
        _own_session_keyring()
        enter(jail, sources)
    except Exception as exc:  # the jail failed before any submission code: a harness-side problem
        # nothing more is imported: the jail may be half built
        os.write(write_fd, frame_header({"ok": False, "jail_error": f"{type(exc).__name__}: {exc}"}))
        return
    from .protocol import Channel, SharedView

    channel = Channel(read_fd, write_fd, blocking=True, shared=SharedView(spec["shared_fd"]))
    if spec.get("probe"):
        channel.send({"ok": True})
        return
    import numpy  # noqa: F401 - imported before the submission (a no-op when forked from the zygote)
    import torch  # noqa: F401

    from .jail import limit_address_space

    limit_address_space(jail.memory_bytes)  # after torch: its own reservations are not the submission's
    from .protocol import INPUT_DTYPES, ChannelClosed
    from .worker import Worker, handle

    worker = Worker("/submission")
    channel.send({"ok": True})
    while True:
        try:
            header, arrays = channel.receive(max_bytes=1 << 40, accept=INPUT_DTYPES)  # float32, or int64 ids
        except ChannelClosed:
            return
        reply, out = handle(worker, header, arrays)
        channel.send(reply, out)


def main() -> None:
    """Started directly (the isolation probe): the spec is the first argument; stdout goes to stderr."""
    os.dup2(2, 1)
    run(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
