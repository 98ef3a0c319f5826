"""Where records live: `<results>/<task-slug>/<submission>.json`, beside its per-example sidecar
`<submission>.<sha12>.npz` (sha12 starts the sidecar's sha256, stored in the record).

A held-out record (README: Held-out split) lives beside the public one as `<submission>.heldout.json` and
`<submission>.heldout.<sha12>.npz`; a submission's name has no dot, so the two never collide.
"""

from __future__ import annotations

from pathlib import Path

from .. import paths

SPLITS = ("public", "held-out")
HELDOUT_SUFFIX = ".heldout"


def default_results_dir() -> Path:
    """The board's records (`paths.board_dir()`): what `leaderboard`, `compare` and `verify --all` read."""
    return paths.board_dir()


def record_stem(submission: str, split: str = "public") -> str:
    """The file stem of a record: `<submission>` (public) or `<submission>.heldout` (held-out)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return submission + (HELDOUT_SUFFIX if split == "held-out" else "")


def find_records(results_dir: Path) -> list[Path]:
    """Every record file under `results_dir` (one folder per task), sorted."""
    return sorted(results_dir.glob("*/*.json")) if results_dir.exists() else []
