"""Geometry of the synthetic curves and the tuning statistics of benchmark.analysis.stimuli."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.analysis import stimuli as S

SIZE = 224
CENTER = ((SIZE - 1) / 2.0, (SIZE - 1) / 2.0)  # exact grid centre: rot90 maps the grid onto itself


def ideal_arc(orientation_deg: float, radius: float, center, half_angle: float, n: int = 400) -> np.ndarray:
    """Points `# [n, 2]` (x, y) on the arc, written directly from the documented parametrisation."""
    phi = math.radians(orientation_deg)
    u = np.array([math.cos(phi), -math.sin(phi)])
    circle_center = np.asarray(center) - radius * u
    psi = np.linspace(-half_angle, half_angle, n)
    # polar angle (screen, y up) of each point about the centre is phi + psi
    ang = phi + psi
    return circle_center + radius * np.stack([np.cos(ang), -np.sin(ang)], 1)


def ink_coordinates(img: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(img > 0.5)
    return np.stack([cols, rows], 1).astype(np.float64)  # (x, y)


def test_range_dtype_shape():
    img = S.render_curve(30.0, 40.0, (100.0, 120.0), size=SIZE, width_px=3.0)
    assert img.shape == (SIZE, SIZE) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img.max() == 1.0 and img.min() == 0.0
    hard = S.render_curve(30.0, 40.0, (100.0, 120.0), size=SIZE, antialias=False)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    # antialiasing only adds partial pixels around the hard stroke
    assert np.all(img[hard == 1] > 0.49)


@pytest.mark.parametrize("orientation,radius", [(0.0, 30.0), (37.0, 50.0), (200.0, 18.0), (300.0, 90.0)])
def test_pixels_lie_on_the_intended_arc(orientation, radius):
    width, length = 3.0, 64.0
    center = (110.3, 97.8)
    img = S.render_curve(orientation, radius, center, SIZE, width_px=width, antialias=False, length_px=length)
    pts = ink_coordinates(img)
    assert len(pts) > 0.8 * length * width
    half_angle = length / (2 * radius)
    arc = ideal_arc(orientation, radius, center, half_angle, n=2000)
    # every inked pixel is within width/2 of some point of the ideal arc (slow reference: brute force)
    d = np.sqrt(((pts[:, None, :] - arc[None, :, :]) ** 2).sum(-1)).min(1)
    assert d.max() <= width / 2 + 0.05
    # and the arc is covered: every arc point has an inked pixel within ~1 px
    d_back = np.sqrt(((arc[::20, None, :] - pts[None, :, :]) ** 2).sum(-1)).min(1)
    assert d_back.max() <= 1.0


@pytest.mark.parametrize("orientation", [0.0, 90.0, 135.0, 250.0])
def test_convex_side_faces_orientation(orientation):
    center = (112.0, 112.0)
    img = S.render_curve(orientation, 30.0, center, SIZE, antialias=False)
    pts = ink_coordinates(img) - np.asarray(center)
    u = S.direction(orientation)
    along_u = pts @ u
    # the midpoint is the extreme point towards u; the rest of the arc bends away (centroid on the -u side)
    assert along_u.max() <= 1.5 + 1e-9
    assert along_u.mean() < -3.0
    # screen convention: 90 deg is up, i.e. towards smaller row index
    if orientation == 90.0:
        assert np.allclose(u, [0.0, -1.0])


@pytest.mark.parametrize("orientation,radius", [(10.0, 25.0), (75.0, 60.0), (181.0, math.inf)])
def test_rotating_by_90_rotates_the_image(orientation, radius):
    a = S.render_curve(orientation, radius, CENTER, SIZE)
    b = S.render_curve(orientation + 90.0, radius, CENTER, SIZE)
    # np.rot90 turns the displayed array counter-clockwise, as +90 deg does
    np.testing.assert_allclose(b, np.rot90(a), atol=1e-4)
    c = S.render_curve(orientation + 180.0, radius, CENTER, SIZE)
    np.testing.assert_allclose(c, np.rot90(a, 2), atol=1e-4)


def test_translation_moves_the_curve():
    a = S.render_curve(50.0, 30.0, (100.0, 100.0), SIZE)
    b = S.render_curve(50.0, 30.0, (107.0, 95.0), SIZE)
    np.testing.assert_allclose(b, np.roll(np.roll(a, 7, axis=1), -5, axis=0), atol=1e-5)


def test_large_radius_approaches_a_straight_line():
    line = S.render_curve(20.0, math.inf, (112.0, 112.0), SIZE, length_px=64.0)
    far = S.render_curve(20.0, 1e7, (112.0, 112.0), SIZE, length_px=64.0)
    np.testing.assert_allclose(far, line, atol=1e-3)
    gaps = [np.abs(S.render_curve(20.0, r, (112.0, 112.0), SIZE) - line).sum() for r in (20.0, 80.0, 400.0, 5000.0)]
    assert all(x > y for x, y in zip(gaps, gaps[1:]))  # monotone convergence
    # the line itself: perpendicular to u through M, of the requested length
    pts = ink_coordinates(S.render_curve(20.0, math.inf, (112.0, 112.0), SIZE, antialias=False)) - 112.0
    u = S.direction(20.0)
    t = np.array([-u[1], u[0]])
    assert np.abs(pts @ u).max() <= 1.5 + 1e-9
    assert np.abs(pts @ t).max() <= 32.0 + 1.5 + 1e-9
    assert np.abs(pts @ t).max() >= 31.0


def test_arc_deg_extent():
    img = S.render_curve(0.0, 40.0, (112.0, 112.0), SIZE, arc_deg=180.0, antialias=False)
    pts = ink_coordinates(img) - 112.0
    # a half circle facing right: spans 2R vertically, R horizontally behind M
    assert np.ptp(pts[:, 1]) == pytest.approx(80.0, abs=3.0)
    assert pts[:, 0].min() == pytest.approx(-40.0, abs=2.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        S.render_curve(0.0, -1.0)
    with pytest.raises(ValueError):
        S.render_curve(0.0, 10.0, width_px=0.0)


def test_to_model_input_black_on_white():
    ink = np.stack([S.render_curve(0.0, 30.0), np.zeros((SIZE, SIZE), np.float32)])
    x = S.to_model_input(ink)
    assert x.shape == (2, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert torch.all(x[1] == 255.0 - 117.0)  # white background
    assert float(x[0].min()) == -117.0  # black ink
    assert torch.equal(x[:, 0], x[:, 2])


def test_radial_tuning_set_layout():
    images, meta = S.radial_tuning_set([0, 90, 450], [10.0, math.inf])
    assert images.shape == (6, 3, SIZE, SIZE)
    assert list(meta.orientation_deg) == [0.0, 0.0, 90.0, 90.0, 90.0, 90.0]
    assert list(meta.radius_px) == [10.0, math.inf] * 3
    assert (meta.center_x == 119.0).all() and (meta.center_y == 119.0).all()
    # each image really is the curve its row describes
    expected = S.to_model_input(S.render_curve(90.0, 10.0, (119.0, 119.0)))
    assert torch.equal(images[2], expected[0])


def test_circular_mean_matches_scipy():
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 360, 25)
    weights = rng.integers(0, 5, 25)
    ours = S.circular_mean_deg(angles, weights)
    ref = math.degrees(stats.circmean(np.radians(np.repeat(angles, weights)))) % 360.0
    assert S.angular_difference(ours, ref) < 1e-8


def test_half_width_half_max_of_a_gaussian():
    ang = np.arange(0.0, 360.0, 0.5)
    for center, sigma in ((100.0, 12.0), (355.0, 20.0)):
        d = (ang - center + 180.0) % 360.0 - 180.0
        resp = np.exp(-(d**2) / (2 * sigma**2))
        assert S.half_width_half_max(ang, resp) == pytest.approx(sigma * math.sqrt(2 * math.log(2)), abs=0.2)
    assert S.half_width_half_max(ang, np.ones_like(ang)) == 180.0


def _oracle(preferred: list[float], kappa: float):
    """A fake 'activation' that reads each curve's orientation from its ink (centroid lies on the -u side)."""

    def fn(images: torch.Tensor) -> torch.Tensor:
        ink = (138.0 - images[:, 0]).clamp(min=0)  # [n, H, W]
        ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij")
        mx, my = S.cell_center(14, 14)
        cx = (ink * xs).sum((1, 2)) / ink.sum((1, 2)) - mx
        cy = (ink * ys).sum((1, 2)) / ink.sum((1, 2)) - my
        theta = torch.atan2(cy, -cx)  # direction of -(centroid - M), screen y up
        out = torch.zeros(len(images), len(preferred), 28, 28)
        for k, p in enumerate(preferred):
            out[:, k, 14, 14] = torch.exp(kappa * torch.cos(theta - math.radians(p)))
        return out

    return fn


