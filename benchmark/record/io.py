"""Writing a record and its per-example `.npz` sidecar, and reading the sidecar back, checked (layout: `layout.py`).

Both files are written to temporary names in the same folder and renamed into place, sidecar first, so a reader
never sees a partial file, and two concurrent runs never write into the same file: the record that lands last wins
whole, and always names its own sidecar. A record itself is read with `Record.read` (`typed.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from ..atomic import atomic_write_bytes
from ..download import sha256_file
from ..errors import UserError
from .layout import record_stem
from .typed import Record, Sidecar, SubmissionInfo

STALE_SIDECAR_SECONDS = 600


def record_json(record: Record) -> bytes:
    """The bytes of a record file: `to_dict()` as indented JSON, in the record's key order, one trailing newline."""
    return (json.dumps(record.to_dict(), indent=2, sort_keys=False) + "\n").encode()


def write_record(record: Record, arrays: dict[str, np.ndarray], results_dir: Path, task_slug: str,
                 submission: str) -> tuple[Path, Record]:
    """Write the sidecar, then the record that names it; remove this submission's stale sidecars of the same split.

    The file stem is `record_stem(submission, record.split)`. Returns the record's path and the record as written
    (with its `sidecar`).
    """
    submission = record_stem(submission, record.split)
    folder = results_dir / task_slug
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    payload = buffer.getvalue()
    sidecar_sha = hashlib.sha256(payload).hexdigest()
    sidecar = folder / f"{submission}.{sidecar_sha[:12]}.npz"
    atomic_write_bytes(sidecar, payload)
    record = dataclasses.replace(record, sidecar=Sidecar(file=sidecar.name, sha256=sidecar_sha))
    path = folder / f"{submission}.json"
    atomic_write_bytes(path, record_json(record))
    now = time.time()
    # never a glob over user text; `x.<sha12>.npz` never matches `x.heldout.<sha12>.npz`, nor the reverse
    ours = re.compile(re.escape(submission) + r"\.[0-9a-f]{12}\.npz")
    for old in folder.iterdir():
        if ours.fullmatch(old.name) and old.name != sidecar.name and now - old.stat().st_mtime > STALE_SIDECAR_SECONDS:
            old.unlink(missing_ok=True)
    return path, record


class _Meta(Protocol):
    @property
    def authors(self) -> tuple[str, ...]: ...


class Submitted(Protocol):
    """What `check_overwrite` reads of a submission (a `harness.submissions.Snapshot`)."""

    @property
    def name(self) -> str: ...

    @property
    def meta(self) -> _Meta: ...

    @property
    def content_hash(self) -> str: ...


def submission_of(path: Path) -> SubmissionInfo | None:
    """Who made the record at `path` (its `submission` part, with `authors` and `content_hash` of the right types);
    None when it is not a readable record."""
    try:
        existing = Record.from_dict(json.loads(path.read_text()), str(path)).submission
    except (OSError, ValueError, TypeError, UserError):
        return None
    if not (isinstance(existing, SubmissionInfo) and isinstance(existing.content_hash, str)
            and isinstance(existing.authors, list)):
        return None
    return existing


def check_overwrite(results_dir: Path, task_slug: str, snapshot: Submitted, split: str = "public") -> None:
    """Refuse to replace a record (of the same split) that a different submission (hash or authors) made under the
    same name."""
    path = results_dir / task_slug / f"{record_stem(snapshot.name, split)}.json"
    if not path.exists():
        return
    existing = submission_of(path)
    if existing is None:
        raise UserError(f"{path} exists and is not a readable record; delete it, or pass --force to overwrite it.")
    if existing.authors != list(snapshot.meta.authors):
        raise UserError(f"{path} was made by authors {existing.authors}, not {list(snapshot.meta.authors)}; "
                        "pick another submission name, or pass --force to overwrite it.")
    if existing.content_hash != snapshot.content_hash:
        raise UserError(f"{path} was made from a different version of '{snapshot.name}' (hash "
                        f"{existing.content_hash[:12]}, now {snapshot.content_hash[:12]}); pass --force to replace it.")


def read_sidecar(record_path: Path, record: Record) -> dict[str, np.ndarray]:
    """The per-example arrays a record names, checked against the sha256 it stores."""
    if record.sidecar is None:
        raise UserError(f"{record_path.name} names no per-example file; score again.")
    sidecar = record_path.parent / record.sidecar.file
    if not sidecar.exists() or sha256_file(sidecar) != record.sidecar.sha256:
        raise UserError(f"per-example file {sidecar} is missing or does not match {record_path.name}; score again.")
    with np.load(sidecar) as data:
        return {key: data[key] for key in data.files}
