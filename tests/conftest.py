"""Shared fixtures: the real data directory, an isolated cache, the CLI run in this process (`cli`), and a message
channel over real pipes."""

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
    return Path(value).resolve()


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One baseline cache for the whole test session, never the user's own: set before the first test, so every
    test and every CLI subprocess shares it (unless a test sets its own)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["REPLACEBENCH_CACHE"] = str(path)
    return path


@pytest.fixture()
def cli():
    """`replacebench ARGS` through the CLI's own entry point in this process: exit code, stdout and stderr
    (`helpers.run_main`).

    Submissions still run in real child processes (forked from this process's zygote, kept warm between tests).
    """
    from helpers import run_main

    return run_main


@pytest.fixture()
def pair():
    """(harness side, child side) of the sandbox's message channel over two real pipes (test_protocol,
    test_integer_inputs)."""
    from benchmark.sandbox.protocol import Channel

    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    ends = (Channel(a_read, a_write), Channel(b_read, b_write))
    yield ends
    for fd in (a_read, b_write, b_read, a_write):
        try:
            os.close(fd)
        except OSError:
            pass
