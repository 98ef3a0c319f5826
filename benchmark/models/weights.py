"""Where fetched weights live, the sha256 `fetch` recorded for them, and how any weights are written: a leaf module.

`models.registry` (loading, for scoring) and `fetch_inception` (download and conversion) both need these;
neither imports the other for them, so there is no import cycle between the two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..paths import cache_dir

CACHE_SUBDIR = "inceptionv1"
PTH_NAME = "inception5h.pth"
SAFETENSORS_NAME = "inception5h.safetensors"
METADATA_NAME = "inception5h.json"
_FETCH = "Run `replacebench fetch inceptionv1`."


def inception_weights_path() -> Path:
    """Where the converted weights live: `<cache>/inceptionv1/inception5h.safetensors`."""
    return cache_dir(CACHE_SUBDIR) / SAFETENSORS_NAME


def recorded_sha256(st_path: Path) -> str | None:
    """The sha256 `fetch` recorded in `inception5h.json` beside the converted file (None: not a fetched file)."""
    meta_path = st_path.with_name(METADATA_NAME)
    if st_path.name != SAFETENSORS_NAME or not meta_path.is_file():
        return None
    try:
        return json.loads(meta_path.read_text())["safetensors_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{meta_path} is unreadable. {_FETCH}") from None


def save_safetensors(state: dict[str, Any], dest: Path) -> None:
    """Write a state dict as safetensors atomically: sorted keys, contiguous float32 CPU copies, and one metadata
    key only (safetensors writes a metadata map in an order that varies per process, and the sha256 must not).
    Used for trained checkpoints and converted downloads alike, so the bytes depend on the weights alone."""
    import torch
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    tensors = {key: state[key].detach().to("cpu", torch.float32).contiguous() for key in sorted(state)}
    with atomic_path(dest) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
