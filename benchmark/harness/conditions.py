"""Per-example loss and top-k correctness from class logits."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import stats


def per_example_outputs(class_logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Cross-entropy per example, and whether the label is in the top k, for each k.

    `class_logits # [batch, classes]`, `labels # [batch]`. Returns `loss # [batch]`
    (float64) and `top{k} # [batch]` (bool), by the one top-k rule, `stats.topk_correct`
    (ties count in the label's favour, so no sort order decides).
    """
    logits = class_logits.float()
    out = {"loss": F.cross_entropy(logits, labels, reduction="none").double().cpu().numpy()}
    logits_np, labels_np = logits.detach().cpu().numpy(), labels.cpu().numpy()  # [batch, classes], [batch]
    for k in topk:
        out[f"top{k}"] = stats.topk_correct(logits_np, labels_np, k)
    return out
