"""MNIST: verified loading of the official files, and `fetch mnist`.

Layout (what torchvision uses): `<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`,
uncompressed. Every load first checks the sha256 of all four files against `MNIST_SHA256`
(the decompressed content of the official archives), so a missing or corrupt copy is a
`UserError`, never a silently wrong score. File hashes are cached in memory keyed by
(path, size, mtime), so a process hashes each file once.

Images are model-ready: x_norm = (x / 255 − MEAN) / STD with MEAN = 0.1307, STD = 0.3081,
`# [n, 1, 28, 28]` float32; labels int64 in 0..9.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..atomic import atomic_path
from ..download import CHUNK, cached_sha256, download
from ..errors import UserError
from ..zoo import MNIST_MEAN, MNIST_STD
from .base import TensorExampleSet

MEAN, STD = MNIST_MEAN, MNIST_STD

#: sha256 of the four official files, decompressed (see the data README).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: torchvision's primary MNIST mirror (and its fallback); `fetch_mnist` appends `<file>.gz`.
OFFICIAL_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
OFFICIAL_MIRRORS: tuple[str, ...] = (OFFICIAL_URL, "http://yann.lecun.com/exdb/mnist/")

#: md5 of the official `.gz` archives, as torchvision lists them; checked when fetching from an official mirror.
MNIST_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FETCH_HINT = "Run `replacebench fetch mnist`, or point `--data-dir`/`REPLACEBENCH_DATA` at a directory holding MNIST/raw/."

def raw_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`<data_dir>/MNIST/raw`, the folder holding the four uncompressed files."""
    return paths.data_dir(data_dir) / "MNIST" / "raw"


def verify_mnist(data_dir: str | os.PathLike | None = None) -> str:
    """Check all four files under `<data_dir>/MNIST/raw/`; return the data hash.

    data hash = sha256 of the four file sha256 hex strings, in `MNIST_SHA256` order, joined by newlines.
    Missing files or a hash mismatch raise `UserError` with the fix.
    """
    raw = raw_dir(data_dir)
    missing = [name for name in MNIST_SHA256 if not (raw / name).is_file()]
    if missing:
        raise UserError(f"MNIST not found: {raw} lacks {', '.join(missing)}. {FETCH_HINT}")
    for name, expected in MNIST_SHA256.items():
        actual = cached_sha256(raw / name)
        if actual != expected:
            raise UserError(
                f"{raw / name} is corrupt (sha256 {actual[:16]}…, expected {expected[:16]}…). "
                f"Delete it and run `replacebench fetch mnist` for this data directory, or point `--data-dir`/`REPLACEBENCH_DATA` at a good copy."
            )
    return _combine(MNIST_SHA256.values())


def _combine(hashes) -> str:
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _idx_sha256(array: np.ndarray) -> str:
    """sha256 of the idx file that holds uint8 `array` (big-endian header: magic, then each dimension)."""
    magic = 0x0800 | array.ndim  # unsigned byte data, `ndim` dimensions
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return hashlib.sha256(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()).hexdigest()


def open_split(split: str, data_dir: str | os.PathLike | None = None, imagenet_dir: object = None) -> TensorExampleSet:
    """The zoo's opener (`zoo.DatasetSpec.opener`): `open_mnist(split, data_dir)`."""
    return open_mnist(split, data_dir)


def open_mnist(split: str, data_dir: str | os.PathLike | None = None) -> TensorExampleSet:
    """One verified MNIST split (`"train"`: 60000, `"test"`: 10000) as a `TensorExampleSet`.

    Read with `torchvision.datasets.MNIST(root, train=..., download=False)` after `verify_mnist`.
    What torchvision returned is re-checked against the verified file hashes (torchvision
    prefers a legacy `MNIST/processed/*.pt` cache when one exists), so only the official
    content is ever served. content_hash = sha256 of "mnist/<split>" and the split's two file hashes.
    """
    if split not in SPLIT_FILES:
        raise UserError(f"unknown MNIST split '{split}': use 'train' or 'test'.")
    from torchvision.datasets import MNIST

    root = paths.data_dir(data_dir)
    verify_mnist(root)
    dataset = MNIST(str(root), train=(split == "train"), download=False)
    data = dataset.data.numpy()  # [n, 28, 28] uint8
    targets = dataset.targets.numpy()  # [n] int64
    image_file, label_file = SPLIT_FILES[split]
    if _idx_sha256(data) != MNIST_SHA256[image_file] or _idx_sha256(targets.astype(np.uint8)) != MNIST_SHA256[label_file]:
        raise UserError(
            f"torchvision read MNIST {split} data that differs from the verified files in {raw_dir(root)} "
            f"(a stale {root / 'MNIST' / 'processed'} cache?). Delete that folder and try again."
        )
    images = torch.from_numpy(data).to(torch.float32).div(255.0).sub(MEAN).div(STD).unsqueeze(1)  # [n, 1, 28, 28]
    content = hashlib.sha256(f"mnist/{split}\n{MNIST_SHA256[image_file]}\n{MNIST_SHA256[label_file]}".encode()).hexdigest()
    return TensorExampleSet("mnist", split, images.contiguous(), targets.astype(np.int64), content)


