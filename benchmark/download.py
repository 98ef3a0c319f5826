"""Downloads that verify what they fetched, and never leave a partial file.

`download(url, dest, sha256=...)` streams `url` (http(s):// or file://) into a
temporary file beside `dest`, checks its sha256 when one is expected, and only
then renames it into place. A failed or interrupted download leaves nothing at
`dest`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .atomic import atomic_path
from .errors import UserError

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


#: (resolved path, size, mtime_ns) -> sha256 hex, for files hashed again and again in one process
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: str | os.PathLike) -> str:
    """`sha256_file`, memoised on (resolved path, size, mtime_ns): an unchanged file is hashed once per process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 60.0,
             by_hand: str | None = None, check: Callable[[Path], None] | None = None) -> str:
    """Fetch `url` to `dest` atomically (`atomic.atomic_path`); verify `sha256` if given. Returns the file's sha256.

    `check(tmp)`: a further test of the downloaded file before it is renamed into place (raising leaves nothing).
    `by_hand`: what a user without the network should do instead (default: put the file into `dest`'s folder).
    """
    dest = Path(dest)
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        digest.update(block)
                        out.write(block)
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                instead = by_hand or f"fetch the file by hand into {dest.parent}"
                raise UserError(f"could not download {url}: {reason}. Check the network, or {instead}.") from None
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise UserError(f"{url} has sha256 {actual}, expected {sha256}: the download is corrupt or the source changed. Try again, or report it.")
        if check is not None:
            check(tmp)
    return actual
