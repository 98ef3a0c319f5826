"""Text scored on every next character: windows of character ids `# [b, T]` int64 → logits `# [b, T, V]`.

An example is a window of the corpus (`data.shakespeare`): its inputs `# [T]` and the next-character targets
`# [T]`, the label. The per-example loss is the mean next-character cross-entropy over the window's T scored
positions (every position),

    loss_i = (1/T) Σ_t −log softmax(ℓ_it)[y_it]                      (nats per character)

and the per-example KL the mean over positions of KL(clean ‖ other) of the next-character distributions,

    KL_i = (1/T) Σ_t Σ_c p_itc (log p_itc − log q_itc).

A mean of T terms per example: the windows do not overlap, so examples are independent as the intervals assume,
while the characters inside one window are not. Units sit on the last axis at every position (a neuron,
`# [b, T, m]`) or on the heads' axis of `# [b, T, H, e]` (a head), as the model says (`StagedModel.unit_axis`).
There is no top-k: `task.topk` is empty for text tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import stats
from ..errors import UserError
from .base import DataKind


class NextCharacter(DataKind):
    name = "text"
    causal = True  # position t's answer is character t + 1, which is in the window (`harness.passes.causal_audit`)

    def to_input(self, x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        """Character ids `# [b, T]` as int64 on `device`."""
        return x.to(device=device, dtype=torch.long)

    def per_example_outputs(self, logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...]) -> dict[str, np.ndarray]:
        """`loss # [b]` (float64): the mean over positions of the next-character cross-entropy (module docstring),
        from `logits # [b, T, V]` and `labels # [b, T]`. `topk` must be empty (no top-k for text)."""
        if topk:
            raise UserError(f"dataset {self.dataset}: text tasks have no top-k accuracy; remove `topk` from the task file.")
        b, t, v = logits.shape
        per_position = F.cross_entropy(logits.float().reshape(b * t, v), labels.reshape(b * t), reduction="none")
        return {"loss": per_position.double().reshape(b, t).mean(1).cpu().numpy()}

    def log_probs(self, logits: torch.Tensor) -> np.ndarray:
        """log softmax over characters `# [b, T, V]` as float32 numpy."""
        return torch.log_softmax(logits.float(), -1).cpu().numpy()

    def per_example_kl(self, logp_clean: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """The mean over positions of KL(clean ‖ other) `# [b]` (module docstring; each position's KL is
        `stats.per_example_kl`'s)."""
        b, t, v = logp.shape
        return stats.per_example_kl(np.reshape(logp_clean, (b * t, v)), np.reshape(logp, (b * t, v))).reshape(b, t).mean(1)

    def logit_scale(self, logits: torch.Tensor) -> np.ndarray:
        """The mean over positions of max_c |z_itc| `# [b]` float64, from `logits # [b, T, V]` (the loss and KL are
        means over positions too; `DataKind.logit_scale`)."""
        return logits.float().abs().amax(-1).double().mean(1).cpu().numpy()

    def balanced_subsets(self) -> bool:
        """A label is a whole window of targets, not a class: subsets are plain seeded draws."""
        return False

    def describe(self, x: Any) -> str:
        """The window's text, as a Python string literal (newlines escaped)."""
        from ..data.shakespeare import decode

        return repr(decode(np.asarray(x).reshape(-1)))

    def held_out(self, eval_set: Any, secret: bytes, task_id: str) -> Any:
        raise UserError(self.no_held_out())

    def no_held_out(self) -> str:
        """The whole corpus is public (docs/text.md: the held-out decision)."""
        return (f"no held-out split is defined for {self.dataset} tasks: the whole corpus is public, so no secret "
                "choice of its windows is unseen; score them without --held-out-secret (docs/text.md says why).")
