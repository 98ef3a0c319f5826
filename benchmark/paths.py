"""Where things live: the project root, the data directory and the cache.

Data directory, first that is set: `--data-dir` (passed in), `$REPLACEBENCH_DATA`,
then the user cache `~/.cache/replacebench/data` (`$XDG_CACHE_HOME` respected).
Cache directory: `$REPLACEBENCH_CACHE`, else `~/.cache/replacebench`.
Runs folder (a plain `score`'s records, ignored by git): `$REPLACEBENCH_RUNS`, else `<project>/runs`.
Board (the published records, committed): `$REPLACEBENCH_BOARD`, else `<project>/leaderboard/results`.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("REPLACEBENCH_HOME", Path(__file__).resolve().parent.parent))


def user_cache_root() -> Path:
    """The per-user cache root (`$REPLACEBENCH_CACHE` or `$XDG_CACHE_HOME/replacebench`)."""
    if os.environ.get("REPLACEBENCH_CACHE"):
        return Path(os.environ["REPLACEBENCH_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "replacebench"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: `explicit`, else `$REPLACEBENCH_DATA`, else the user cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("REPLACEBENCH_DATA"):
        return Path(os.environ["REPLACEBENCH_DATA"]).expanduser()
    return user_cache_root() / "data"


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache, created on demand."""
    path = user_cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def tasks_dir() -> Path:
    return PROJECT_ROOT / "tasks"


def submissions_dir() -> Path:
    return PROJECT_ROOT / "submissions"


def leaderboard_dir() -> Path:
    return PROJECT_ROOT / "leaderboard"


def checkpoints_dir() -> Path:
    return PROJECT_ROOT / "checkpoints"


def runs_dir() -> Path:
    """Where a plain `score` writes its records: `$REPLACEBENCH_RUNS`, else `<project>/runs` (git ignores it)."""
    if os.environ.get("REPLACEBENCH_RUNS"):
        return Path(os.environ["REPLACEBENCH_RUNS"]).expanduser()
    return PROJECT_ROOT / "runs"


def board_dir() -> Path:
    """The board's records, which `publish` writes: `$REPLACEBENCH_BOARD`, else `<project>/leaderboard/results`."""
    if os.environ.get("REPLACEBENCH_BOARD"):
        return Path(os.environ["REPLACEBENCH_BOARD"]).expanduser()
    return leaderboard_dir() / "results"
