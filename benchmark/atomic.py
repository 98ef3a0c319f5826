"""Files that appear whole or not at all: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(dest: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """A fresh temporary path beside `dest`: renamed onto `dest` when the block succeeds, removed otherwise.

    The rename is atomic on one filesystem, so readers see the old file or the
    new one, and concurrent writers never write into the same file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `dest` atomically (flushed to disk before the rename)."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
