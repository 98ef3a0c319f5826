"""TF-semantics LRN against a direct loop over TensorFlow's documented formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.models.lrn import INCEPTION5H_LRN, LocalResponseNorm, local_response_norm


def tf_lrn_reference(x: np.ndarray, depth_radius: int, bias: float, alpha: float, beta: float) -> np.ndarray:
    """tf.nn.local_response_normalization on NCHW data, as a slow float64 loop.

    sqr_sum[b,c,h,w] = sum_{c'=max(0,c-r)}^{min(C-1,c+r)} x[b,c',h,w]^2;  out = x / (bias + alpha*sqr_sum)^beta
    """
    x = x.astype(np.float64)
    batch, channels, height, width = x.shape
    out = np.empty_like(x)
    for b in range(batch):
        for c in range(channels):
            lo, hi = max(0, c - depth_radius), min(channels - 1, c + depth_radius)
            for h in range(height):
                for w in range(width):
                    sqr_sum = 0.0
                    for cc in range(lo, hi + 1):
                        sqr_sum += x[b, cc, h, w] ** 2
                    out[b, c, h, w] = x[b, c, h, w] / (bias + alpha * sqr_sum) ** beta
    return out


@pytest.mark.parametrize("channels", [3, 11, 24])
def test_matches_tf_formula(channels: int) -> None:
    torch.manual_seed(channels)
    # activations of the size inception sees (tens to hundreds), so the normalizer matters
    x = torch.randn(2, channels, 4, 5) * 80.0
    expected = tf_lrn_reference(x.numpy(), **INCEPTION5H_LRN)
    actual = local_response_norm(x, **INCEPTION5H_LRN).double().numpy()
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-6)
    # the normalizer is far from 1 here: a no-op would fail
    assert np.abs(expected - x.double().numpy()).max() > 1.0


def test_other_parameters_and_module() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 9, 3, 3) * 3.0
    params = {"depth_radius": 2, "bias": 1.0, "alpha": 0.5, "beta": 0.75}
    expected = tf_lrn_reference(x.numpy(), **params)
    np.testing.assert_allclose(LocalResponseNorm(**params)(x).double().numpy(), expected, rtol=2e-6, atol=1e-7)


def test_naive_torch_port_differs() -> None:
    """PyTorch divides alpha by the window size: copying TF's alpha gives a different function."""
    torch.manual_seed(2)
    x = torch.relu(torch.randn(1, 64, 6, 6) * 150.0)
    ours = local_response_norm(x)
    naive = F.local_response_norm(x, size=11, alpha=1e-4, beta=0.5, k=2.0)
    relative = ((ours - naive).abs() / naive.abs().clamp_min(1e-6)).max().item()
    assert relative > 0.05, f"naive port should differ, max relative diff {relative}"
    # ...while PyTorch with alpha scaled by the window size is the same function (captum's (11, 0.0011, 0.5, 2.0))
    fixed = F.local_response_norm(x, size=11, alpha=11e-4, beta=0.5, k=2.0)
    torch.testing.assert_close(ours, fixed, rtol=1e-5, atol=1e-5)


def test_does_not_modify_input() -> None:
    x = torch.randn(1, 16, 2, 2) * 50.0
    before = x.clone()
    local_response_norm(x)
    assert torch.equal(x, before)
