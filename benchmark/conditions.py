"""Per-example loss and top-k correctness from class logits."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def per_example_outputs(class_logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Cross-entropy per example, and whether the label is in the top k, for each k.

    `class_logits # [batch, classes]`, `labels # [batch]`. Returns `loss # [batch]`
    (float64) and `top{k} # [batch]` (bool).
    """
    logits = class_logits.float()
    out = {"loss": F.cross_entropy(logits, labels, reduction="none").double().cpu().numpy()}
    ranked = logits.topk(max(topk), dim=1).indices  # [batch, max_k]
    hits = ranked == labels[:, None]  # [batch, max_k]
    for k in topk:
        out[f"top{k}"] = hits[:, :k].any(dim=1).cpu().numpy()
    return out
