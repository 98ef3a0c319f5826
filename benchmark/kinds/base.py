"""The adapter interface one kind of data and objective implements (`benchmark.kinds`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import stats


def classification_outputs(logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Cross-entropy per example, and whether the label is in the top k, for each k.

    `logits # [b, classes]`, `labels # [b]`. Returns `loss # [b]` (float64), loss_i = −log softmax(logits_i)[label_i],
    and `top{k} # [b]` (bool) by the one top-k rule, `stats.topk_correct` (ties count in the label's favour, so no
    sort order decides)."""
    logits = logits.float()
    out = {"loss": F.cross_entropy(logits, labels, reduction="none").double().cpu().numpy()}
    logits_np, labels_np = logits.detach().cpu().numpy(), labels.cpu().numpy()  # [b, classes], [b]
    for k in topk:
        out[f"top{k}"] = stats.topk_correct(logits_np, labels_np, k)
    return out


class DataKind(ABC):
    """One kind of data and objective. The defaults are those of classification.

    Where a layer's units sit is the model's (`StagedModel.unit_axis`: axis 1 for images' channels, the last axis for
    a sequence model's neurons); the kind's `select_units` and `set_units` are given that axis."""

    name: str = ""
    #: Whether an example's positions are predicted causally (text): `replace` is then audited for reading later
    #: positions (`harness.passes.causal_audit`).
    causal: bool = False

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    # -- inputs -------------------------------------------------------------------------------------------------
    @abstractmethod
    def to_input(self, x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        """A batch of model-ready inputs, as loaded by the dataset, on `device` in the model's layout."""

    # -- where the units sit ------------------------------------------------------------------------------------
    def select_units(self, activation: torch.Tensor, units: torch.Tensor, axis: int = 1) -> torch.Tensor:
        """The target units of a whole layer, on `axis`: `# [b, units_all, ...]` → `# [b, n_units, ...]` (axis 1;
        on another axis the unit count replaces that axis's size, e.g. `# [b, T, m]` → `# [b, T, n_units]`)."""
        return activation.index_select(axis, units)

    def set_units(self, activation: torch.Tensor, units: torch.Tensor, values: torch.Tensor, axis: int = 1) -> torch.Tensor:
        """A copy of `activation` with the target units on `axis` set to `values` (shaped as `select_units`
        returns; never in place)."""
        out = activation.clone()
        out.index_copy_(axis, units, values.to(out.device, out.dtype))
        return out

    # -- the objective ------------------------------------------------------------------------------------------
    def per_example_outputs(self, logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The per-example loss `# [b]` (float64) and top-k hits `top{k} # [b]` (bool) from what `class_logits`
        returns (`# [b, classes]`) and `labels # [b]`; here `classification_outputs`."""
        return classification_outputs(logits, labels, topk)

    def log_probs(self, logits: torch.Tensor) -> np.ndarray:
        """log softmax of the scored logits `# [b, classes]` as float32 numpy (the KL's inputs)."""
        return torch.log_softmax(logits.float(), 1).cpu().numpy()

    def per_example_kl(self, logp_clean: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """KL(clean ‖ other) per example `# [b]` from what `log_probs` returned for each (`stats.per_example_kl`)."""
        return stats.per_example_kl(logp_clean, logp)

    def logit_scale(self, logits: torch.Tensor) -> np.ndarray:
        """M_i = max_c |z_ic| of the scored float32 logits `# [b, classes]` → `# [b]` float64: how far rounding in the
        logits can move the example's loss and KL (`stats.loss_noise`, `stats.kl_noise`; `verify`'s floor)."""
        return logits.float().abs().amax(-1).double().cpu().numpy()

    def balanced_subsets(self) -> bool:
        """Whether a seeded subset of a split is balanced over the labels (`data.base.seeded_subset`): classes."""
        return True

    # -- people -------------------------------------------------------------------------------------------------
    @abstractmethod
    def describe(self, x: Any) -> str:
        """One example's input `# [...]`, as a person reads it (a caption)."""

    # -- the held-out split -------------------------------------------------------------------------------------
    @abstractmethod
    def held_out(self, eval_set: Any, secret: bytes, task_id: str) -> Any:
        """The held-out version of an eval split (a UserError where none is defined)."""

    def no_held_out(self) -> str | None:
        """Why no dataset of this kind can have a held-out split (a one-line UserError message), or None."""
        return None
