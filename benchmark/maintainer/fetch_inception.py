"""`replacebench fetch inceptionv1`: the inception5h weights and its label map, verified.

Weights: ProGamerGov's PyTorch conversion of Lucid's inception5h (`WEIGHTS_URL`),
a plain state dict saved with `torch.save`. It is downloaded into the cache
(`<cache>/inceptionv1/inception5h.pth`), read ONLY with
`torch.load(path, weights_only=True, map_location="cpu")` (a file that needs any
other pickled object is refused), checked key by key and shape by shape against
`InceptionV1().state_dict()`, and converted to safetensors
(`<cache>/inceptionv1/inception5h.safetensors`, written atomically). The sha256
of both files goes to `<cache>/inceptionv1/inception5h.json`; `load_inceptionv1`
checks the safetensors file against it before every load.

Label map: `old_imagenet_labels.txt` from lucent (`LABELS_URL`) into
`<data_dir>/inceptionv1/` if it is not there yet; its format is validated
(1000 lines "wnid index name") before it is put in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..atomic import atomic_write_bytes
from ..data.imagenet import label_map_path, load_label_map, parse_label_map
from ..download import download, sha256_file
from ..errors import UserError
from ..models.inception import InceptionV1
from ..models.registry import check_state_dict, load_model
from ..models.weights import (
    CACHE_SUBDIR,
    METADATA_NAME,
    PTH_NAME,
    SAFETENSORS_NAME,
    inception_weights_path,
    save_safetensors,
)
from ..paths import cache_dir
from ..paths import data_dir as resolve_data_dir

WEIGHTS_URL = "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"
LABELS_URL = "https://raw.githubusercontent.com/greentfrapp/lucent/master/lucent/modelzoo/misc/old_imagenet_labels.txt"




def read_state_dict_pth(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a .pth state dict with `weights_only=True`; anything but {str: Tensor} raises UserError."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # UnpicklingError for disallowed objects, RuntimeError for corrupt archives
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"refusing {path}: it is not a plain tensor state dict loadable with weights_only=True ({first_line}). Delete it and re-run `replacebench fetch inceptionv1`.") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UserError(f"{path} is not a state dict of named tensors. Delete it and re-run `replacebench fetch inceptionv1`.")
    return dict(state)


def check_structure(state: dict[str, torch.Tensor], source: str = "weights file") -> None:
    """Exact key set and shapes vs `InceptionV1().state_dict()` (`check_state_dict`), before anything is converted."""
    check_state_dict(InceptionV1(), state, source, "Delete it and re-run `replacebench fetch inceptionv1`.")


def fetch_label_map(data_dir: str | os.PathLike | None = None, labels_url: str = LABELS_URL) -> tuple[Path, str]:
    """Download the label map into `<data_dir>/inceptionv1/` if absent (validated first). Returns (path, sha256)."""
    dest = label_map_path(data_dir)
    if dest.is_file():
        load_label_map(data_dir)  # validates; a malformed file raises UserError naming it
        return dest, sha256_file(dest)

    def check(tmp: Path) -> None:
        try:
            text = tmp.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{labels_url} is not a text label map. Check the URL.") from None
        parse_label_map(text, source=labels_url)

    return dest, download(labels_url, dest, check=check)


def fetch_inceptionv1(data_dir: str | os.PathLike | None = None, weights_url: str = WEIGHTS_URL, labels_url: str = LABELS_URL) -> dict:
    """Download, verify and convert the inception5h weights; fetch the label map. Returns paths and sha256s.

    Keys: weights_pth, pth_sha256, weights_safetensors, safetensors_sha256, metadata, labels, labels_sha256.
    """
    cache = cache_dir(CACHE_SUBDIR)
    pth = cache / PTH_NAME
    pth_sha = download(weights_url, pth)
    state = read_state_dict_pth(pth)
    check_structure(state, source=str(pth))

    st_path = cache / SAFETENSORS_NAME
    save_safetensors(state, st_path)
    st_sha = sha256_file(st_path)
    metadata = {
        "model": "inceptionv1",
        "source_url": weights_url,
        "pth_sha256": pth_sha,
        "safetensors_sha256": st_sha,
        "n_tensors": len(state),
        "n_parameters": int(sum(t.numel() for t in state.values())),
    }
    meta_path = cache / METADATA_NAME
    atomic_write_bytes(meta_path, (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode())

    labels_path, labels_sha = fetch_label_map(data_dir, labels_url)
    return {
        "weights_pth": str(pth),
        "pth_sha256": pth_sha,
        "weights_safetensors": str(st_path),
        "safetensors_sha256": st_sha,
        "metadata": str(meta_path),
        "labels": str(labels_path),
        "labels_sha256": labels_sha,
        "data_dir": str(resolve_data_dir(data_dir)),
    }


def load_inceptionv1(path: str | os.PathLike | None = None, sha256: str | None = None) -> InceptionV1:
    """InceptionV1 in eval mode with weights from a safetensors file (default: `inception_weights_path()`).

    The file's sha256 must equal `sha256` when given, else the one recorded in
    `inception5h.json` beside it (when present); a mismatch raises UserError.
    The loading itself is `models.registry.load_model`, as when scoring.
    """
    st_path = Path(path).expanduser() if path is not None else inception_weights_path()
    model, _ = load_model("inceptionv1", str(st_path), sha256 or "")
    return model


def fetch_command(data_dir: str | os.PathLike | None, url: str | None = None, labels_url: str | None = None) -> dict[str, str]:
    """`replacebench fetch inceptionv1` (the zoo's fetcher): `fetch_inceptionv1`, `url` overriding the weights'
    source and `labels_url` the label map's."""
    return {key: str(value) for key, value in fetch_inceptionv1(data_dir, weights_url=url or WEIGHTS_URL,
                                                                labels_url=labels_url or LABELS_URL).items()}
