"""The three-layer MLP both MLP reference models are (`digits-mlp`, `mnist-mlp`), with their widths as class fields.

Stages (each ends at the hook-point module of the same name), for input `# [b, *input_shape]`:
  fc1    = ReLU(W1 · flatten(x) + b1)   # [b, h1]   (`fc1_linear` d→h1, `fc1` ReLU)
  fc2    = ReLU(W2 · fc1 + b2)          # [b, h2]   (`fc2_linear` h1→h2, `fc2` ReLU)
  logits = W3 · fc2 + b3                # [b, 10]   (`logits_linear` h2→10, `logits` Identity)
with d = the product of `input_shape`. ReLUs are separate, non-inplace modules. The layers are made in that
order, so a seeded initialisation draws the same numbers as it always has.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import StagedModel


class ThreeLayerMLP(StagedModel):
    """d → h1 → h2 → classes; a subclass sets `input_shape`, `hidden` = (h1, h2) and `classes`."""

    input_shape: tuple[int, ...] = ()
    hidden: tuple[int, int] = (0, 0)
    classes = 10
    stage_names = ("fc1", "fc2", "logits")

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        #: Per-example activation shape of every stage.
        cls.stage_shapes = {"fc1": (cls.hidden[0],), "fc2": (cls.hidden[1],), "logits": (cls.classes,)}

    def __init__(self) -> None:
        super().__init__()
        h1, h2 = self.hidden
        self.fc1_linear = nn.Linear(math.prod(self.input_shape), h1)
        self.fc1 = nn.ReLU()
        self.fc2_linear = nn.Linear(h1, h2)
        self.fc2 = nn.ReLU()
        self.logits_linear = nn.Linear(h2, self.classes)
        self.logits = nn.Identity()

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "fc1":
            return self.fc1(self.fc1_linear(torch.flatten(x, 1)))  # [b, h1]
        if name == "fc2":
            return self.fc2(self.fc2_linear(x))  # [b, h2]
        if name == "logits":
            return self.logits(self.logits_linear(x))  # [b, classes]
        raise KeyError(f"{type(self).__name__} has no stage '{name}'")
