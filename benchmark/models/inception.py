"""InceptionV1 as in Lucid / OpenAI Microscope / the Distill Circuits thread ("inception5h").

Module names and state-dict keys are those of ProGamerGov's PyTorch conversion
(`inception5h.pth`, also what lucent loads), so that file loads unchanged with
`load_state_dict(strict=True)`: flat names such as `conv2d0_pre_relu_conv`,
`mixed3b_5x5_pre_relu_conv`, `softmax2_pre_activation_matmul`. The file holds
only the main path (no auxiliary heads), so this model has none either.

Input: RGB `# [batch, 3, 224, 224]`, pixel values in [0, 255] minus 117.

Stages (hook-point module in brackets; lucent's `layer:unit` is channel `unit`
of that module's output, e.g. `mixed3b:379`):

    conv2d0  (ReLU)    pad SAME, 7x7/2 conv                         -> (64, 112, 112)
    conv2d1  (ReLU)    maxpool0 3x3/2 SAME, LRN0, 1x1 conv          -> (64, 56, 56)
    conv2d2  (ReLU)    3x3 conv SAME                                -> (192, 56, 56)
    mixed3a  (concat)  LRN1, maxpool1 3x3/2 SAME, inception block   -> (256, 28, 28)
    mixed3b  (concat)  inception block                              -> (480, 28, 28)
    mixed4a  (concat)  maxpool4 3x3/2 SAME, inception block         -> (508, 14, 14)
    mixed4b..mixed4e   inception blocks                             -> 512, 512, 528, 832 (14x14)
    mixed5a  (concat)  maxpool10 3x3/2 SAME, inception block        -> (832, 7, 7)
    mixed5b  (concat)  inception block                              -> (1024, 7, 7)
    logits   (Identity) 7x7 average pool, 1024 -> 1008 linear       -> (1008,)

Pools and LRNs sit at the start of the stage after the activation they follow.
An inception block concatenates, in this order, the 1x1 branch, the 3x3 branch
(1x1 bottleneck, ReLU, 3x3), the 5x5 branch (1x1 bottleneck, ReLU, 5x5) and the
pool branch (3x3/1 max pool, 1x1 "pool_reduce"), each ending in a ReLU. So in
mixed3b (128, 192, 96, 64) the 5x5 branch is channels 320..415, which holds the
curve detectors 379, 406, 385, 343, 342, 388, 324, 340, 330, 349.

TensorFlow 'SAME' padding is emulated exactly: for kernel k, stride s and input
size n, out = ceil(n / s), total pad = max((out - 1) * s + k - n, 0), with
floor(total / 2) before and the rest after (zeros for convolutions, -inf for
max pools, which TF's SAME max pool ignores). LRN is TF's (see `lrn.py`):
depth_radius 5, bias 2, alpha 1e-4, beta 0.5. The 1008 outputs: index 0 is a
dummy, 1..1000 are the classes in the order of `old_imagenet_labels.txt`,
1001..1007 are unused; `class_logits` keeps 1..1000.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import StagedModel
from .lrn import LocalResponseNorm

# (block, in_channels, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool_reduce)
INCEPTION_BLOCKS: tuple[tuple[str, int, int, int, int, int, int, int], ...] = (
    ("mixed3a", 192, 64, 96, 128, 16, 32, 32),
    ("mixed3b", 256, 128, 128, 192, 32, 96, 64),
    ("mixed4a", 480, 192, 96, 204, 16, 48, 64),
    ("mixed4b", 508, 160, 112, 224, 24, 64, 64),
    ("mixed4c", 512, 128, 128, 256, 24, 64, 64),
    ("mixed4d", 512, 112, 144, 288, 32, 64, 64),
    ("mixed4e", 528, 256, 160, 320, 32, 128, 128),
    ("mixed5a", 832, 256, 160, 320, 48, 128, 128),
    ("mixed5b", 832, 384, 192, 384, 48, 128, 128),
)

#: Per-example activation shape of every stage at the 224x224 input.
STAGE_SHAPES: dict[str, tuple[int, ...]] = {
    "conv2d0": (64, 112, 112),
    "conv2d1": (64, 56, 56),
    "conv2d2": (192, 56, 56),
    "mixed3a": (256, 28, 28),
    "mixed3b": (480, 28, 28),
    "mixed4a": (508, 14, 14),
    "mixed4b": (512, 14, 14),
    "mixed4c": (512, 14, 14),
    "mixed4d": (528, 14, 14),
    "mixed4e": (832, 14, 14),
    "mixed5a": (832, 7, 7),
    "mixed5b": (1024, 7, 7),
    "logits": (1008,),
}

N_OUTPUTS = 1008
N_CLASSES = 1000

# The pool (with its SAME padding) that opens a stage, if any.
_STAGE_POOL = {"conv2d1": "maxpool0", "mixed3a": "maxpool1", "mixed4a": "maxpool4", "mixed5a": "maxpool10"}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis: out = ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad `x # [batch, C, H, W]` as TF 'SAME' would for a square `kernel` and `stride`."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class SameConv2d(nn.Module):
    """Applies a (parameter-owning, separately registered) conv with TF 'SAME' padding.

    Holds no parameters itself, so state-dict keys stay the flat inception5h names.
    """

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        return conv(pad_same(x, self.kernel, self.stride))


class SameMaxPool2d(nn.Module):
    """Max pool with TF 'SAME' padding (padded cells are -inf, so they never win)."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(pad_same(x, self.kernel, self.stride, value=float("-inf")), self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding=SAME"


