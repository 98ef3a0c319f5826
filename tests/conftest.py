"""Shared fixtures: the real data directory, an isolated cache, and CLI runs as real subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data (MNIST, ImageNet sample, label map) via REPLACEBENCH_DATA; skip when unset."""
    value = os.environ.get("REPLACEBENCH_DATA")
    if not value or not Path(value).exists():
        pytest.skip("REPLACEBENCH_DATA is not set to the data directory (see README)")
    return Path(value)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One baseline cache for the whole test session, never the user's own."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["REPLACEBENCH_CACHE"] = str(path)
    return path
