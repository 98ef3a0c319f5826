"""The hand-written curve-detector submission: tuning, selectivity, contract, fit, real images."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import optimize

from benchmark.analysis import stimuli as S
from benchmark.harness.submissions import TaskView
from helpers import load_submission

CD = load_submission("curve-detector")


def make_task(layer: str, units) -> TaskView:
    units = tuple(units)
    return TaskView(f"inceptionv1/{layer}:test", "inceptionv1", layer, units, ("image",), (len(units), 28, 28))


CURVES_3B = (379, 406, 385, 343, 342, 388, 324, 340, 330, 349)
CURVES_3A = (81, 104, 92, 145, 95, 163, 171, 71, 147, 189, 137)


def test_units_and_designs_cover_the_brief():
    assert set(CD.ORIENTATION_DEG["mixed3b"]) == set(CURVES_3B)
    assert set(CD.ORIENTATION_DEG["mixed3a"]) == set(CURVES_3A)


@pytest.fixture(scope="module")
def radial():
    return S.radial_tuning_set(list(range(0, 360, 10)), [16.0, 24.0, 40.0])


@pytest.mark.parametrize("layer,units", [("mixed3b", CURVES_3B), ("mixed3a", CURVES_3A)])
def test_preferred_orientation_matches_design(radial, layer, units):
    images, meta = radial
    task = make_task(layer, units)
    table = S.orientation_tuning(lambda x: CD.replace(x, task), images, meta, units)
    summary = S.summarize_tuning(table)
    for row in summary.itertuples():
        design = CD.ORIENTATION_DEG[layer][row.unit]
        assert S.angular_difference(row.preferred_deg_mean, design) < 8.0, row
        assert S.angular_difference(row.preferred_deg_argmax, design) <= 10.0, row
        assert 10.0 < row.hwhm_deg < 90.0, row  # tuned, not flat
        assert row.peak_response > 0


def _response(task, orientation, radius, unit_index=0):
    x = S.to_model_input(S.render_curve(orientation, radius, S.cell_center(14, 14)))
    return float(CD.replace(x, task)[0, unit_index, 14, 14])


@pytest.mark.parametrize("unit", [379, 343, 349, 330])
def test_curve_beats_line_and_opposite_curve_3b(unit):
    task = make_task("mixed3b", [unit])
    phi = CD.ORIENTATION_DEG["mixed3b"][unit]
    curve = _response(task, phi, 24.0)
    line = _response(task, phi, math.inf)
    opposite = _response(task, phi + 180.0, 24.0)
    assert curve > 1.5 * line
    assert curve > 5.0 * max(opposite, 1e-6)
    assert opposite < 0.1 * curve  # 3b curves have no echo (opposite-curve inhibition)


def test_curve_beats_line_3a():
    task = make_task("mixed3a", [81])
    phi = CD.ORIENTATION_DEG["mixed3a"][81]
    assert _response(task, phi, 14.0) > 1.5 * _response(task, phi, math.inf)
    assert _response(task, phi, 14.0) > _response(task, phi + 180.0, 14.0)


def test_output_contract_shape_dtype_finite_and_speed():
    task = make_task("mixed3b", (379, 330, 349))
    g = torch.Generator().manual_seed(0)
    image = torch.rand(32, 3, 224, 224, generator=g) * 255.0 - 117.0
    CD.replace(image[:2], task)  # warm-up (kernel cache)
    start = time.perf_counter()
    out = CD.replace(image, task)
    elapsed = time.perf_counter() - start
    assert out.shape == (32, 3, 28, 28)
    assert out.dtype == torch.float32 and out.device == image.device
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert elapsed < 3.0, f"32 images took {elapsed:.2f}s"
    # a constant image has no edges: no response at all
    flat = CD.replace(torch.full((1, 3, 224, 224), 20.0), task)
    assert float(flat.abs().max()) < 1e-3
    # unit order follows task.units
    swapped = CD.replace(image[:4], make_task("mixed3b", (349, 379, 330)))
    torch.testing.assert_close(swapped[:, [1, 2, 0]], out[:4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_runs_on_cuda():
    task = make_task("mixed3b", CURVES_3B)
    x = S.radial_tuning_set([0, 117], [24.0])[0]
    cpu = CD.replace(x, task)
    gpu = CD.replace(x.cuda(), task)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-2)


def test_unknown_unit_or_layer_is_a_clear_error():
    x = torch.zeros(1, 3, 224, 224)
    with pytest.raises(ValueError, match="unit"):
        CD.replace(x, make_task("mixed3b", (379, 5)))
    with pytest.raises(ValueError, match="layer"):
        CD.replace(x, make_task("mixed4a", (379,)))
    with pytest.raises(ValueError, match="unit"):
        CD.replace(x, make_task("mixed3a", (379,)))


def _fit_images(n: int = 8) -> torch.Tensor:
    rng = np.random.default_rng(1)
    inks = [
        S.render_curve(float(rng.uniform(0, 360)), float(rng.choice([16, 30, math.inf])), tuple(rng.uniform(40, 184, 2)))
        for _ in range(n)
    ]
    return S.to_model_input(np.stack(inks))


def test_fit_returns_two_params_per_unit_and_recovers_a_calibration():
    task = make_task("mixed3b", (379, 406, 343))
    images = _fit_images()
    scores = CD.detector_scores(images, task)  # [n, 3, 28, 28]
    true_gain = torch.tensor([250.0, 80.0, 40.0]).view(1, 3, 1, 1)
    true_bias = torch.tensor([-3.0, 1.0, -0.5]).view(1, 3, 1, 1)
    noise = 0.05 * torch.randn(scores.shape, generator=torch.Generator().manual_seed(2))
    target = torch.relu(true_gain * scores + true_bias + noise)
    params = CD.fit(images, target, task)
    assert set(params) == {"gain", "bias"}
    assert sum(p.numel() for p in params.values()) == 2 * len(task.units)
    fitted = CD.replace(images, task, params)
    default = CD.replace(images, task)
    mse_fit = float(((fitted - target) ** 2).mean())
    mse_default = float(((default - target) ** 2).mean())
    assert mse_fit < 0.2 * mse_default
    torch.testing.assert_close(params["gain"], true_gain.flatten(), rtol=0.05, atol=0.5)


def test_fit_is_as_good_as_scipy_least_squares():
    """Independent check: scipy's nonlinear least squares on relu(g s + c) reaches no lower loss."""
    task = make_task("mixed3b", (330,))
    images = _fit_images()
    s = CD.detector_scores(images, task)[:, 0].reshape(-1).double()
    rng = np.random.default_rng(3)
    # a target that is not of the model's form: a noisy, saturating function of the score
    y = torch.tensor(np.maximum(0.0, 30.0 * np.tanh(5.0 * s.numpy()) - 2.0 + rng.normal(0, 0.5, s.numel())))
    params = CD.fit(images, y.view_as(CD.detector_scores(images, task)).float(), task)
    ours = float(((torch.relu(params["gain"].double() * s + params["bias"].double()) - y) ** 2).mean())

    def residual(p):
        return np.maximum(0.0, p[0] * s.numpy() + p[1]) - y.numpy()

    ref = optimize.least_squares(residual, x0=[1.0, 0.0])
    scipy_loss = float(np.mean(ref.fun**2))
    assert ours <= scipy_loss * 1.02 + 1e-9


