"""TensorFlow's local response normalization, exactly as inception5h was trained with it.

`tf.nn.local_response_normalization(x, depth_radius=r, bias=k, alpha=a, beta=b)`
normalizes each channel by the squared sum over a window of 2r+1 neighbouring
channels (clipped at the ends, i.e. zero-padded):

    sqr_sum[n, c, h, w] = sum_{c' = c-r}^{c+r} x[n, c', h, w]^2      (0 <= c' < C)
    out[n, c, h, w]     = x[n, c, h, w] / (k + a * sqr_sum[n, c, h, w])^b

Note: alpha multiplies the plain sum. PyTorch's `F.local_response_norm(size=n,
alpha=a')` instead uses `a' / n * sum`, so a port that copies TF's alpha into
PyTorch's divides it by the window size (off by 11x for inception5h). The
inception5h graph uses r=5, k=2.0, a=1e-4, b=0.5 for both of its LRN layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: inception5h's LRN settings (both `localresponsenorm0` and `localresponsenorm1`).
INCEPTION5H_LRN = {"depth_radius": 5, "bias": 2.0, "alpha": 1e-4, "beta": 0.5}


def local_response_norm(
    x: torch.Tensor, depth_radius: int = 5, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.5
) -> torch.Tensor:
    """TF-semantics LRN over the channel dim of `x # [batch, C, H, W]`; returns a new tensor, same shape.

    out = x / (bias + alpha * sum_{|c'-c| <= depth_radius} x[c']^2) ** beta
    """
    if x.dim() != 4:
        raise ValueError(f"local_response_norm expects [batch, C, H, W], got shape {tuple(x.shape)}")
    r = int(depth_radius)
    channels = x.shape[1]
    squared = x * x  # [batch, C, H, W]
    padded = F.pad(squared, (0, 0, 0, 0, r, r))  # [batch, C + 2r, H, W], zeros outside the channel range
    sqr_sum = padded[:, 0:channels]
    for offset in range(1, 2 * r + 1):
        sqr_sum = sqr_sum + padded[:, offset : offset + channels]  # [batch, C, H, W]
    return x / (bias + alpha * sqr_sum).pow(beta)


class LocalResponseNorm(nn.Module):
    """Module form of `local_response_norm` (TensorFlow semantics; defaults are inception5h's)."""

    def __init__(self, depth_radius: int = 5, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.5) -> None:
        super().__init__()
        self.depth_radius, self.bias, self.alpha, self.beta = int(depth_radius), float(bias), float(alpha), float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.depth_radius, self.bias, self.alpha, self.beta)

    def extra_repr(self) -> str:
        return f"depth_radius={self.depth_radius}, bias={self.bias}, alpha={self.alpha}, beta={self.beta}"
