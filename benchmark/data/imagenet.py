"""ImageNet validation images in class folders, preprocessed for Lucid's InceptionV1.

Layout: `<root>/<wnid>/<file>` with extensions .JPEG/.jpeg/.jpg/.png (any case),
e.g. the ImageFolder layout of the official validation set. Files are listed
sorted by their path relative to `root`; the label of an image is the class
index of its folder's WordNet id in the InceptionV1 label map
(`<data_dir>/inceptionv1/old_imagenet_labels.txt`, fetched by
`replacebench fetch inceptionv1`): line i (1-based) holds the wnid of class
i - 1, which is model output i.

Preprocessing (pinned; any change alters scores):
  1. `PIL.Image.open(path).convert("RGB")` (grayscale, CMYK, palette and RGBA
     images all become 3-channel RGB);
  2. resize so the shorter side is 256 px, bilinear with antialiasing
     (`torchvision.transforms.functional.resize(img, 256, BILINEAR, antialias=True)`,
     i.e. PIL's bilinear filter; the longer side becomes int(256 * long / short));
     images smaller than that are upscaled by the same rule;
  3. center crop 224 x 224 (`torchvision.transforms.functional.center_crop`);
  4. float32 pixel values in [0, 255] minus 117, channels first -> `# [3, 224, 224]`
     (values in [-117, 138]).
Images are decoded on demand in `load(indices)`; the set is never held in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..errors import UserError
from ..paths import data_dir as resolve_data_dir
from ..zoo import IMAGENET_OFFSET
from .base import ExampleSet

LABELS_RELPATH = Path("inceptionv1") / "old_imagenet_labels.txt"
N_CLASSES = 1000
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
RESIZE_SHORTER = 256
CROP = 224
#: Threads decoding JPEGs in `load` (PIL releases the GIL while it decodes and resizes).
DECODE_THREADS = min(8, os.cpu_count() or 1)
PIXEL_OFFSET = IMAGENET_OFFSET

_FETCH_HINT = "Run `replacebench fetch inceptionv1` (or point --data-dir / REPLACEBENCH_DATA at a data directory that has it)."


def label_map_path(data_dir: str | os.PathLike | None = None) -> Path:
    """Where the InceptionV1 label map lives in the data directory."""
    return resolve_data_dir(data_dir) / LABELS_RELPATH


def parse_label_map(text: str, source: str = "label map") -> list[tuple[str, str]]:
    """Parse the label map text into [(wnid, name)] of 1000 classes; UserError if malformed.

    Each of the 1000 lines is "wnid idx name" with idx = line number (1-based).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != N_CLASSES:
        raise UserError(f"{source} has {len(lines)} lines, expected {N_CLASSES} ('wnid index name'). {_FETCH_HINT}")
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        parts = line.split(maxsplit=2)
        ok = len(parts) == 3 and parts[0].startswith("n") and parts[0][1:].isdigit() and parts[1] == str(number)
        if not ok:
            raise UserError(f"{source} line {number} is malformed: {line.strip()!r}, expected 'wnid {number} name'. {_FETCH_HINT}")
        entries.append((parts[0], parts[2].strip()))
    wnids = [wnid for wnid, _ in entries]
    if len(set(wnids)) != len(wnids):
        raise UserError(f"{source} lists a WordNet id twice. {_FETCH_HINT}")
    return entries


def _read_label_map(data_dir: str | os.PathLike | None) -> list[tuple[str, str]]:
    path = label_map_path(data_dir)
    if not path.is_file():
        raise UserError(f"the InceptionV1 label map {path} is missing. {_FETCH_HINT}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the InceptionV1 label map {path}: {exc}. {_FETCH_HINT}") from None
    return parse_label_map(text, source=str(path))


