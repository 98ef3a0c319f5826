"""`digits-mlp`: a small MLP on scikit-learn's 8x8 digits.

Stages (each ends at the hook-point module of the same name):
  fc1    = ReLU(W1 · flatten(x) + b1)   # [b, 64]   (`fc1_linear` 64→64, `fc1` ReLU)
  fc2    = ReLU(W2 · fc1 + b2)          # [b, 32]   (`fc2_linear` 64→32, `fc2` ReLU)
  logits = W3 · fc2 + b3                # [b, 10]   (`logits_linear` 32→10, `logits` Identity)
Input `# [b, 1, 8, 8]`, pixel values in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from .base import StagedModel


class DigitsMLP(StagedModel):
    """64 → 64 → 32 → 10 MLP; ReLUs are separate, non-inplace modules."""

    model_id = "digits-mlp"
    input_shape: tuple[int, ...] = (1, 8, 8)
    stage_names = ("fc1", "fc2", "logits")
    #: Per-example activation shape of every stage.
    stage_shapes: dict[str, tuple[int, ...]] = {"fc1": (64,), "fc2": (32,), "logits": (10,)}

    def __init__(self) -> None:
        super().__init__()
        self.fc1_linear = nn.Linear(64, 64)
        self.fc1 = nn.ReLU()
        self.fc2_linear = nn.Linear(64, 32)
        self.fc2 = nn.ReLU()
        self.logits_linear = nn.Linear(32, 10)
        self.logits = nn.Identity()

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "fc1":
            return self.fc1(self.fc1_linear(torch.flatten(x, 1)))  # [b, 64]
        if name == "fc2":
            return self.fc2(self.fc2_linear(x))  # [b, 32]
        if name == "logits":
            return self.logits(self.logits_linear(x))  # [b, 10]
        raise KeyError(f"DigitsMLP has no stage '{name}'")
