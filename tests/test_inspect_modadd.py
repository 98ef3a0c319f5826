"""`inspect` and `diagnose` on modadd-p113 (the tokens kind): the (a, b) grid, its Fourier power, the error grid.

Every array checked is recomputed here from the model on all 113 × 113 pairs (`model.run`), from numpy's FFT and a
least-squares fit, and from a submission whose output is a known function of (a, b). The tasks are built in code
(`helpers.modadd_task`), so the Python entry points are called (the CLI reads task ids from tasks/).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import find_map, modadd_task, rgb_of, write_submission

from benchmark.analysis import fourier
from benchmark.analysis.diagnosis import diagnose
from benchmark.analysis.figures import upsample
from benchmark.analysis.inspection import inspect_task
from benchmark.analysis.plots import heat_rgb
from benchmark.data.modadd import open_split
from benchmark.harness.runner import RunOptions
from benchmark.models.registry import load_model
from benchmark.sandbox.process import isolation_problem

P = 113
UNITS = (0, 17, 42)


@pytest.fixture(scope="module")
def model():
    task = modadd_task("mlp_hook_post", UNITS)
    return load_model(task.model, task.checkpoint, task.checkpoint_sha256)[0]


@pytest.fixture(scope="module")
def grid_tokens() -> torch.Tensor:
    """All pairs `a b =` `# [12769, 3]`, written here: row a, column b."""
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1), torch.full((P * P,), P)], 1)


@pytest.fixture(scope="module")
def neurons(model, grid_tokens) -> np.ndarray:
    """`mlp_hook_post` on every pair `# [512, 113, 113]` (float64), from the model itself."""
    with torch.no_grad():
        post = model.run(grid_tokens, until="mlp_hook_post")  # [12769, 512]
    return post.double().numpy().T.reshape(512, P, P)


def numpy_shares(g: np.ndarray) -> np.ndarray:
    """The share of |fft2|² (constant term dropped) in (k, 0), (0, k), (k, ±k) and mirrors, k = 1..56, written out."""
    pw = np.abs(np.fft.fft2(g)) ** 2
    pw[0, 0] = 0
    out = np.zeros(P // 2 + 1)
    for k in range(1, P // 2 + 1):
        out[k] = sum(pw[x, y] for x in (0, k, P - k) for y in (0, k, P - k))  # pw[0, 0] is 0
    return out / pw.sum()


def r2_at(g: np.ndarray, k: int) -> float:
    """R² of the least-squares fit of the grid by 1, cos wa, sin wa, cos wb, sin wb and their products."""
    w = 2 * np.pi * k / P
    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    fa, fb = [np.cos(w * a), np.sin(w * a)], [np.cos(w * b), np.sin(w * b)]
    cols = [np.ones_like(a, dtype=float), *fa, *fb, *(x * y for x in fa for y in fb)]
    X = np.stack([c.ravel() for c in cols], 1)
    y = g.ravel()
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return float(1 - ((y - X @ beta) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def split_of_pairs() -> np.ndarray:
    """1 for the train split's pairs, 2 for test's `# [113, 113]`, from the data (the standard sizes take all)."""
    out = np.zeros(P * P, dtype=np.int8)
    for code, split in ((1, "train"), (2, "test")):
        t = open_split(split).load(np.arange(len(open_split(split)))).numpy()
        out[t[:, 0] * P + t[:, 1]] = code
    return out.reshape(P, P)


def assert_folder(report: dict, owners: list[dict], out: Path, name: str) -> None:
    """Every PNG the JSON names has its npz beside it, with the arrays' shapes and dtypes as they load, both linked
    from the page; no other PNG or npz in the folder."""
    html = (out / "index.html").read_text()
    assert (out / name).exists() and Path(report["out"]) == out.absolute()
    for owner in owners:
        assert set(owner["images"]) == set(owner["data"])
        for key, png in owner["images"].items():
            data = owner["data"][key]
            assert Path(data["path"]) == Path(png).with_suffix(".npz") and Path(png).exists()
            assert f'src="{Path(png).name}"' in html and f'href="{Path(data["path"]).name}"' in html
            with np.load(data["path"]) as npz:
                assert {k: {"shape": list(npz[k].shape), "dtype": str(npz[k].dtype)} for k in npz.files} == data["arrays"]
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(p.stem for p in out.glob("*.png"))


def test_fourier_share_of_a_known_function():
    """cos(w5 a)·cos(w5 b) + 0.3 sin(w9 a) + 2: frequency 5 holds var 1/4 of the total 1/4 + 0.045 (Parseval)."""
    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    w = lambda k: 2 * np.pi * k / P  # noqa: E731
    g = np.cos(w(5) * a) * np.cos(w(5) * b) + 0.3 * np.sin(w(9) * a) + 2
    k, share = fourier.dominant(fourier.power(g))
    assert k == 5
    assert share[5] == pytest.approx(0.25 / 0.295, abs=1e-9) and share[9] == pytest.approx(0.045 / 0.295, abs=1e-9)
    assert fourier.dominant(fourier.power(np.full((P, P), 3.0)))[0] == 0  # a constant: no frequency


def test_inspect_grid_and_fourier_match_the_model_and_numpy(tmp_path, neurons):
    out = tmp_path / "inspect"
    report = inspect_task(modadd_task("mlp_hook_post", UNITS), out, top=5)
    report = json.loads((out / "inspect.json").read_text())  # what was written
    assert_folder(report, report["unit_reports"], out, "inspect.json")
    split = split_of_pairs()
    grid = report["grid"]
    assert (grid["n_fit_pairs"], grid["n_eval_pairs"], grid["n_neither"]) == (3830, 8939, 0)
    assert np.array([[".fe".index(c) for c in row] for row in grid["membership"]]).tolist() == split.tolist()
    for entry, u in zip(report["unit_reports"], UNITS):
        g = neurons[u]
        with np.load(entry["data"]["grid"]["path"]) as npz:
            np.testing.assert_allclose(npz["activation"], g, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(npz["split"], split)
            shown = npz["activation"]
        find_map(rgb_of(entry["images"]["grid"]), upsample(heat_rgb(shown), (3 * P, 3 * P)))  # drawn as saved
        shares = numpy_shares(g)
        k = int(np.argmax(shares))
        f = entry["fourier"]
        assert f["dominant_frequency"] == k and f["share"] == pytest.approx(shares[k], rel=1e-6)
        assert f["share"] == pytest.approx(r2_at(g, k), abs=1e-6)  # the share is the R² of the 9-function fit
        with np.load(entry["data"]["fourier"]["path"]) as npz:
            expected = np.abs(np.fft.fft2(g)) ** 2
            expected[0, 0] = 0
            np.testing.assert_allclose(npz["power"], expected, rtol=1e-4, atol=1e-6 * expected.max())
            assert int(npz["dominant_frequency"]) == k
            assert sorted(map(tuple, npz["terms"].tolist())) == sorted(
                (x, y) for x in (0, k, P - k) for y in (0, k, P - k) if (x, y) != (0, 0))
        with np.load(entry["data"]["spectrum"]["path"]) as npz:
            np.testing.assert_allclose(npz["share"], shares[1:], rtol=1e-5, atol=1e-12)
        top = entry["top_examples"]
        assert [e["score"] for e in top] == sorted((e["score"] for e in top), reverse=True)
        assert all(split[e["a"], e["b"]] == 1 and e["input"] == f"{e['a']} + {e['b']} =" for e in top)
        assert top[0]["score"] == pytest.approx(g[split == 1].max(), rel=1e-5)
    # A real neuron that is a Fourier function: unit 17 is nearly all one frequency (k = 21 on this checkpoint),
    # and the fit by that frequency's 9 functions explains it; the next frequency's does not.
    f17 = report["unit_reports"][1]["fourier"]
    assert f17["dominant_frequency"] == 21 and f17["share"] > 0.9
    assert r2_at(neurons[17], 21) > 0.9 and r2_at(neurons[17], f17["top_frequencies"][1]["k"]) < 0.05
    # Most live neurons are: the dominant frequency holds over half the power for most of the 512.
    held = [numpy_shares(neurons[u]).max() for u in range(0, 512, 8)]
    assert np.mean(np.array(held) > 0.5) > 0.8


MOD7 = """
import torch


