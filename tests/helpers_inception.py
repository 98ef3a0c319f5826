"""Shared helpers for the InceptionV1 tests: random weights, a local HTTP server, the sample data."""

from __future__ import annotations

import functools
import math
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from helpers import run_cli

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


def repeat_images(source: Path, dest: Path, total: int) -> Path:
    """`dest/<wnid>/…`: the images of `source` (class folders) repeated, as symbolic links, to `total` files.

    Copy k of `<wnid>/<name>.JPEG` is `<wnid>/<name>-rK.JPEG`, so the sorted file order (and so the eval and fit
    sets) is fixed by `total` alone."""
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.parent != source)
    if not files:
        raise FileNotFoundError(f"no images in class folders under {source}")
    for k in range(total):
        original = files[k % len(files)]
        link = dest / original.parent.name / f"{original.stem}-r{k // len(files):03d}{original.suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(original.resolve())
    return dest


def install_random_weights(cache: Path, data: Path, labels: Path, seed: int = 0) -> None:
    """Random weights (`random_state_dict(seed)`) fetched in the published format through `fetch_inceptionv1`
    from a file:// URL, into the cache `cache` (set $REPLACEBENCH_CACHE to it first) and the data folder `data`."""
    from benchmark.maintainer.fetch_inception import fetch_inceptionv1

    served = cache.parent / "served"
    served.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(seed), served / "inception5h.pth")
    fetch_inceptionv1(data, weights_url=(served / "inception5h.pth").resolve().as_uri(), labels_url=labels.resolve().as_uri())


def fetch_through_cli(root: Path, state: dict[str, torch.Tensor], shared_data: Path) -> dict[str, str]:
    """`state` saved as the published .pth, served from 127.0.0.1 and fetched by `replacebench fetch inceptionv1`
    into `root`'s own cache and data folders; returns the environment that points the CLI at them."""
    served = root / "served"
    served.mkdir()
    torch.save(state, served / "inception5h.pth")
    shutil.copy(shared_data / "inceptionv1" / "old_imagenet_labels.txt", served / "old_imagenet_labels.txt")
    env = {"REPLACEBENCH_CACHE": str(root / "cache"), "REPLACEBENCH_DATA": str(root / "data")}
    with serve_directory(served) as url:
        proc = run_cli("fetch", "inceptionv1", "--url", f"{url}/inception5h.pth", "--labels-url",
                       f"{url}/old_imagenet_labels.txt", env=env)
    assert proc.returncode == 0, proc.stderr
    return env
