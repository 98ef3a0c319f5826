"""ImageNet class-folder loading on the real sample: labels, preprocessing, hashing, clear errors."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_inception import imagenet_sample_dir, shared_data_dir  # noqa: E402

from benchmark.data.imagenet import ImageNetFolder, load_class_names, load_label_map  # noqa: E402
from benchmark.errors import UserError  # noqa: E402


def reference_preprocess(path: Path) -> np.ndarray:
    """The pinned recipe with PIL alone: RGB, shorter side 256 (bilinear), center crop 224, [0,255]-117, CHW."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if w <= h:
        size = (256, int(256 * h / w))
    else:
        size = (int(256 * w / h), 256)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    image = image.crop((left, top, left + 224, top + 224))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) - 117.0


def copy_sample(sample: Path, dest: Path, n_classes: int = 4) -> Path:
    """A tmp copy of the first `n_classes` class folders."""
    root = dest / "imagenet"
    for folder in sorted(p for p in sample.iterdir() if p.is_dir())[:n_classes]:
        shutil.copytree(folder, root / folder.name)
    return root


def write_label_map(data_dir: Path, lines: list[str]) -> None:
    (data_dir / "inceptionv1").mkdir(parents=True, exist_ok=True)
    (data_dir / "inceptionv1" / "old_imagenet_labels.txt").write_text("\n".join(lines) + "\n")


def test_label_map_reads_the_real_file() -> None:
    data_dir = shared_data_dir()
    wnids = load_label_map(data_dir)
    names = load_class_names(data_dir)
    assert len(wnids) == len(names) == 1000
    raw = (data_dir / "inceptionv1" / "old_imagenet_labels.txt").read_text().splitlines()
    for i in (1, 2, 417, 1000):  # line i -> class i - 1
        wnid, index, name = raw[i - 1].split(" ", 2)
        assert int(index) == i and wnids[i - 1] == wnid and names[i - 1] == name
    assert len(set(wnids)) == 1000


def test_label_map_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="replacebench fetch inceptionv1"):
        load_label_map(tmp_path)
    good = [f"n{i:08d} {i} class {i}" for i in range(1, 1001)]
    write_label_map(tmp_path, good[:999])
    with pytest.raises(UserError, match="999 lines.*replacebench fetch inceptionv1"):
        load_label_map(tmp_path)
    write_label_map(tmp_path, good[:10] + ["n00000011 12 wrong index"] + good[11:])
    with pytest.raises(UserError, match="line 11"):
        load_label_map(tmp_path)
    write_label_map(tmp_path, good)
    assert load_label_map(tmp_path)[10] == "n00000011"


@pytest.fixture(scope="module")
def sample_set() -> ImageNetFolder:
    sample = imagenet_sample_dir()
    return ImageNetFolder(sample, data_dir=sample.parent)


def test_sample_labels_follow_folder_wnids(sample_set: ImageNetFolder) -> None:
    wnids = load_label_map(sample_set.root.parent)
    assert len(sample_set) == 103
    labels = sample_set.labels()
    assert labels.dtype == np.int64 and labels.shape == (103,)
    for rel, label in zip(sample_set.relative_paths(), labels):
        assert wnids[label] == rel.split("/")[0]
    assert sample_set.relative_paths() == sorted(sample_set.relative_paths())
    assert sample_set.name == "imagenet" and sample_set.split == "val"


@pytest.mark.slow
def test_every_sample_image_loads(sample_set: ImageNetFolder) -> None:
    n_gray = n_small = 0
    for indices, batch in sample_set.batches(range(len(sample_set)), batch_size=16):
        assert batch.shape == (len(indices), 3, 224, 224) and batch.dtype == torch.float32
        assert torch.isfinite(batch).all()
        assert batch.min() >= -117.0 and batch.max() <= 138.0
        for i, image in zip(indices, batch):
            with Image.open(sample_set.files[i]) as original:
                if original.mode == "L":
                    n_gray += 1
                    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
                if min(original.size) < 224:
                    n_small += 1
    assert n_gray == 23 and n_small >= 10  # README: 23 grayscale, at least 10 with a side under 224 px


