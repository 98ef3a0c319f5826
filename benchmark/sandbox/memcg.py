"""A memory cgroup per child, where the harness may make one: a bound on all the memory of the child and of every
process it starts, together.

RLIMIT_AS (`jail.limit_address_space`) bounds each process's mappings, but not memory that is no mapping of
any process (the pages of a memfd written with write(2)), nor the sum over the processes a child starts. A
memory cgroup charges every page its processes touch, shared or file-backed, to one counter with one limit.

Where one can be made (cgroup v2 with the memory controller delegated to the harness's own group, or a writable
cgroup v1 memory hierarchy), `MemoryGroup.create` makes `replacebench-<pid>-<n>` under the harness's own group,
limits it to the child's memory limit (with no swap beyond it), and the harness moves the child's first process
into it before that process forks anything. Elsewhere it returns None and RLIMIT_AS is the only bound; the
record's isolation mechanism says which applied (`mechanism`).
"""

from __future__ import annotations

import atexit
import errno
import itertools
import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_numbers = itertools.count()


def _own_groups() -> tuple[Path | None, Path | None]:
    """The harness's own memory cgroup: (v2 folder, v1 folder), None where that hierarchy is not there."""
    v2 = v1 = None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        number, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if number == "0" and controllers == "":
            for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
                if (mount / "cgroup.controllers").is_file():
                    v2 = mount / relative
                    break
        elif "memory" in controllers.split(","):
            v1 = CGROUP_ROOT / "memory" / relative
    return v2, v1


class MemoryGroup:
    """One child's memory cgroup: limit, membership, whether it ran out, removal."""

    def __init__(self, folder: Path, version: int):
        self.folder, self.version = folder, version

    @property
    def mechanism(self) -> str:
        return "cgroup v2 memory.max" if self.version == 2 else "cgroup v1 memory.limit_in_bytes"

    @classmethod
    def create(cls, limit_bytes: int) -> MemoryGroup | None:
        """A new group limited to `limit_bytes`, or None where none can be made here."""
        v2, v1 = _own_groups()
        name = f"replacebench-{os.getpid()}-{next(_numbers)}"
        if v2 is not None and "memory" in _read(v2 / "cgroup.subtree_control").split():
            group = cls._make(v2 / name, 2, {"memory.max": limit_bytes, "memory.swap.max": 0})
            if group is not None:
                return group
        if v1 is not None and (v1 / "memory.limit_in_bytes").is_file():
            return cls._make(v1 / name, 1, {"memory.limit_in_bytes": limit_bytes,
                                            "memory.memsw.limit_in_bytes": limit_bytes})
        return None

    @classmethod
    def _make(cls, folder: Path, version: int, settings: dict[str, int]) -> MemoryGroup | None:
        try:
            folder.mkdir()
        except OSError:
            return None
        group = cls(folder, version)
        try:
            for i, (name, value) in enumerate(settings.items()):
                try:
                    (folder / name).write_text(str(value))
                except FileNotFoundError:
                    if i == 0:  # the limit itself: required; the swap limit: only where swap accounting is on
                        raise
        except OSError:
            group.remove()
            return None
        return group

    def add(self, pid: int) -> None:
        """Move process `pid` (before it forks: its descendants are born inside) into the group."""
        (self.folder / "cgroup.procs").write_text(str(pid))

    def ran_out(self) -> bool:
        """Whether the kernel killed a process of the group for want of memory (its OOM killer ran there)."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        counts = dict(line.split()[:2] for line in _read(self.folder / name).splitlines() if len(line.split()) >= 2)
        return int(counts.get("oom_kill", 0)) > 0

    def remove(self) -> None:
        """Remove the group (its processes must be gone); quietly leaves it where the kernel still refuses.

        A process that has just exited may hold the group for a moment more (until its parent reaps it), so a busy
        group is retried for up to a second, and once more when the harness exits."""
        for _ in range(20):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return
                time.sleep(0.05)
        if not _LEFT:
            atexit.register(_remove_left)
        _LEFT.append(self.folder)


_LEFT: list[Path] = []


def _remove_left() -> None:
    for folder in _LEFT:
        try:
            folder.rmdir()
        except OSError:
            pass


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