def replace(task, tokens):
    assert tokens.dtype == torch.int64, tokens.dtype  # token ids cross as int64, in both of diagnose's passes
    t = tokens
    value = 20.0 * ((t[:, 0] + 2 * t[:, 1]) % 7).float()  # [b]
    return value[:, None].expand(t.shape[0], *task.target_shape).contiguous()
"""


def test_diagnose_error_and_loss_grids_equal_an_independent_recomputation(tmp_path, monkeypatch, model, grid_tokens,
                                                                           neurons):
    """A replacement r(a, b) = 20 · ((a + 2b) mod 7) for units 17 and 42: the error grid is r − g on every pair (eval and
    fit, each panel's own), and the loss grid is the model's loss with both units set to r, minus the clean loss."""
    monkeypatch.setenv("REPLACEBENCH_CACHE", str(tmp_path / "cache"))
    sub = write_submission(tmp_path / "mod7", MOD7)
    out = tmp_path / "diag"
    units = (17, 42)
    report = diagnose(str(sub), modadd_task("mlp_hook_post", units), out, top=4,
                      options=RunOptions(isolate=isolation_problem() is None))
    report = json.loads((out / "diagnose.json").read_text())
    assert_folder(report, [report], out, "diagnose.json")
    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    r = 20.0 * ((a + 2 * b) % 7)
    split = split_of_pairs()
    for u in units:
        with np.load(report["data"][f"error_grid_{u}"]["path"]) as npz:
            np.testing.assert_allclose(npz["error"], r - neurons[u], rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(npz["replaced"], r, atol=0)
            np.testing.assert_array_equal(npz["split"], split)
        err = np.abs(r - neurons[u])
        assert report["error_by_set"][str(u)]["eval"]["mean_abs"] == pytest.approx(err[split == 2].mean(), rel=1e-5)
        assert report["error_by_set"][str(u)]["fit"]["mean_abs"] == pytest.approx(err[split == 1].mean(), rel=1e-5)
        assert report["fourier"][str(u)]["original"]["dominant_frequency"] == int(np.argmax(numpy_shares(neurons[u])))
    # the loss, independently: run to the layer, set both units to r, run on; cross-entropy of (a + b) mod 113
    labels = torch.as_tensor(((a + b) % P).ravel())
    with torch.no_grad():
        carry: dict = {}
        post = model.run(grid_tokens, until="mlp_hook_post", carry=carry)  # [12769, 512]
        spliced = post.clone()
        spliced[:, list(units)] = torch.as_tensor(r.ravel(), dtype=post.dtype)[:, None]
        losses = [torch.nn.functional.cross_entropy(model.run(x, after="mlp_hook_post", carry=dict(carry)).double(),
                                                    labels, reduction="none").numpy() for x in (post, spliced)]
    delta = (losses[1] - losses[0]).reshape(P, P)
    with np.load(report["data"]["loss_grid"]["path"]) as npz:
        np.testing.assert_allclose(npz["loss_difference"], delta, rtol=1e-3, atol=1e-5)
        assert np.isfinite(npz["loss_difference"]).all()
    assert report["loss_by_set"]["eval"]["mean"] == pytest.approx(delta[split == 2].mean(), rel=1e-3, abs=1e-6)
    assert delta[split == 2].mean() > 5e-4 and delta.max() > 0.5  # it costs loss: the check is not of zeros
    top = report["top_by_loss"]
    assert [e["loss_difference"] for e in top] == sorted((e["loss_difference"] for e in top), reverse=True)
    assert top[0]["loss_difference"] == pytest.approx(delta[split == 2].max(), rel=1e-3, abs=1e-5)