def test_preprocessing_matches_pinned_recipe(sample_set: ImageNetFolder) -> None:
    # one landscape, one portrait, one grayscale, one tiny (75x56) image
    names = ["n01440764_tench.JPEG", "n03692522_loupe.JPEG", "n02096051_Airedale.JPEG", "n01871265_tusker.JPEG"]
    rel = sample_set.relative_paths()
    indices = [next(i for i, r in enumerate(rel) if r.endswith(name)) for name in names]
    loaded = sample_set.load(indices)
    for i, image in zip(indices, loaded):
        np.testing.assert_array_equal(image.numpy(), reference_preprocess(sample_set.files[i]))
    assert loaded.std() > 10  # real content, not a constant


def test_content_hash(tmp_path: Path, sample_set: ImageNetFolder) -> None:
    root = copy_sample(sample_set.root, tmp_path)
    data_dir = sample_set.root.parent
    dataset = ImageNetFolder(root, data_dir=data_dir)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.JPEG"), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    assert dataset.content_hash() == digest.hexdigest()
    assert ImageNetFolder(root, data_dir=data_dir).content_hash() == dataset.content_hash()
    victim = dataset.files[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert ImageNetFolder(root, data_dir=data_dir).content_hash() != dataset.content_hash()
    assert sample_set.content_hash() != dataset.content_hash()


def test_corrupt_image_errors_clearly(tmp_path: Path, sample_set: ImageNetFolder) -> None:
    root = copy_sample(sample_set.root, tmp_path, n_classes=2)
    dataset = ImageNetFolder(root, data_dir=sample_set.root.parent)
    victim = dataset.files[1]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated JPEG
    assert dataset.load([0]).shape == (1, 3, 224, 224)  # others still load: decoding is per index
    with pytest.raises(UserError, match=str(victim.name)):
        dataset.load([0, 1])
    victim.write_bytes(b"this is not an image")
    with pytest.raises(UserError, match="cannot decode image"):
        dataset.load([1])


def test_extensions_are_case_insensitive(tmp_path: Path, sample_set: ImageNetFolder) -> None:
    root = copy_sample(sample_set.root, tmp_path, n_classes=2)
    first, second = sorted(p for p in root.iterdir())
    jpeg = next(first.iterdir())
    jpeg.rename(jpeg.with_suffix(".jpg"))
    with Image.open(next(second.iterdir())) as image:
        image.convert("RGBA").save(second / "extra.PNG")
    (second / "notes.txt").write_text("not an image")
    dataset = ImageNetFolder(root, data_dir=sample_set.root.parent)
    assert len(dataset) == 3
    assert dataset.load(range(3)).shape == (3, 3, 224, 224)


def test_folder_errors(tmp_path: Path, sample_set: ImageNetFolder) -> None:
    data_dir = sample_set.root.parent
    with pytest.raises(UserError, match="--imagenet DIR"):
        ImageNetFolder(tmp_path / "missing", data_dir=data_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="--imagenet DIR"):
        ImageNetFolder(tmp_path / "empty", data_dir=data_dir)
    root = copy_sample(sample_set.root, tmp_path, n_classes=1)
    shutil.copytree(next(root.iterdir()), root / "n99999999")
    with pytest.raises(UserError, match="n99999999"):
        ImageNetFolder(root, data_dir=data_dir)


def test_prefetched_batches_match_serial_decoding(sample_set: ImageNetFolder) -> None:
    """Threaded, prefetched batches give exactly the images of a plain one-by-one decode, in order."""
    from benchmark.data.imagenet import load_image

    indices = np.array([5, 0, 17, 3, 99, 42, 8])
    got = [(chunk.tolist(), images) for chunk, images in sample_set.batches(indices, 3)]
    assert [c for c, _ in got] == [[5, 0, 17], [3, 99, 42], [8]]
    expected = torch.stack([load_image(sample_set.files[i]) for i in indices])
    assert torch.equal(torch.cat([images for _, images in got]), expected)
