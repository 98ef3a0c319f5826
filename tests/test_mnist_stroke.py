"""The hand-written mnist-stroke submission (mnist-mlp fc1:13): geometry, contract, selectivity, fit, real harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import load_submission
from scipy import optimize

TASK_ID = "mnist-mlp/fc1:13"
MEAN, STD = 0.1307, 0.3081

MS = load_submission("mnist-stroke")


def draw(segments: list[tuple[tuple[float, float], tuple[float, float]]], width: float = 1.0) -> torch.Tensor:
    """A pen drawing of line segments (row, col) as a model-ready image `# [1, 1, 28, 28]` (independent rasteriser)."""
    rows, cols = np.mgrid[0:28, 0:28].astype(float)
    ink = np.zeros((28, 28))
    for (r0, c0), (r1, c1) in segments:
        d = np.array([r1 - r0, c1 - c0])
        t = np.clip(((rows - r0) * d[0] + (cols - c0) * d[1]) / max(d @ d, 1e-9), 0.0, 1.0)
        dist = np.hypot(rows - (r0 + t * d[0]), cols - (c0 + t * d[1]))
        ink = np.maximum(ink, np.clip(1.5 - dist / width, 0.0, 1.0))
    return torch.tensor((ink - MEAN) / STD, dtype=torch.float32)[None, None]


#: Strokes the docstring says the unit prefers, and ones it says it ignores (or is inhibited by).
PREFERRED = {
    "bar_row10": [((10, 7), (10, 19))],
    "seven": [((10, 7), (10, 19)), ((10, 19), (24, 13))],
}
IGNORED = {
    "bar_row6": [((6, 7), (6, 19))],  # the same bar, moved up into the inhibitory "cap"
    "vertical_1": [((5, 14), (24, 14))],
    "nine": [((6, 11), (6, 17)), ((6, 11), (11, 11)), ((11, 11), (11, 17)), ((6, 17), (24, 17))],
}


def responses(fn, stimuli: dict) -> dict[str, float]:
    images = torch.cat([draw(v) for v in stimuli.values()])  # [n, 1, 28, 28]
    with torch.no_grad():
        out = fn(images)  # [n, 1]
    return dict(zip(stimuli, out[:, 0].tolist()))


def test_stroke_mask_is_a_normalised_gaussian_tube():
    """Reference: distance to the segment by brute force over 4001 points along it."""
    p0, p1, sigma = (4.0, 20.0), (19.0, 9.0), 1.7
    mask = MS.stroke_mask(p0, p1, sigma).numpy()
    t = np.linspace(0.0, 1.0, 4001)
    pts = np.stack([p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])], 1)  # [4001, 2]
    rows, cols = np.mgrid[0:28, 0:28].astype(float)
    d2 = ((rows[..., None] - pts[:, 0]) ** 2 + (cols[..., None] - pts[:, 1]) ** 2).min(-1)
    ref = np.exp(-d2 / (2 * sigma**2))
    ref /= ref.sum()
    assert mask.shape == (28, 28)
    assert mask.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(mask, ref, atol=1e-5 * ref.max() + 1e-9, rtol=2e-3)


def test_score_is_the_weighted_mean_ink_along_each_stroke():
    gen = torch.Generator().manual_seed(0)
    ink = (torch.rand(5, 28, 28, generator=gen) > 0.8).double()  # [5, 28, 28] in {0, 1}
    image = ((ink - MEAN) / STD).float()[:, None]  # [5, 1, 28, 28]
    ref = torch.zeros(5, dtype=torch.float64)
    for _, weight, p0, p1, sigma in MS.STROKES:
        ref += weight * (ink * MS.stroke_mask(p0, p1, sigma)).sum((1, 2))
    torch.testing.assert_close(MS.score(image).double(), ref, atol=1e-5, rtol=1e-4)


def test_prefers_a_top_bar_over_strokes_it_ignores():
    ours = responses(MS.replace, {**PREFERRED, **IGNORED})
    for name in PREFERRED:
        assert ours[name] > 1.0, ours
        for other in IGNORED:
            assert ours[name] > ours[other] + 1.0, (name, other, ours)


def test_the_real_unit_agrees_on_those_strokes():
    """The docstring's reading of the unit, checked against the real model (run, weights not inspected)."""
    from benchmark.models.registry import load_model
    from benchmark.tasks import get_task

    task = get_task(TASK_ID)
    model, _ = load_model(task.model, task.checkpoint, task.checkpoint_sha256)
    unit = task.units[0]
    real = responses(lambda x: model.run(x, until=task.layer)[:, [unit]], {**PREFERRED, **IGNORED})
    for name in PREFERRED:
        for other in IGNORED:
            assert real[name] > real[other] + 1.0, (name, other, real)
    assert real["bar_row10"] > real["seven"]  # the stem is a correlate, not what drives the unit


def test_fit_matches_an_independent_relu_least_squares():
    gen = torch.Generator().manual_seed(1)
    ink = (torch.rand(400, 28, 28, generator=gen) ** 6).clamp(0, 1)  # sparse-ish random ink
    image = ((ink - MEAN) / STD)[:, None].float()  # [400, 1, 28, 28]
    s = MS.score(image).double().numpy()
    true_gain, true_bias = 40.0, 1.0
    noise = 0.05 * torch.randn(400, generator=gen, dtype=torch.float64).numpy()
    target = np.maximum(true_gain * s + true_bias, 0.0) + noise
    params = MS.fit(image, torch.tensor(target, dtype=torch.float32)[:, None])
    assert set(params) == {"gain", "bias"} and sum(v.numel() for v in params.values()) == 2

    def resid(p):
        return np.maximum(p[0] * s + p[1], 0.0) - target

    ref = optimize.least_squares(resid, x0=[1.0, 0.0 + target.mean()], method="lm").x
    ours = np.array([float(params["gain"]), float(params["bias"])])
    assert (resid(ours) ** 2).sum() <= (resid(ref) ** 2).sum() * (1 + 1e-4) + 1e-9
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ours, [true_gain, true_bias], rtol=0.15, atol=0.1)  # noise: not exact


@pytest.fixture(scope="module")
def fit_images(data_dir):
    from benchmark.zoo import open_split

    return open_split("mnist", "train", data_dir).load(np.arange(256))  # [256, 1, 28, 28]


def test_output_contract_on_real_images(fit_images):
    for params in (None, {"gain": torch.tensor([10.0]), "bias": torch.tensor([-1.0])}):
        out = MS.replace(fit_images, params)
        assert out.shape == (len(fit_images), 1)
        assert out.dtype == torch.float32 and out.device == fit_images.device
        assert torch.isfinite(out).all() and (out >= 0).all()
        assert 0 < int((out > 0).sum()) < len(fit_images)  # fires on some digits, not all


@pytest.mark.slow
def test_recovery_through_the_real_harness_is_significantly_positive(data_dir, session_cache):
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.harness.session import score_folder
    from benchmark.harness.submissions import take_snapshot
    from benchmark.tasks import get_task

    ctx = prepare(get_task(TASK_ID))
    snapshot = take_snapshot("mnist-stroke")
    assert snapshot.meta.kind == "hand-written"
    snapshot.cleanup()
    result = score_folder(ctx, load_or_compute(ctx), "mnist-stroke")
    primary = result.figures["primary"]
    assert primary["ablation"] == ctx.task.ablation and primary["defined"]
    assert primary["recovery_low"] > 0, primary
    assert result.figures["fidelity"][0]["pearson_r"] > 0.8
    assert result.fitted_parameters == 2
