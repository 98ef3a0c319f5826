"""Submission folders, read as data: a hashed read-only snapshot, its metadata, and checks on what crosses back.

A submission is a folder with `submission.toml` (name, authors, kind,
description, optional tasks) and `replacement.py`, which defines `replace(...)`
and optionally `fit(...)`. Both declare what they read by parameter name:

- an allowed input activation of the task (`image`, `conv1`, `mixed3a`, …),
- `**inputs` for every allowed input,
- `task`: a read-only `TaskView`,
- `params`: what `fit` returned (`replace` only),
- `target`: the original activation of the task's units on the fit split (`fit` only).

The harness never imports this code: `take_snapshot` copies the folder (regular
files only, within size caps) to a private read-only directory and hashes it
before anything runs, and the code runs in child processes (`sandbox`). This
module checks the folder, and the signatures its source declares (`check_signatures`); what a child sends back is
checked by the sandbox (`sandbox/checks.py`).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..errors import UserError, did_you_mean, unknown
from ..sandbox.checks import RESERVED_FIT, RESERVED_REPLACE, check_params_have_fit, read_signature
from ..sandbox.worker import CODE_FILE, TaskView
from ..tasks import Task
from ..untrusted import is_safe
from .description import Description, measure_folder
from .static import StaticCode, read_code

__all__ = ["TaskView", "Snapshot", "take_snapshot", "check_signatures"]

KINDS = ("baseline", "hand-written", "fitted")
META_FILE = "submission.toml"
META_KEYS = ("name", "authors", "kind", "description", "tasks")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
MAX_FILES = 200
MAX_FOLDER_BYTES = 32 << 20


@dataclass(frozen=True)
class SubmissionMeta:
    name: str
    kind: str
    authors: tuple[str, ...]
    description: str
    tasks: tuple[str, ...]  # task-id globs it serves


@dataclass
class Snapshot:
    """A submission folder as it was before any of its code ran: copied, read-only, hashed. `with take_snapshot(…)
    as snapshot:` removes the private copy at the end (`cleanup`)."""

    source: Path  # the folder the user named
    folder: Path  # the private copy children see (as /submission)
    meta: SubmissionMeta
    content_hash: str  # sha256 over (relative path, bytes) of every file, sorted, length-prefixed (`content_hash`)
    files: tuple[str, ...]
    description_bytes_xz: int  # xz size of every file's bytes (the description length before schema 3)
    description: Description  # description length by the convention of `description.py`
    code: StaticCode = StaticCode(replace=None, fit=None, fit_absent=False)  # what the source says (`static.py`)
    # per rendered .py file: the line the children run → the line as written (tracebacks show the latter)
    line_maps: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.meta.name

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        if self.folder.exists():
            for root, dirs, _ in os.walk(self.folder):
                for d in dirs:
                    os.chmod(os.path.join(root, d), 0o755)
            os.chmod(self.folder, 0o755)
            shutil.rmtree(self.folder, ignore_errors=True)


def available_submissions() -> list[str]:
    root = paths.submissions_dir()
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).exists()) if root.exists() else []


def resolve_submission_path(name_or_path: str) -> Path:
    """A submission name under `submissions/`, or a path to a submission folder."""
    candidate = Path(name_or_path)
    if candidate.is_dir() and (candidate / META_FILE).exists():
        return candidate.resolve()
    named = paths.submissions_dir() / name_or_path
    if NAME_PATTERN.match(name_or_path) and named.is_dir() and (named / META_FILE).exists():
        return named.resolve()
    if candidate.is_dir():
        raise UserError(f"{candidate} has no {META_FILE}; a submission folder needs {META_FILE} and {CODE_FILE}.")
    raise unknown("submission", name_or_path, available_submissions(), "ls submissions/")


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every regular file of the folder by relative path (skipping __pycache__ and dot-files), within the caps."""
    files: dict[str, bytes] = {}
    total = 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for entry in [*dirs, *sorted(n for n in names if not n.startswith("."))]:
            path = Path(root) / entry
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise UserError(f"{path} is a symbolic link; a submission folder may hold only regular files (copy it in).")
            if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
                raise UserError(f"{path} is not a regular file; a submission folder may hold only regular files and folders.")
            if stat.S_ISREG(mode):
                files[path.relative_to(folder).as_posix()] = data = path.read_bytes()
                total += len(data)
                if len(files) > MAX_FILES:
                    raise UserError(f"{folder} holds more than {MAX_FILES} files; a submission may hold at most {MAX_FILES}.")
                if total > MAX_FOLDER_BYTES:
                    raise UserError(f"{folder} holds more than {MAX_FOLDER_BYTES >> 20} MiB; a submission may hold at most "
                                    f"{MAX_FOLDER_BYTES >> 20} MiB.")
    return dict(sorted(files.items()))


HASH_VERSION = b"replacebench-folder-hash-v2\0"


def _framed(part: bytes) -> bytes:
    """`part` prefixed by its length: 8 bytes, big-endian."""
    return len(part).to_bytes(8, "big") + part


