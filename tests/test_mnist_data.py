"""MNIST: verification (good / missing / corrupt / stale cache), loading, and `fetch_mnist` without network."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import zoo
from benchmark.data import mnist
from benchmark.errors import UserError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not os.environ.get("REPLACEBENCH_DATA"):
        pytest.skip("REPLACEBENCH_DATA is not set: point it at the shared data directory to run the MNIST tests")
    return Path(os.environ["REPLACEBENCH_DATA"])


@pytest.fixture(scope="module")
def official_sums(data_dir: Path) -> dict[str, str]:
    """The published sha256 sums shipped beside the data (MNIST/SHA256SUMS), an independent source."""
    sums = {}
    for line in (data_dir / "MNIST" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _linked_copy(data_dir: Path, dest_root: Path, copy: tuple[str, ...] = ()) -> Path:
    """A data dir whose MNIST/raw links to the shared files, with real copies of `copy`."""
    raw = dest_root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        src = (data_dir / "MNIST" / "raw" / name).resolve()  # an absolute target: REPLACEBENCH_DATA may be relative
        if name in copy:
            shutil.copyfile(src, raw / name)
        else:
            (raw / name).symlink_to(src)
    return dest_root


def test_constants_match_published_sums(official_sums):
    assert mnist.MNIST_SHA256 == official_sums


def test_gz_md5_match_torchvision():
    from torchvision.datasets import MNIST

    assert {name[: -len(".gz")]: md5 for name, md5 in MNIST.resources} == mnist.MNIST_GZ_MD5
    assert MNIST.mirrors[0] == mnist.OFFICIAL_URL


def test_verify_good(data_dir, official_sums):
    expected = hashlib.sha256("\n".join(_sha(data_dir / "MNIST" / "raw" / n) for n in mnist.MNIST_SHA256).encode()).hexdigest()
    assert mnist.verify_mnist(data_dir) == expected
    assert mnist.verify_mnist(str(data_dir)) == expected  # cached path, same answer


def test_verify_reads_env(data_dir, monkeypatch):
    monkeypatch.setenv("REPLACEBENCH_DATA", str(data_dir))
    assert mnist.verify_mnist() == mnist.verify_mnist(data_dir)


def test_verify_missing(tmp_path):
    with pytest.raises(UserError) as info:
        mnist.verify_mnist(tmp_path)
    message = str(info.value)
    assert "replacebench fetch mnist" in message and "REPLACEBENCH_DATA" in message and "--data-dir" in message
    assert "\n" not in message


def test_verify_one_missing(data_dir, tmp_path):
    root = _linked_copy(data_dir, tmp_path)
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        mnist.verify_mnist(root)


def test_verify_corrupt_copy(data_dir, tmp_path):
    root = _linked_copy(data_dir, tmp_path, copy=("t10k-labels-idx1-ubyte",))
    target = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(target.read_bytes())
    data[100] = (data[100] + 1) % 10  # a plausible but wrong label
    target.write_bytes(bytes(data))
    with pytest.raises(UserError) as info:
        mnist.verify_mnist(root)
    assert str(target) in str(info.value) and "corrupt" in str(info.value)


def test_cache_sees_changes(data_dir, tmp_path):
    """A file corrupted after a successful verification is caught (the cache key includes size and mtime)."""
    root = _linked_copy(data_dir, tmp_path, copy=("train-labels-idx1-ubyte",))
    mnist.verify_mnist(root)
    target = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(UserError, match="corrupt"):
        mnist.verify_mnist(root)


def _read_idx(path: Path) -> np.ndarray:
    """Independent idx reader: big-endian magic (0x08, ndim), dims, then uint8 data."""
    raw = path.read_bytes()
    assert raw[0] == 0 and raw[1] == 0 and raw[2] == 0x08
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.mark.parametrize("split,prefix,n", [("test", "t10k", 10000), ("train", "train", 60000)])
def test_open_mnist_matches_files(data_dir, split, prefix, n):
    ds = mnist.open_mnist(split, data_dir)
    raw = data_dir / "MNIST" / "raw"
    pixels = _read_idx(raw / f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte")
    assert len(ds) == n and ds.inputs.shape == (n, 1, 28, 28) and ds.inputs.dtype == torch.float32
    np.testing.assert_array_equal(ds.labels(), labels.astype(np.int64))
    # np.testing.assert_allclose's test (atol 1e-5, rtol 1e-7) in float64, written out in torch: numpy's takes ~10 s on
    # train's 47M pixels, this ~1 s
    expected = (torch.from_numpy(np.array(pixels)).double() / 255.0 - 0.1307) / 0.3081  # [n, 28, 28]
    actual = ds.inputs[:, 0].double()
    assert actual.shape == expected.shape
    error = (actual - expected).abs()
    assert bool((error <= 1e-5 + 1e-7 * expected.abs()).all()), f"max |error| {error.max().item():.3g}"
    # the zoo's pixel scaling (what `inspect` reports and the figures undo): pixels 0 and 255 map to its range ends
    low, high = zoo.DATASETS["mnist"].value_range
    assert float(ds.inputs.min()) == pytest.approx(low, abs=1e-6) and float(ds.inputs.max()) == pytest.approx(high, abs=1e-6)
    # normalisation: the training set is close to zero mean and unit std
    if split == "train":
        assert abs(ds.inputs.mean().item()) < 1e-3 and abs(ds.inputs.std().item() - 1.0) < 1e-3
    assert ds.name == "mnist" and ds.split == split and len(ds.content_hash()) == 64
    idx = [0, 7, n - 1]
    assert torch.equal(ds.load(idx), ds.inputs[idx])


def test_content_hash_differs_between_splits(data_dir):
    assert mnist.open_mnist("test", data_dir).content_hash() == mnist.open_mnist("test", str(data_dir)).content_hash()
    assert mnist.open_mnist("test", data_dir).content_hash() != mnist.open_mnist("train", data_dir).content_hash()


def test_open_mnist_bad_split(data_dir):
    with pytest.raises(UserError, match="'train' or 'test'"):
        mnist.open_mnist("validation", data_dir)


def test_open_mnist_refuses_stale_processed_cache(data_dir, tmp_path):
    """torchvision silently prefers MNIST/processed/{training,test}.pt; open_mnist must not serve it."""
    root = _linked_copy(data_dir, tmp_path)
    processed = root / "MNIST" / "processed"
    processed.mkdir()
    fake = (torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64))
    torch.save(fake, processed / "training.pt")
    torch.save(fake, processed / "test.pt")
    with pytest.raises(UserError, match="processed"):
        mnist.open_mnist("test", root)


# ---------------------------------------------------------------- fetch, without network


@pytest.fixture(scope="module")
def served(data_dir, tmp_path_factory):
    """The four files gzipped into a folder, served on 127.0.0.1 by http.server; yields (folder, base_url)."""
    folder = tmp_path_factory.mktemp("mnist-mirror")
    for name in FILES:
        with open(data_dir / "MNIST" / "raw" / name, "rb") as src, gzip.open(folder / f"{name}.gz", "wb", compresslevel=1) as out:
            shutil.copyfileobj(src, out)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


def _raw_listing(root: Path) -> list[str]:
    return sorted(os.listdir(root / "MNIST" / "raw"))


def test_fetch_over_http(served, official_sums, tmp_path):
    _, url = served
    data_hash = mnist.fetch_mnist(tmp_path, base_url=url)
    raw = tmp_path / "MNIST" / "raw"
    assert _raw_listing(tmp_path) == sorted(FILES)  # nothing left behind
    for name in FILES:
        assert _sha(raw / name) == official_sums[name]
    assert data_hash == mnist.verify_mnist(tmp_path)
    assert mnist.open_mnist("test", tmp_path).inputs.shape == (10000, 1, 28, 28)
    # a second fetch finds everything in place and rewrites nothing
    before = {name: (raw / name).stat().st_mtime_ns for name in FILES}
    assert mnist.fetch_mnist(tmp_path, base_url=url.rstrip("/")) == data_hash
    assert {name: (raw / name).stat().st_mtime_ns for name in FILES} == before


def test_fetch_file_url(served, official_sums, tmp_path):
    folder, _ = served
    mnist.fetch_mnist(tmp_path / "data", base_url=folder.as_uri() + "/")
    for name in FILES:
        assert _sha(tmp_path / "data" / "MNIST" / "raw" / name) == official_sums[name]
    assert _raw_listing(tmp_path / "data") == sorted(FILES)


def test_fetch_replaces_corrupt_local_file(data_dir, served, official_sums, tmp_path):
    folder, _ = served
    root = _linked_copy(data_dir, tmp_path, copy=("t10k-labels-idx1-ubyte",))
    target = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    target.write_bytes(b"junk")
    mnist.fetch_mnist(root, base_url=folder.as_uri())
    assert _sha(target) == official_sums["t10k-labels-idx1-ubyte"]


def _mirror_with(folder: Path, dest: Path, name: str, payload: bytes) -> Path:
    """A copy of the mirror `folder` where `<name>.gz` holds `payload`."""
    dest.mkdir()
    for gz in folder.iterdir():
        (dest / gz.name).symlink_to(gz)
    (dest / f"{name}.gz").unlink()
    (dest / f"{name}.gz").write_bytes(payload)
    return dest


@pytest.mark.parametrize("kind", ["wrong-content", "truncated-gzip"])
def test_fetch_corrupt_source_leaves_nothing(data_dir, served, tmp_path, kind):
    folder, _ = served
    name = "t10k-labels-idx1-ubyte"
    original = (data_dir / "MNIST" / "raw" / name).read_bytes()
    if kind == "wrong-content":
        changed = bytearray(original)
        changed[200] = (changed[200] + 1) % 10
        payload = gzip.compress(bytes(changed))
    else:
        payload = gzip.compress(original)[:-100]
    mirror = _mirror_with(folder, tmp_path / "mirror", name, payload)
    # the three other files are already in place (links), so only the bad one is fetched
    root = _linked_copy(data_dir, tmp_path / "data")
    (root / "MNIST" / "raw" / name).unlink()
    with pytest.raises(UserError) as info:
        mnist.fetch_mnist(root, base_url=mirror.as_uri())
    assert name in str(info.value)
    assert name not in _raw_listing(root)
    assert all(not entry.startswith(".") for entry in _raw_listing(root))


def test_fetch_corrupt_source_over_http_leaves_nothing(data_dir, served, tmp_path):
    """Same through the HTTP server: a corrupt served archive raises and leaves no file."""
    folder, url = served
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 10))
    handler = functools.partial(_QuietHandler, directory=str(bad))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        root = _linked_copy(data_dir, tmp_path / "data")
        (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
        with pytest.raises(UserError, match="sha256"):
            mnist.fetch_mnist(root, base_url=f"http://127.0.0.1:{server.server_address[1]}/")
        assert "t10k-labels-idx1-ubyte" not in _raw_listing(root)
        assert all(not entry.startswith(".") for entry in _raw_listing(root))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_checks_md5(data_dir, served, tmp_path):
    folder, url = served
    root = _linked_copy(data_dir, tmp_path)
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    wrong = dict(mnist.MNIST_GZ_MD5)  # our locally made archives never match the official md5s
    with pytest.raises(UserError, match="md5"):
        mnist.fetch_mnist(root, base_url=url, gz_md5=wrong)
    assert "t10k-labels-idx1-ubyte" not in _raw_listing(root)
    right = {"t10k-labels-idx1-ubyte": hashlib.md5((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()}
    mnist.fetch_mnist(root, base_url=url, gz_md5=right)
    assert "t10k-labels-idx1-ubyte" in _raw_listing(root)


def test_fetch_unreachable_is_user_error(tmp_path):
    with pytest.raises(UserError, match="could not download"):
        mnist.fetch_mnist(tmp_path, base_url=(tmp_path / "nowhere").as_uri())
    assert _raw_listing(tmp_path) == []


@pytest.mark.slow
def test_cli_fetch_then_score(served, tmp_path, session_cache):
    """`replacebench fetch mnist` from a local server into an empty data dir, then a score reads it."""
    from helpers import run_cli

    _, url = served
    proc = run_cli("fetch", "mnist", "--url", url, "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    assert f"data_sha256: {mnist.verify_mnist(tmp_path / 'data')}" in proc.stdout.splitlines()
    proc = run_cli("score", "zero", "--task", "mnist-mlp/fc1:13", "--data-dir", str(tmp_path / "data"), "--no-record")
    assert proc.returncode == 0, proc.stderr
    assert "zero on mnist-mlp/fc1:13 (n = 10000)" in proc.stdout