class Concat(nn.Module):
    """Concatenates its inputs along the channel dim: the hook point of a mixed layer."""

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=1)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, bias=True)


class InceptionV1(StagedModel):
    """Lucid's InceptionV1 (inception5h) as a staged model; see the module docstring."""

    stage_names = (
        "conv2d0", "conv2d1", "conv2d2",
        "mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b",
        "logits",
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        # Stem. Parameter modules carry the inception5h names.
        self.conv2d0_pre_relu_conv = _conv(3, 64, 7, stride=2)
        self.conv2d0 = nn.ReLU()
        self.maxpool0 = SameMaxPool2d(3, 2)
        self.localresponsenorm0 = LocalResponseNorm(depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5)
        self.conv2d1_pre_relu_conv = _conv(64, 64, 1)
        self.conv2d1 = nn.ReLU()
        self.conv2d2_pre_relu_conv = _conv(64, 192, 3)
        self.conv2d2 = nn.ReLU()
        self.localresponsenorm1 = LocalResponseNorm(depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5)
        self.maxpool1 = SameMaxPool2d(3, 2)
        self.maxpool4 = SameMaxPool2d(3, 2)
        self.maxpool10 = SameMaxPool2d(3, 2)
        self.same3x3 = SameConv2d(3, 1)
        self.same5x5 = SameConv2d(5, 1)
        self.same7x7s2 = SameConv2d(7, 2)

        for name, cin, c1, c3r, c3, c5r, c5, cp in INCEPTION_BLOCKS:
            self.add_module(f"{name}_1x1_pre_relu_conv", _conv(cin, c1, 1))
            self.add_module(f"{name}_3x3_bottleneck_pre_relu_conv", _conv(cin, c3r, 1))
            self.add_module(f"{name}_5x5_bottleneck_pre_relu_conv", _conv(cin, c5r, 1))
            self.add_module(f"{name}_pool_reduce_pre_relu_conv", _conv(cin, cp, 1))
            self.add_module(f"{name}_3x3_pre_relu_conv", _conv(c3r, c3, 3))
            self.add_module(f"{name}_5x5_pre_relu_conv", _conv(c5r, c5, 5))
            for branch in ("1x1", "3x3_bottleneck", "5x5_bottleneck", "pool_reduce", "3x3", "5x5"):
                self.add_module(f"{name}_{branch}", nn.ReLU())
            self.add_module(f"{name}_pool", SameMaxPool2d(3, 1))
            self.add_module(name, Concat())

        self.softmax2_pre_activation_matmul = nn.Linear(1024, N_OUTPUTS, bias=True)
        self.logits = nn.Identity()

    # -- stages ---------------------------------------------------------------

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Compute activation `name` from the previous stage's activation (see the module docstring)."""
        if name == "conv2d0":
            x = self.same7x7s2(x, self.conv2d0_pre_relu_conv)  # [b, 64, 112, 112]
            return self.conv2d0(x)
        if name == "conv2d1":
            x = self.localresponsenorm0(self.maxpool0(x))  # [b, 64, 56, 56]
            return self.conv2d1(self.conv2d1_pre_relu_conv(x))
        if name == "conv2d2":
            return self.conv2d2(self.same3x3(x, self.conv2d2_pre_relu_conv))  # [b, 192, 56, 56]
        if name == "logits":
            x = F.avg_pool2d(x, kernel_size=7, stride=1)  # [b, 1024, 1, 1] (VALID, as in the TF graph)
            x = torch.flatten(x, 1)  # [b, 1024]
            return self.logits(self.softmax2_pre_activation_matmul(x))  # [b, 1008]
        if name in _STAGE_POOL:  # mixed3a, mixed4a, mixed5a
            if name == "mixed3a":
                x = self.localresponsenorm1(x)
            x = getattr(self, _STAGE_POOL[name])(x)
        if name.startswith("mixed"):
            return self._inception_block(name, x)
        raise KeyError(f"InceptionV1 has no stage '{name}'")

    def _inception_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """concat(1x1, 3x3, 5x5, pool branches) along channels, each branch ending in its ReLU."""
        m = lambda suffix: getattr(self, f"{name}_{suffix}")
        b1 = m("1x1")(m("1x1_pre_relu_conv")(x))
        b3 = m("3x3_bottleneck")(m("3x3_bottleneck_pre_relu_conv")(x))
        b3 = m("3x3")(self.same3x3(b3, m("3x3_pre_relu_conv")))
        b5 = m("5x5_bottleneck")(m("5x5_bottleneck_pre_relu_conv")(x))
        b5 = m("5x5")(self.same5x5(b5, m("5x5_pre_relu_conv")))
        bp = m("pool_reduce")(m("pool_reduce_pre_relu_conv")(m("pool")(x)))
        return getattr(self, name)(b1, b3, b5, bp)  # [b, c1 + c3 + c5 + cp, H, W]

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits[:, 1:1001]`: output i is class i-1 of `old_imagenet_labels.txt`; 0 and 1001..1007 are unused."""
        return logits[:, 1 : N_CLASSES + 1]