def content_hash(files: dict[str, bytes]) -> str:
    """sha256 of an unambiguous encoding of the folder, files sorted by path:

        HASH_VERSION ‖ len(files) ‖ for each file: len(path) ‖ path ‖ len(bytes) ‖ bytes

    (lengths as 8-byte big-endian integers; a path is its UTF-8 bytes, a name that is not UTF-8 kept as the bytes
    the file system gave). Every field is length-prefixed, so two different folders never give the same byte
    string: no file's bytes can pass for a path and the next file (the schema before this one, `path NUL bytes
    NUL`, let `a: "x\\0b\\0y"` and `a: "x", b: "y"` collide).
    """
    digest = hashlib.sha256(HASH_VERSION)
    digest.update(len(files).to_bytes(8, "big"))
    for rel, data in sorted(files.items()):
        digest.update(_framed(rel.encode("utf-8", "surrogateescape")))
        digest.update(_framed(data))
    return digest.hexdigest()


def folder_hash(folder: Path) -> str:
    """The content hash a snapshot of `folder` would have now."""
    return content_hash(read_folder(folder))


def _string_list(meta: dict[str, Any], key: str, where: Path, example: str) -> tuple[str, ...]:
    value = meta[key]
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"{where}: '{key}' must be a string or a list of strings, e.g. {key} = {example}.")
    return tuple(value)


def parse_meta(data: bytes, where: Path, folder_name: str) -> SubmissionMeta:
    """The metadata of `submission.toml`, every field checked for its type."""
    try:
        meta = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{where}: not UTF-8 text; save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML ({exc}).") from None
    for key in meta:
        if key not in META_KEYS:
            raise UserError(f"{where}: unknown key '{key}'.{did_you_mean(key, META_KEYS)} The keys are "
                            f"{', '.join(META_KEYS)} (tasks optional).")
    for key in ("name", "authors", "kind", "description"):
        if key not in meta:
            raise UserError(f"{where}: missing '{key}'; it needs name, authors, kind and description.")
    name = meta["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(f"{where}: name {name!r} must match [a-z0-9][a-z0-9_-]{{0,63}} (lower case, digits, - and _).")
    if name != folder_name:
        raise UserError(f"{where}: name '{name}' must equal the folder's name '{folder_name}'; rename one of them.")
    if not isinstance(meta["kind"], str) or meta["kind"] not in KINDS:
        raise UserError(f"{where}: kind {meta['kind']!r} must be one of {', '.join(KINDS)}."
                        f"{did_you_mean(str(meta['kind']), KINDS)}")
    if not isinstance(meta["description"], str):
        raise UserError(f"{where}: 'description' must be a string.")
    authors = _string_list(meta, "authors", where, '["Ada Lovelace"]')
    tasks = _string_list({"tasks": meta.get("tasks", ["*"])}, "tasks", where, '["mnist-mlp/*"]')
    # What the board and the terminal show of a submission must not move the cursor, reorder text or start lines.
    if not all(is_safe(text) for text in (*authors, *tasks)) or not is_safe(meta["description"], keep_newlines=True):
        raise UserError(f"{where}: authors, tasks and description may not hold control, format (bidi, zero-width) or "
                        "line-separator characters (the description may hold newlines); remove them.")
    return SubmissionMeta(name=name, kind=meta["kind"], authors=authors, description=meta["description"], tasks=tasks)


def take_snapshot(name_or_path: str) -> Snapshot:
    """Check the folder, hash it, and copy what its code may see to a private read-only directory.

    The hash and the description length are of the files as written. The copy the children run has every Python
    file canonically rendered (no comments, docstrings or layout of its own) and no `submission.toml`
    (`description.measure_folder`): what the description length does not charge for, the code cannot read. The
    copy holds only the priced files: no links, no empty folders, modes fixed, file times the snapshot's.
    """
    source = resolve_submission_path(name_or_path)
    files = read_folder(source)
    meta = parse_meta(files.get(META_FILE, b""), source / META_FILE, source.name)
    if CODE_FILE not in files:
        raise UserError(f"{source} has no {CODE_FILE}; define replace(...) there.")
    code = read_code(files[CODE_FILE], str(source / CODE_FILE), f"submission '{meta.name}'")  # compiled, never run
    measured = measure_folder(files)
    folder = Path(tempfile.mkdtemp(prefix=f"replacebench-{meta.name}-"))
    for rel, data in measured.runnable.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o444)
    for root, dirs, _ in os.walk(folder, topdown=False):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o555)
    folder.chmod(0o555)  # readable by the children's unprivileged user, writable by nobody
    blob = b"".join(files.values())
    return Snapshot(source=source, folder=folder, meta=meta, content_hash=content_hash(files), files=tuple(files),
                    description_bytes_xz=len(lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME)),
                    description=measured.description, code=code,
                    line_maps=measured.line_maps)


def check_signatures(snapshot: Snapshot, task: Task) -> None:
    """Before any model loads: the parameters the source declares (where it says for certain) against `task`.

    The same checks, with the same messages, as the children's answer gets after import (`room.load`).
    """
    where = f"submission '{snapshot.name}'"
    code = snapshot.code
    if code.replace is not None:
        replace = read_signature(code.replace, task, RESERVED_REPLACE, f"{where} replace()")
        if code.fit_absent:
            check_params_have_fit(replace, where)
    if code.fit is not None:
        read_signature(code.fit, task, RESERVED_FIT, f"{where} fit()")


def count_params(params: dict[str, np.ndarray]) -> int:
    """Fitted-parameter count: the total number of stored numbers."""
    return int(sum(v.size for v in params.values()))