def fetch_mnist(
    data_dir: str | os.PathLike | None = None,
    base_url: str = OFFICIAL_URL,
    gz_md5: dict[str, str] | None = None,
) -> str:
    """Download the four `<base_url><file>.gz` archives into `<data_dir>/MNIST/raw/`, decompressed.

    Files already present with the right sha256 are skipped. Each archive is downloaded to a
    temporary folder inside raw/, its md5 checked (`gz_md5`, default: `MNIST_GZ_MD5` when
    `base_url` is an official mirror, else no md5 check), decompressed, the decompressed sha256
    checked against `MNIST_SHA256`, and only then renamed into place: a failure leaves no file.
    Works with http(s):// and file:// URLs. Returns the data hash (`verify_mnist`).
    """
    root = paths.data_dir(data_dir)
    raw = raw_dir(root)
    base = base_url if base_url.endswith("/") else base_url + "/"
    if gz_md5 is None and base in OFFICIAL_MIRRORS:
        gz_md5 = MNIST_GZ_MD5
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {raw}: {exc.strerror}. Choose a writable `--data-dir`.") from None
    for name, expected in MNIST_SHA256.items():
        dest = raw / name
        if dest.is_file() and cached_sha256(dest) == expected:
            continue
        _fetch_one(f"{base}{name}.gz", dest, expected, (gz_md5 or {}).get(name))
    return verify_mnist(root)


def _fetch_one(url: str, dest: Path, sha256: str, md5: str | None) -> None:
    """Download `url` (a gzip archive), check it, decompress it to `dest` atomically."""
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent) as tmp:
        archive = Path(tmp) / (dest.name + ".gz")
        download(url, archive, by_hand=f"download {url} by hand and put it, decompressed, at {dest}")
        if md5 is not None:
            actual_md5 = hashlib.md5(archive.read_bytes()).hexdigest()
            if actual_md5 != md5:
                raise UserError(f"{url} has md5 {actual_md5}, expected {md5}: the download is corrupt. Run `replacebench fetch mnist` again.")
        digest = hashlib.sha256()
        with atomic_path(dest) as unpacked:
            try:
                with gzip.open(archive, "rb") as src, open(unpacked, "wb") as out:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        digest.update(block)
                        out.write(block)
            except (OSError, EOFError, zlib.error) as exc:
                raise UserError(f"{url} is not a valid gzip archive ({exc}). Run `replacebench fetch mnist` again.") from None
            actual = digest.hexdigest()
            if actual != sha256:
                raise UserError(
                    f"{url} decompresses to content with sha256 {actual[:16]}…, expected {sha256[:16]}…: "
                    f"the source is corrupt or not official MNIST. Use the official mirror {OFFICIAL_URL}."
                )


def fetch_command(data_dir: str | os.PathLike | None, url: str | None = None, labels_url: str | None = None) -> dict[str, str]:
    """`replacebench fetch mnist` (the zoo's fetcher): `fetch_mnist` from `url` (a base URL; default the official one)."""
    if labels_url:
        raise UserError("--labels-url is for inceptionv1 only; `fetch mnist` takes --url BASE_URL.")
    data_hash = fetch_mnist(data_dir, **({"base_url": url} if url else {}))
    return {"mnist": f"downloaded and verified in {raw_dir(data_dir)}", "data_sha256": data_hash}
