"""`fetch inceptionv1` without network: random weights in the real format served from 127.0.0.1."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_inception import random_state_dict, serve_directory  # noqa: E402

from benchmark.errors import UserError  # noqa: E402
from benchmark.maintainer.fetch_inception import (  # noqa: E402
    fetch_inceptionv1,
    inception_weights_path,
    load_inceptionv1,
)
from benchmark.models.inception import InceptionV1  # noqa: E402


class NotATensor:
    """A custom object: a weights_only load must refuse to unpickle it."""

    def __init__(self) -> None:
        self.payload = "arbitrary code could run here"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def label_map_text() -> str:
    """The real label map when the shared data is available, else a well-formed synthetic one."""
    real = Path(os.environ.get("REPLACEBENCH_DATA", "/nonexistent")) / "inceptionv1" / "old_imagenet_labels.txt"
    if real.is_file():
        return real.read_text()
    return "".join(f"n{10000000 + i:08d} {i} class {i}\n" for i in range(1, 1001))


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return random_state_dict(seed=3)


@pytest.fixture
def served(tmp_path: Path, weights: dict[str, torch.Tensor]) -> Path:
    """A directory with inception5h.pth (random weights, saved as the published file is) and the label map."""
    root = tmp_path / "served"
    root.mkdir()
    torch.save(collections.OrderedDict(weights), root / "inception5h.pth")
    (root / "old_imagenet_labels.txt").write_text(label_map_text())
    return root


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("REPLACEBENCH_CACHE", str(path))
    return path


def assert_same_weights(model: InceptionV1, weights: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(weights)
    for key, tensor in weights.items():
        assert torch.equal(state[key], tensor), key


def test_fetch_over_http_then_load(served: Path, cache: Path, tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    data_dir = tmp_path / "data"
    with serve_directory(served) as base:
        result = fetch_inceptionv1(data_dir, weights_url=f"{base}/inception5h.pth", labels_url=f"{base}/old_imagenet_labels.txt")

    st_path = cache / "inceptionv1" / "inception5h.safetensors"
    assert Path(result["weights_safetensors"]) == st_path == inception_weights_path()
    assert result["pth_sha256"] == sha256(served / "inception5h.pth") == sha256(Path(result["weights_pth"]))
    assert result["safetensors_sha256"] == sha256(st_path)
    meta = json.loads((cache / "inceptionv1" / "inception5h.json").read_text())
    assert meta["pth_sha256"] == result["pth_sha256"] and meta["safetensors_sha256"] == result["safetensors_sha256"]
    labels = data_dir / "inceptionv1" / "old_imagenet_labels.txt"
    assert Path(result["labels"]) == labels
    assert labels.read_bytes() == (served / "old_imagenet_labels.txt").read_bytes()
    assert result["labels_sha256"] == sha256(labels)
    assert not [p for p in (cache / "inceptionv1").iterdir() if p.name.startswith(".")]  # no temp files left

    model = load_inceptionv1()
    assert not model.training
    assert_same_weights(model, weights)
    assert_same_weights(load_inceptionv1(st_path, sha256=result["safetensors_sha256"]), weights)


def test_fetch_over_file_urls(served: Path, cache: Path, tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    data_dir = tmp_path / "data"
    result = fetch_inceptionv1(
        data_dir,
        weights_url=(served / "inception5h.pth").as_uri(),
        labels_url=(served / "old_imagenet_labels.txt").as_uri(),
    )
    assert Path(result["labels"]).is_file()
    assert_same_weights(load_inceptionv1(), weights)


def test_existing_label_map_is_kept(served: Path, cache: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "inceptionv1").mkdir(parents=True)
    existing = data_dir / "inceptionv1" / "old_imagenet_labels.txt"
    text = "".join(f"n{20000000 + i:08d} {i} other {i}\n" for i in range(1, 1001))
    existing.write_text(text)
    fetch_inceptionv1(data_dir, weights_url=(served / "inception5h.pth").as_uri(), labels_url="file:///nonexistent/labels.txt")
    assert existing.read_text() == text


def test_pickled_object_is_refused(served: Path, cache: Path, tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    torch.save({**weights, "extra": NotATensor()}, served / "inception5h.pth")
    with pytest.raises(UserError, match="weights_only"):
        fetch_inceptionv1(tmp_path / "data", weights_url=(served / "inception5h.pth").as_uri(), labels_url=(served / "old_imagenet_labels.txt").as_uri())
    assert not (cache / "inceptionv1" / "inception5h.safetensors").exists()


def test_wrong_shape_missing_and_unexpected_keys(served: Path, cache: Path, tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    url = (served / "inception5h.pth").as_uri()
    labels_url = (served / "old_imagenet_labels.txt").as_uri()
    bad = dict(weights, **{"mixed4c_5x5_pre_relu_conv.weight": torch.zeros(64, 24, 3, 3)})
    torch.save(bad, served / "inception5h.pth")
    with pytest.raises(UserError, match=r"mixed4c_5x5_pre_relu_conv\.weight.*\(64, 24, 3, 3\)"):
        fetch_inceptionv1(tmp_path / "data", weights_url=url, labels_url=labels_url)
    missing = {k: v for k, v in weights.items() if k != "mixed3b_pool_reduce_pre_relu_conv.bias"}
    torch.save(missing, served / "inception5h.pth")
    with pytest.raises(UserError, match=r"lacks .*mixed3b_pool_reduce_pre_relu_conv\.bias"):
        fetch_inceptionv1(tmp_path / "data", weights_url=url, labels_url=labels_url)
    extra = dict(weights, **{"head0_bottleneck_pre_relu_conv.weight": torch.zeros(128, 508, 1, 1)})
    torch.save(extra, served / "inception5h.pth")
    with pytest.raises(UserError, match=r"unexpected key 'head0_bottleneck_pre_relu_conv\.weight'"):
        fetch_inceptionv1(tmp_path / "data", weights_url=url, labels_url=labels_url)
    assert not (cache / "inceptionv1" / "inception5h.safetensors").exists()


def test_malformed_label_map_is_not_installed(served: Path, cache: Path, tmp_path: Path) -> None:
    (served / "old_imagenet_labels.txt").write_text("<html>not found</html>\n")
    data_dir = tmp_path / "data"
    with serve_directory(served) as base:
        with pytest.raises(UserError, match="lines"):
            fetch_inceptionv1(data_dir, weights_url=f"{base}/inception5h.pth", labels_url=f"{base}/old_imagenet_labels.txt")
        with pytest.raises(UserError, match="could not download"):
            fetch_inceptionv1(data_dir, weights_url=f"{base}/missing.pth", labels_url=f"{base}/old_imagenet_labels.txt")
    assert not (data_dir / "inceptionv1" / "old_imagenet_labels.txt").exists()
    assert not [p for p in (data_dir / "inceptionv1").iterdir()]


def test_load_errors(served: Path, cache: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="replacebench fetch inceptionv1"):
        load_inceptionv1()
    result = fetch_inceptionv1(tmp_path / "data", weights_url=(served / "inception5h.pth").as_uri(), labels_url=(served / "old_imagenet_labels.txt").as_uri())
    with pytest.raises(UserError, match="sha256"):
        load_inceptionv1(sha256="0" * 64)
    st_path = Path(result["weights_safetensors"])
    data = bytearray(st_path.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of the last tensor: still a valid file, but not the fetched one
    st_path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupt or was replaced"):
        load_inceptionv1()
