"""Result records: one JSON file per (task, submission), with provenance, plus a per-example `.npz` sidecar.

Layout: `<results>/<task-slug>/<submission>.json` and `<submission>.<sha12>.npz`,
where sha12 starts the sidecar's sha256 (stored in the record). A held-out record (README: Held-out split)
lives beside the public one as `<submission>.heldout.json` and `<submission>.heldout.<sha12>.npz`; a
submission's name has no dot, so the two never collide. Both files are
written to temporary names in the same folder and renamed into place, sidecar
first, so a reader never sees a partial file, and two concurrent runs never
write into the same file: the record that lands last wins whole, and always
names its own sidecar.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import paths
from ..atomic import atomic_write_bytes
from ..download import sha256_file
from ..errors import UserError
from ..stats import LEGACY_INTERVALS

if TYPE_CHECKING:
    from ..harness.submissions import Snapshot

SCHEMA_VERSION = 6  # 2 adds "isolation", 3 the description length and copy test, 4 KL recovery, 5 "efficiency",
# 6 closed-form intervals (provenance "intervals": "hall-fieller"; before, "bootstrap-bca" with a seed and resamples),
# "split" ("public" | "held-out") and "heldout_commitment"; older records are migrated on read
SPLITS = ("public", "held-out")
HELDOUT_SUFFIX = ".heldout"
#: Complexity figures schema 3 added; a migrated record has them as None (not measured: score it again).
COMPLEXITY_V3 = ("convention", "description_bits", "bits", "code_tokens", "literal_numbers", "data_bytes",
                 "stored_numbers", "target_fan_in", "copy")
STALE_SIDECAR_SECONDS = 600


def git_commit() -> dict[str, Any]:
    """The project's git commit and whether its tracked code has uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        # results written into the project's own leaderboard/ do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)leaderboard"],
                               cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment() -> dict[str, str]:
    """Versions of everything a number may depend on."""
    import scipy
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
    }


def default_results_dir() -> Path:
    """The board's records (`paths.board_dir()`): what `leaderboard`, `compare` and `verify --all` read."""
    return paths.board_dir()


def record_stem(submission: str, split: str = "public") -> str:
    """The file stem of a record: `<submission>` (public) or `<submission>.heldout` (held-out)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return submission + (HELDOUT_SUFFIX if split == "held-out" else "")


def write_record(record: dict[str, Any], arrays: dict[str, np.ndarray], results_dir: Path, task_slug: str,
                 submission: str) -> tuple[Path, dict[str, Any]]:
    """Write the sidecar, then the record that names it; remove this submission's stale sidecars of the same split.

    The file stem is `record_stem(submission, record["split"])`. Returns the record's path and the record as written
    (with its `sidecar` entry).
    """
    submission = record_stem(submission, record.get("split", "public"))
    folder = results_dir / task_slug
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    payload = buffer.getvalue()
    sidecar_sha = hashlib.sha256(payload).hexdigest()
    sidecar = folder / f"{submission}.{sidecar_sha[:12]}.npz"
    atomic_write_bytes(sidecar, payload)
    record = {**record, "sidecar": {"file": sidecar.name, "sha256": sidecar_sha}}
    path = folder / f"{submission}.json"
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=False) + "\n").encode())
    now = time.time()
    # never a glob over user text; `x.<sha12>.npz` never matches `x.heldout.<sha12>.npz`, nor the reverse
    ours = re.compile(re.escape(submission) + r"\.[0-9a-f]{12}\.npz")
    for old in folder.iterdir():
        if ours.fullmatch(old.name) and old.name != sidecar.name and now - old.stat().st_mtime > STALE_SIDECAR_SECONDS:
            old.unlink(missing_ok=True)
    return path, record


def check_overwrite(results_dir: Path, task_slug: str, snapshot: Snapshot, split: str = "public") -> None:
    """Refuse to replace a record (of the same split) that a different submission (hash or authors) made under the
    same name."""
    path = results_dir / task_slug / f"{record_stem(snapshot.name, split)}.json"
    if not path.exists():
        return
    try:
        existing = json.loads(path.read_text())
        old_hash, old_authors = existing["submission"]["content_hash"], existing["submission"]["authors"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} exists and is not a readable record; delete it, or pass --force to overwrite it.") from None
    if old_authors != list(snapshot.meta.authors):
        raise UserError(f"{path} was made by authors {old_authors}, not {list(snapshot.meta.authors)}; "
                        "pick another submission name, or pass --force to overwrite it.")
    if old_hash != snapshot.content_hash:
        raise UserError(f"{path} was made from a different version of '{snapshot.name}' (hash {old_hash[:12]}, now "
                        f"{snapshot.content_hash[:12]}); pass --force to replace it.")


def migrate(record: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema, brought to SCHEMA_VERSION."""
    if record.get("schema_version") == 1:
        record = {**record, "schema_version": 2,
                  "isolation": {"level": "none", "mechanism": "schema 1: scored in the harness's process"}}
    if record.get("schema_version") == 2:
        complexity = record.get("complexity") if isinstance(record.get("complexity"), dict) else {}
        record = {**record, "schema_version": 3, "complexity": {**dict.fromkeys(COMPLEXITY_V3), **complexity}}
    if record.get("schema_version") == 3 and isinstance(record.get("results"), dict):
        record = {**record, "schema_version": 4, "results": {**record["results"], "kl_recovery": None}}
    if record.get("schema_version") == 4:
        record = {**record, "schema_version": 5, "efficiency": None}
    if record.get("schema_version") == 5:
        if isinstance(record.get("provenance"), dict):  # its intervals were bootstrap BCa, with its seed and resamples
            record = {**record, "provenance": {**record["provenance"], "intervals": LEGACY_INTERVALS}}
        record = {**record, "schema_version": 6, "split": "public", "heldout_commitment": None}
    return record


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read result record {path} ({exc}); delete it and score again.") from None
    record = migrate(record) if isinstance(record, dict) else {}
    if record.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {record.get('schema_version')}, expected {SCHEMA_VERSION}; score again.")
    split, commitment = record.get("split"), record.get("heldout_commitment")
    held_out = split == "held-out"
    if split not in SPLITS or held_out != (isinstance(commitment, str) and re.fullmatch(r"[0-9a-f]{64}", commitment) is not None) \
            or (not held_out and commitment is not None) or held_out != path.name.endswith(HELDOUT_SUFFIX + ".json"):
        raise UserError(f"{path} has an inconsistent split ({split!r}, commitment {commitment!r}) for its file name; score again.")
    return record


def read_sidecar(record_path: Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-example arrays a record names, checked against the sha256 it stores."""
    sidecar = record_path.parent / record["sidecar"]["file"]
    if not sidecar.exists() or sha256_file(sidecar) != record["sidecar"]["sha256"]:
        raise UserError(f"per-example file {sidecar} is missing or does not match {record_path.name}; score again.")
    with np.load(sidecar) as data:
        return {key: data[key] for key in data.files}


def find_records(results_dir: Path) -> list[Path]:
    return sorted(results_dir.glob("*/*.json")) if results_dir.exists() else []