def test_orientation_tuning_recovers_a_known_tuning():
    preferred, kappa = [40.0, 200.0], 3.0
    images, meta = S.radial_tuning_set(list(range(0, 360, 5)), [30.0, 60.0])
    table = S.orientation_tuning(_oracle(preferred, kappa), images, meta, units=[7, 9], batch_size=50)
    summary = S.summarize_tuning(table)
    assert list(summary.unit) == [7, 9]
    assert len(table) == 2 * 72
    hwhm_true = math.degrees(math.acos(math.log(math.cosh(kappa)) / kappa))
    for row, p in zip(summary.itertuples(), preferred):
        assert S.angular_difference(row.preferred_deg_mean, p) < 2.0
        assert S.angular_difference(row.preferred_deg_argmax, p) <= 5.0
        assert row.hwhm_deg == pytest.approx(hwhm_true, abs=3.0)


def test_orientation_tuning_checks_shapes():
    images, meta = S.radial_tuning_set([0, 90], [30.0])
    with pytest.raises(ValueError):
        S.orientation_tuning(lambda x: torch.zeros(len(x), 3, 28, 28), images, meta, units=[1, 2])
    with pytest.raises(ValueError):
        S.orientation_tuning(lambda x: torch.zeros(len(x), 1, 28, 28), images, meta.iloc[:1], units=[1])


@pytest.mark.parametrize("cell", [(14, 14), (5, 20)])
def test_cell_center_is_the_models_receptive_field_centre(cell):
    """`cell_center` matches where InceptionV1's mixed3a cell looks: the centroid of |d act / d input|
    over random images (random weights in the real architecture; random inputs avoid max-pool ties)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers_inception import random_model

    model = random_model(0)
    generator = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    weight = torch.zeros(224, 224)
    for _ in range(4):
        x = (torch.rand(1, 3, 224, 224, generator=generator) * 255 - 117).requires_grad_(True)
        act = model.run(x, until="mixed3a")
        (grad,) = torch.autograd.grad(act[0, :, cell[0], cell[1]].sum(), x)
        weight += grad.abs().sum(1)[0]
    cx, cy = float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())
    ex, ey = S.cell_center(*cell)
    assert abs(cx - ex) < 1.0 and abs(cy - ey) < 1.0, ((cx, cy), (ex, ey))
