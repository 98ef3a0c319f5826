"""The children's jail: run inside fresh Linux namespaces, before any submission code.

`unshare --user --map-root-user --mount --net --pid --ipc --uts --fork --kill-child`
starts the child process; `enter(spec)` then, still trusted, builds its view of
the world and gives up every privilege:

- a new root: an empty tmpfs with read-only bind mounts of only what Python
  needs (the interpreter, the environment's packages, the harness's own code,
  system libraries) and the submission's snapshot at /submission;
- empty folders in place of data sets that packages ship (scikit-learn's
  bundled digits, the labels of the `digits-mlp` eval set);
- a private writable /tmp and /dev/shm (tmpfs of a fixed size), a minimal /dev,
  and a /proc of its own PID namespace;
- `pivot_root` into it and a detached unmount of the old root, so nothing of
  the host's file system (checkpoints, data, cache, leaderboard, repository,
  home) is reachable;
- resource limits (RLIMIT_DATA for memory, and once torch is imported
  RLIMIT_AS: the address space then in use plus the memory limit, so shared
  and file-backed mappings count too; RLIMIT_NPROC counted inside the
  user namespace, RLIMIT_FSIZE, RLIMIT_CPU as a backstop to the parent's wall
  clock, no core files);
- no capabilities (all sets and the bounding set cleared) and no_new_privs.

The network namespace has only a loopback interface that is down: no socket
reaches anything. When the child (PID 1 of its namespace) exits or is killed,
the kernel kills every process it started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource
from dataclasses import dataclass

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 24, 47, 4
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# statvfs flags a remount inside a user namespace must keep (they are locked)
STATVFS_TO_MS = {os.ST_RDONLY: MS_RDONLY, os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
                 1024: 1024, 2048: 2048, 4096: 1 << 21}  # noatime, nodiratime, relatime
DEVICES = ("null", "zero", "random", "urandom")


@dataclass(frozen=True)
class JailSpec:
    """What the child may see and how much it may use."""

    new_root: str  # an empty directory on the host, mounted over with a tmpfs
    read_only: tuple[str, ...]  # host paths bound read-only at the same path
    submission: str  # host path of the snapshot, bound read-only at /submission
    hidden: tuple[str, ...]  # folders inside `read_only` covered by an empty read-only tmpfs (packaged data sets)
    memory_bytes: int
    processes: int
    file_bytes: int
    cpu_seconds: int


class JailError(RuntimeError):
    """The jail could not be built (the kernel or a mount refused)."""


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise JailError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _bind_read_only(source: str, target: str) -> None:
    """Bind `source` (a path, or /proc/self/fd/N of an O_PATH descriptor) read-only at `target`."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND)
    locked = 0
    flags = os.statvfs(target).f_flag
    for st, ms in STATVFS_TO_MS.items():
        if flags & st:
            locked |= ms
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | locked)


def _pivot_root(new_root: str) -> None:
    number = PIVOT_ROOT_SYSCALL.get(platform.machine())
    os.chdir(new_root)
    if number is None:  # unknown architecture: chroot (no capability is left to escape it)
        os.chroot(".")
    else:
        _check(_libc.syscall(ctypes.c_long(number), b".", b"."), "pivot_root")
        _check(_libc.umount2(b".", MNT_DETACH), "unmount the old root")
    os.chdir("/")


def _drop_privileges() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "drop capabilities")


def _limit(kind: int, value: int) -> None:
    resource.setrlimit(kind, (value, value))


def address_space() -> int:
    """This process's address space now, in bytes (VmSize of /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise JailError("no VmSize in /proc/self/status")


def limit_address_space(memory_bytes: int) -> None:
    """RLIMIT_AS (soft and hard, so it cannot be raised again) = the address space in use now + `memory_bytes`.

    RLIMIT_DATA misses shared mappings (anonymous MAP_SHARED, a memfd mapped shared); RLIMIT_AS counts every
    mapping, reserved (MAP_NORESERVE) or not. Set after torch is imported: a CUDA build of torch reserves GBs of
    address space it never touches, which is the harness's, not the submission's. Every process the child starts
    inherits the limit.
    """
    _limit(resource.RLIMIT_AS, address_space() + memory_bytes)


def open_sources(spec: JailSpec) -> dict[str, int]:
    """O_PATH descriptors of everything to bind.

    Opened in the new mount namespace (a bind source must belong to it) but before the switch to the mapped
    user, which may not traverse the host's private directories (a /root of mode 700, say).
    """
    fds = {}
    for path in (*spec.read_only, spec.submission):
        if os.path.islink(path):
            continue  # recreated as a link (merged /usr: /bin -> usr/bin)
        try:
            fds[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
    return fds


def enter(spec: JailSpec, sources: dict[str, int]) -> None:
    """Build the jail around this process and drop into it (irreversible). `sources`: from `open_sources`."""
    root = spec.new_root
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755")
    # the private /tmp and /dev/shm first, so that a read-only path under the host's /tmp (a harness or environment
    # living there) is bound on top of them, not hidden under them
    for name, size in (("tmp", spec.file_bytes), ("dev/shm", spec.file_bytes)):
        os.makedirs(f"{root}/{name}", exist_ok=True)
        _mount("tmpfs", f"{root}/{name}", "tmpfs", MS_NOSUID | MS_NODEV, f"size={max(size, 1 << 20)},mode=1777")
    for path in spec.read_only:
        if path in sources:
            _bind_read_only(f"/proc/self/fd/{sources[path]}", root + path)
        elif os.path.islink(path):
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(os.readlink(path), root + path)
    _bind_read_only(f"/proc/self/fd/{sources[spec.submission]}", root + "/submission")
    for path in spec.hidden:
        if os.path.isdir(root + path):
            _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
    for fd in sources.values():  # a descriptor of a host directory would lead out of the new root
        os.close(fd)
    for device in DEVICES:
        target = f"{root}/dev/{device}"
        open(target, "a").close()
        _mount(f"/dev/{device}", target, None, MS_BIND)
    os.makedirs(f"{root}/proc", exist_ok=True)
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _pivot_root(root)
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)  # the new root itself: read-only
    _limit(resource.RLIMIT_DATA, spec.memory_bytes)
    _limit(resource.RLIMIT_NPROC, spec.processes)
    _limit(resource.RLIMIT_FSIZE, spec.file_bytes)
    _limit(resource.RLIMIT_CPU, spec.cpu_seconds)
    _limit(resource.RLIMIT_CORE, 0)
    _drop_privileges()
