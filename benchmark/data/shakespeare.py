"""Tiny Shakespeare, as character ids in non-overlapping windows; and `fetch tinyshakespeare`.

File: `<data_dir>/tinyshakespeare/input.txt`, 1,115,394 bytes of ASCII, sha256 `TINYSHAKESPEARE_SHA256` (checked on
every open, cached by (path, size, mtime)). The 65 distinct characters, sorted by code point, are the vocabulary
(`VOCAB`): id = VOCAB.index(char).

The usual split: the first ⌊0.9 · 1,115,394⌋ = 1,003,854 characters are `train`, the other 111,540 are `val`.

An example is a window of W + 1 = 129 consecutive characters of one split: its first W = 128 are the input
`# [128]` int64, its last 128 the next-character targets (the label `# [128]` int64). Window i of a split covers
characters [129·i, 129·i + 129): windows never overlap (no character is in two), so examples are independent as the
intervals assume. `val` has ⌊111,540 / 129⌋ = 864 windows, `train` ⌊1,003,854 / 129⌋ = 7,781.

content_hash = sha256 over ("tinyshakespeare/<split>/w129\n", int64 input bytes, int64 label bytes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..download import cached_sha256, download
from ..errors import UserError
from .base import TensorExampleSet

TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1_115_394
OFFICIAL_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
OFFICIAL_BASE_URL = OFFICIAL_URL.rsplit("/", 1)[0] + "/"  # `fetch --url` takes a base URL (the folder), as for mnist
#: The corpus's 65 characters in code-point order; a character's id is its index here.
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TRAIN_FRACTION = 0.9
WINDOW = 128  # input characters per example (the model's context)
SPLITS = ("train", "val")
FETCH_HINT = ("Run `replacebench fetch tinyshakespeare`, or point `--data-dir`/`REPLACEBENCH_DATA` at a directory "
              "holding tinyshakespeare/input.txt.")


def corpus_path(data_dir: str | os.PathLike | None = None) -> Path:
    return paths.data_dir(data_dir) / "tinyshakespeare" / "input.txt"


def read_corpus(data_dir: str | os.PathLike | None = None) -> str:
    """The whole corpus, its sha256 checked (a missing or altered file is a UserError)."""
    path = corpus_path(data_dir)
    if not path.is_file():
        raise UserError(f"Tiny Shakespeare not found at {path}. {FETCH_HINT}")
    actual = cached_sha256(path)
    if actual != TINYSHAKESPEARE_SHA256:
        raise UserError(f"{path} has sha256 {actual[:12]}…, expected {TINYSHAKESPEARE_SHA256[:12]}…: not the Tiny "
                        f"Shakespeare corpus, or damaged. {FETCH_HINT}")
    return path.read_text(encoding="ascii")


def encode(text: str) -> np.ndarray:
    """Character ids `# [len(text)]` int64 (a character outside `VOCAB` is a UserError)."""
    table = np.full(128, -1, dtype=np.int64)
    table[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB))
    try:
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64)
    except UnicodeEncodeError as exc:  # never "?" in its place ("?" is one of the 65)
        bad_at = exc.start
    else:
        ids = table[codes]
        if (ids >= 0).all():
            return ids
        bad_at = int(np.flatnonzero(ids < 0)[0])
    raise UserError(f"character {text[bad_at]!r} is not one of the corpus's 65; use only {VOCAB!r}.")


def decode(ids: np.ndarray | torch.Tensor | list[int]) -> str:
    """The text of character ids `# [n]`."""
    return "".join(VOCAB[int(i)] for i in np.asarray(ids).reshape(-1))


def split_ids(split: str, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The character ids `# [n_chars]` of one split (train: the first 90%, val: the rest)."""
    if split not in SPLITS:
        raise UserError(f"unknown tinyshakespeare split '{split}': use 'train' or 'val'.")
    ids = encode(read_corpus(data_dir))
    cut = int(TRAIN_FRACTION * len(ids))
    return ids[:cut] if split == "train" else ids[cut:]


def windows(ids: np.ndarray, window: int = WINDOW) -> tuple[torch.Tensor, np.ndarray]:
    """Non-overlapping windows of `window + 1` characters: inputs `# [n, window]` and targets `# [n, window]`."""
    n = len(ids) // (window + 1)
    blocks = ids[: n * (window + 1)].reshape(n, window + 1)
    return torch.from_numpy(np.ascontiguousarray(blocks[:, :-1])), np.ascontiguousarray(blocks[:, 1:])


def open_split(split: str, data_dir: str | os.PathLike | None = None, imagenet_dir: object = None) -> TensorExampleSet:
    """The zoo's opener (`zoo.DatasetSpec.opener`): the split's windows (module docstring)."""
    inputs, targets = windows(split_ids(split, data_dir))
    digest = hashlib.sha256(f"tinyshakespeare/{split}/w{WINDOW + 1}\n".encode())
    digest.update(inputs.numpy().astype(np.int64).tobytes())
    digest.update(targets.astype(np.int64).tobytes())
    return TensorExampleSet("tinyshakespeare", split, inputs, targets, digest.hexdigest())


def fetch_command(data_dir: str | os.PathLike | None, url: str | None = None, labels_url: str | None = None) -> dict[str, str]:
    """`replacebench fetch tinyshakespeare` (the zoo's fetcher): download `<url>input.txt` (`url` a base URL, as for
    `fetch mnist`; default the official folder, `OFFICIAL_BASE_URL`) into `<data_dir>/tinyshakespeare/`, checking the
    sha256 before it is renamed into place (a failed download leaves nothing). A file already there with the right
    sha256 is kept."""
    if labels_url:
        raise UserError("--labels-url is for inceptionv1 only; `fetch tinyshakespeare` takes --url BASE_URL.")
    dest = corpus_path(data_dir)
    if dest.is_file() and cached_sha256(dest) == TINYSHAKESPEARE_SHA256:
        return {"tinyshakespeare": f"{dest} (already present, sha256 verified)"}
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {dest.parent}: {exc.strerror}. Choose a writable `--data-dir`.") from None
    base = url or OFFICIAL_BASE_URL
    download((base if base.endswith("/") else base + "/") + dest.name, dest, sha256=TINYSHAKESPEARE_SHA256)
    return {"tinyshakespeare": f"{dest} (sha256 {TINYSHAKESPEARE_SHA256[:12]}… verified)"}