def _load_sample_images(n: int) -> torch.Tensor:
    from PIL import Image

    root = Path(os.environ["REPLACEBENCH_DATA"]) / "imagenet-sample"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"})[:: max(1, 103 // n)][:n]
    out = []
    for path in files:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        scale = 256 / min(w, h)
        img = img.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        arr = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        out.append(torch.from_numpy(arr).permute(2, 0, 1) - 117.0)
    return torch.stack(out)  # [n, 3, 224, 224]


@pytest.mark.skipif("REPLACEBENCH_DATA" not in os.environ, reason="set REPLACEBENCH_DATA to the shared data directory")
def test_real_images_give_finite_sane_activations():
    images = _load_sample_images(6)
    assert images.shape == (6, 3, 224, 224)
    for layer, units in (("mixed3b", CURVES_3B), ("mixed3a", CURVES_3A)):
        out = CD.replace(images, make_task(layer, units))
        assert torch.isfinite(out).all() and (out >= 0).all()
        # sparse but alive: some positions fire, most do not; magnitudes in the range of the stimuli's
        frac = float((out > 0).float().mean())
        assert 0.01 < frac < 0.3, frac
        peak_stimulus = _response(make_task(layer, units[:1]), CD.ORIENTATION_DEG[layer][units[0]], 24.0)
        assert float(out.max()) < 10.0 * peak_stimulus
