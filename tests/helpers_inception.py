"""Shared helpers for the InceptionV1 tests: random weights, a local HTTP server, the sample data."""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from benchmark.models.inception import InceptionV1


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inception5h-shaped weights, He-scaled so activations stay finite and non-trivial.

    Conv/linear weights ~ N(0, 2 / fan_in); biases ~ N(0.05, 0.05^2) (slightly positive, so ReLUs fire).
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, ref in InceptionV1().state_dict().items():
        if key.endswith(".weight"):
            fan_in = math.prod(ref.shape[1:])
            state[key] = torch.randn(ref.shape, generator=generator) * math.sqrt(2.0 / fan_in)
        else:
            state[key] = 0.05 + 0.05 * torch.randn(ref.shape, generator=generator)
    return state


@functools.lru_cache(maxsize=2)
def _random_model_cached(seed: int) -> InceptionV1:
    model = InceptionV1()
    model.load_state_dict(random_state_dict(seed), strict=True)
    return model.eval()


def random_model(seed: int = 0) -> InceptionV1:
    """An eval-mode InceptionV1 with `random_state_dict(seed)` (shared; do not modify it)."""
    return _random_model_cached(seed)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (random port, a thread); yields the base URL, shuts down on exit."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def shared_data_dir() -> Path:
    """The shared data dir from $REPLACEBENCH_DATA; skips the test when it is unset."""
    value = os.environ.get("REPLACEBENCH_DATA")
    if not value:
        pytest.skip("REPLACEBENCH_DATA is not set (point it at the shared data directory, e.g. /work/shared/data)")
    return Path(value)


def imagenet_sample_dir() -> Path:
    """`$REPLACEBENCH_DATA/imagenet-sample`; skips when unavailable."""
    path = shared_data_dir() / "imagenet-sample"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path