def load_label_map(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The WordNet id of every class: element i is class i (model output i + 1). 1000 entries."""
    return [wnid for wnid, _ in _read_label_map(data_dir)]


def load_class_names(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Human-readable class names in the same order as `load_label_map`."""
    return [name for _, name in _read_label_map(data_dir)]


def preprocess(image: Image.Image) -> torch.Tensor:
    """A PIL image -> model-ready `# [3, 224, 224]` float32 in [0, 255] - 117 (see the module docstring)."""
    image = image.convert("RGB")
    image = TF.resize(image, RESIZE_SHORTER, interpolation=InterpolationMode.BILINEAR, antialias=True)
    image = TF.center_crop(image, [CROP, CROP])
    array = np.asarray(image, dtype=np.float32)  # [224, 224, 3] in [0, 255]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()) - PIXEL_OFFSET  # [3, 224, 224]


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode and preprocess one image file; a file that does not decode raises UserError naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return preprocess(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot decode image {path}: {exc}. Replace or remove the file.") from None


class ImageNetFolder(ExampleSet):
    """ImageNet images under `root/<wnid>/`, labelled by the InceptionV1 label map, decoded on demand."""

    name = "imagenet"
    split = "val"

    def __init__(self, root: str | os.PathLike, data_dir: str | os.PathLike | None = None, wnids: Sequence[str] | None = None) -> None:
        """`root`: the class-folder tree. `wnids`: the label map (default: `load_label_map(data_dir)`)."""
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise UserError(f"ImageNet directory {self.root} does not exist. Pass --imagenet DIR with one folder per WordNet id (e.g. DIR/n01440764/*.JPEG).")
        wnids = list(wnids) if wnids is not None else load_label_map(data_dir)
        class_of = {wnid: index for index, wnid in enumerate(wnids)}

        files: list[Path] = []
        labels: list[int] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                continue
            if folder.name not in class_of:
                raise UserError(f"folder {folder} is not a WordNet id of the 1000 InceptionV1 classes; remove it, or pass --imagenet DIR with only class folders.")
            files.extend(found)
            labels.extend([class_of[folder.name]] * len(found))
        if not files:
            raise UserError(f"no images (.JPEG/.jpg/.png) in class folders under {self.root}. Pass --imagenet DIR with one folder per WordNet id (e.g. DIR/n01440764/*.JPEG).")
        self.files = files
        self._labels = np.asarray(labels, dtype=np.int64)
        self._hash: str | None = None

    def __len__(self) -> int:
        return len(self.files)

    def labels(self) -> np.ndarray:
        """Class index of every image `# [n]` int64 (label-map order)."""
        return self._labels

    def relative_paths(self) -> list[str]:
        """Each image's path relative to `root`, POSIX style, in index order."""
        return [p.relative_to(self.root).as_posix() for p in self.files]

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """Decode and preprocess `indices` -> `# [len(indices), 3, 224, 224]` float32.

        Images are decoded by a small thread pool (PIL releases the GIL while
        decoding and resizing); the result is in `indices` order either way.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) == 0:
            return torch.empty((0, 3, CROP, CROP), dtype=torch.float32)
        paths = [self.files[int(i)] for i in indices]
        return torch.stack(list(self._pool().map(load_image, paths)))

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Like `ExampleSet.batches`, but the next batch is decoded while the caller works on this one."""
        indices = np.asarray(indices, dtype=np.int64)
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
        with ThreadPoolExecutor(max_workers=1) as prefetcher:
            pending = prefetcher.submit(self.load, chunks[0]) if chunks else None
            for k, chunk in enumerate(chunks):
                images = pending.result()
                pending = prefetcher.submit(self.load, chunks[k + 1]) if k + 1 < len(chunks) else None
                yield chunk, images

    def _pool(self) -> ThreadPoolExecutor:
        if getattr(self, "_decoders", None) is None:
            self._decoders = ThreadPoolExecutor(max_workers=DECODE_THREADS)
        return self._decoders

    def content_hash(self) -> str:
        """sha256 over the sorted (relative path, file size) pairs, one "path\\tsize\\n" line each."""
        if self._hash is None:
            digest = hashlib.sha256()
            for rel, path in sorted(zip(self.relative_paths(), self.files)):
                digest.update(f"{rel}\t{path.stat().st_size}\n".encode())
            self._hash = digest.hexdigest()
        return self._hash


def open_split(split: str, data_dir: str | os.PathLike | None = None,
               imagenet_dir: str | os.PathLike | None = None) -> ImageNetFolder:
    """The zoo's opener (`zoo.DatasetSpec.opener`): the validation images in `imagenet_dir`, whatever the split."""
    if imagenet_dir is None:
        raise UserError("this task needs ImageNet validation images: pass --imagenet DIR (an <wnid>/*.JPEG folder) or set REPLACEBENCH_IMAGENET.")
    return ImageNetFolder(imagenet_dir, data_dir=data_dir)
