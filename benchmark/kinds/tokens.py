"""Token sequences scored on the answer at the last position (modular addition: `a b =` → (a + b) mod p).

Inputs are token ids `# [b, T]` int64 and cross to submissions as int64. The model reads only the last position,
so its activations after attention are that position's (`# [b, units]`, units on axis 1) and `class_logits` are the
answer's logits `# [b, classes]`: the loss is the cross-entropy of the answer there, as for a classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .base import DataKind


class AnswerAtLastPosition(DataKind):
    name = "tokens"

    def to_input(self, x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        """Token ids `# [b, T]` as int64 on `device` (no memory layout to choose)."""
        return x.to(device=device, dtype=torch.long)

    def describe(self, x: Any) -> str:
        """`a b =` as `"17 + 95 ="` for modular addition (the last token is '=')."""
        ids = [int(v) for v in np.asarray(x).reshape(-1)]
        return " + ".join(str(v) for v in ids[:-1]) + " ="

    def held_out(self, eval_set: Any, secret: bytes, task_id: str) -> Any:
        raise UserError(self.no_held_out())

    def no_held_out(self) -> str:
        """Every input is public and the answer a fixed function of it: a cheat computes the answer rather than
        looking it up, so neither a secret transform nor a secret subset of the inputs hides anything from it."""
        return (f"no held-out split is defined for {self.dataset} tasks: every input is public and the answer is a "
                "fixed function of it, so no secret transform can hide an example; score them without "
                "--held-out-secret.")
