"""The MNIST reference models: `mnist-mlp` and `mnist-cnn`.

Input `# [b, 1, 28, 28]`, normalised as (x/255 − 0.1307)/0.3081 (see `benchmark.data.mnist`).

`MnistMLP` (`mlp.ThreeLayerMLP`): fc1 `# [b, 256]`, fc2 `# [b, 128]`, logits `# [b, 10]`.

`MnistCNN` stages:
  conv1  = ReLU(conv3x3_pad1(x))                          # [b, 32, 28, 28] (`conv1_conv`, `conv1`)
  conv2  = ReLU(conv3x3_pad1(maxpool2(conv1)))            # [b, 64, 14, 14] (`conv2_pool`, `conv2_conv`, `conv2`)
  fc1    = ReLU(W · flatten(maxpool2(conv2)) + b)         # [b, 128]        (`fc1_pool`, `fc1_linear` 3136→128, `fc1`)
  logits = W' · fc1 + b'                                  # [b, 10]         (`logits_linear`, `logits` Identity)
Pools belong to the start of the following stage, so each stage ends at its hook point.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import StagedModel
from .mlp import ThreeLayerMLP


class MnistMLP(ThreeLayerMLP):
    """784 → 256 → 128 → 10."""

    input_shape = (1, 28, 28)
    hidden = (256, 128)


class MnistCNN(StagedModel):
    """Two 3x3 conv layers (32, 64 channels) with 2x2 max pools, then 3136 → 128 → 10."""

    input_shape: tuple[int, ...] = (1, 28, 28)
    stage_names = ("conv1", "conv2", "fc1", "logits")
    stage_shapes: dict[str, tuple[int, ...]] = {
        "conv1": (32, 28, 28),
        "conv2": (64, 14, 14),
        "fc1": (128,),
        "logits": (10,),
    }

    def __init__(self) -> None:
        super().__init__()
        self.conv1_conv = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv1 = nn.ReLU()
        self.conv2_pool = nn.MaxPool2d(2)
        self.conv2_conv = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.conv2 = nn.ReLU()
        self.fc1_pool = nn.MaxPool2d(2)
        self.fc1_linear = nn.Linear(64 * 7 * 7, 128)
        self.fc1 = nn.ReLU()
        self.logits_linear = nn.Linear(128, 10)
        self.logits = nn.Identity()

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "conv1":
            return self.conv1(self.conv1_conv(x))  # [b, 32, 28, 28]
        if name == "conv2":
            return self.conv2(self.conv2_conv(self.conv2_pool(x)))  # [b, 64, 14, 14]
        if name == "fc1":
            return self.fc1(self.fc1_linear(torch.flatten(self.fc1_pool(x), 1)))  # [b, 128]
        if name == "logits":
            return self.logits(self.logits_linear(x))  # [b, 10]
        raise KeyError(f"MnistCNN has no stage '{name}'")
