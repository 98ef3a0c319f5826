"""`replacebench inspect` and `replacebench diagnose`, through the real CLI (`main` in this process: `run_main`), on
real data.

Every figure checked is recomputed here from the model and the data, independently of the report: inspect's
statistics, top examples and weighted-mean image from the fit set, diagnose's fidelity from `score` on the same
examples and its scatter from the model and a submission whose output is known. Each PNG is checked against the
`.npz` saved beside it: the bare map is found pixel for pixel inside the PNG, which must be larger, with tick labels
left of and below it and a colour bar (a column of many colours, all on the map's colour ramp) to its right. diagnose runs
the submission isolated; a probe finds the model only when it is run --in-process (a positive control
showing that the isolation, not luck, keeps it out).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import find_map, rgb_of, run_cli, run_main, write_submission
from PIL import Image

from benchmark.harness.context import prepare
from benchmark.sandbox.process import isolation_problem
from benchmark.tasks import get_task

needs_isolation = pytest.mark.skipif(isolation_problem() is not None, reason=f"no process isolation: {isolation_problem()}")


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir) -> dict[str, str]:
    """A throwaway cache (baselines, default output folders) shared by this module's runs."""
    return {"REPLACEBENCH_CACHE": str(tmp_path_factory.mktemp("cache")), "REPLACEBENCH_DATA": str(data_dir)}


def assert_png_not_blank(path: str | Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        lo, hi = zip(*image.convert("RGB").getextrema())
        assert max(hi) - min(lo) > 50, f"{path} is blank"


def assert_report_folder(report: dict, out: Path, name: str) -> None:
    """The folder holds the page, the JSON and every image the JSON names, and the page links each one by name;
    beside every PNG lies its `.npz` (same stem), listed in the JSON with each array's shape and dtype as it loads,
    and linked from the page."""
    assert Path(report["out"]) == out.absolute() and (out / name).exists() and (out / "index.html").exists()
    html = (out / "index.html").read_text()
    owners = [report] if "images" in report else report["unit_reports"]
    for owner in owners:
        assert set(owner["data"]) == set(owner["images"]), "a figure without its data, or data without a figure"
        for key, path in owner["images"].items():
            assert Path(path).parent == out.absolute()
            assert_png_not_blank(path)
            assert f'src="{Path(path).name}"' in html
            data = owner["data"][key]
            assert Path(data["path"]) == Path(path).with_suffix(".npz")
            assert f'href="{Path(data["path"]).name}"' in html
            with np.load(data["path"]) as npz:
                assert {k: {"shape": list(npz[k].shape), "dtype": str(npz[k].dtype)} for k in npz.files} == data["arrays"]
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(p.stem for p in out.glob("*.png"))
    assert not list(out.parent.glob(f".{out.name}.*")), "a temporary folder was left behind"


def ramp(kind: str, n: int = 2048) -> np.ndarray:
    """The colour ramps, written out here: heat (black → red → yellow → white), signed (blue → white → red), grey,
    and the overlay's colour over a black pixel (0.8 t · (255, 255 t, 0)). `# [n, 3]` floats in 0..255."""
    t = np.linspace(0, 1, n)
    if kind == "heat":
        return 255 * np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=1)
    if kind == "signed":
        s = 2 * t - 1
        return 255 * np.stack([np.where(s < 0, 1 + s, 1), 1 - np.abs(s), np.where(s > 0, 1 - s, 1)], axis=1)
    if kind == "grey":
        return 255 * np.stack([t, t, t], axis=1)
    return 0.8 * t[:, None] * np.stack([np.full_like(t, 255.0), 255 * t, 0 * t], axis=1)


def bar_colours(column: np.ndarray, kind: str) -> int:
    """How many distinct colours a strip of pixels `# [m, 3]` has, or 0 if any is off the ramp (by more than 2)."""
    colours = np.unique(column, axis=0)
    off = np.abs(colours[:, None, :] - ramp(kind)[None]).max(axis=2).min(axis=1)
    return 0 if (off > 2).any() else len(colours)


def assert_map_with_axes_and_bar(path: str | Path, bare: np.ndarray, kind: str) -> None:
    """The PNG shows `bare` exactly, with tick labels left of it and below it, and to its right a colour bar as high
    as the map, within 30 px of it: a column of at least 40 colours, all on the `kind` ramp."""
    png = rgb_of(path)
    y, x = find_map(png, bare)
    h, w = bare.shape[:2]
    dark = png.max(axis=2) < 110
    assert dark[y:y + h, max(x - 40, 0):x - 2].sum() > 20, f"{path}: no row ticks left of the map"
    assert dark[y + h + 2:y + h + 34, x:x + w].sum() > 20, f"{path}: no column ticks below the map"
    best = max((bar_colours(png[y:y + h, c], kind) for c in range(x + w, min(x + w + 30, png.shape[1]))), default=0)
    assert best >= 40, f"{path}: no {kind} colour bar right of the map"


def runs(flags: np.ndarray) -> int:
    """The number of runs of True in a 1-d boolean array."""
    f = np.concatenate([[False], flags.astype(bool)])
    return int((f[1:] & ~f[:-1]).sum())


def assert_scatter_shows(path: str | Path, x: np.ndarray, y: np.ndarray, limits: np.ndarray) -> None:
    """Each point (x, y) is a blue dot where axes over `limits` put it, inside the grey frame; the y axis has at least
    3 tick labels left of the frame and the x axis at least 3 below it."""
    png = rgb_of(path)
    frame = (png == 120).all(axis=2)
    cols, rows = np.nonzero(frame.sum(axis=0) > 100)[0], np.nonzero(frame.sum(axis=1) > 100)[0]
    left, right, top, bottom = cols.min(), cols.max(), rows.min(), rows.max()
    size, lo, hi = right - left - 1, float(limits[0]), float(limits[1])
    px = np.round(left + 1 + (x - lo) / (hi - lo) * (size - 1)).astype(int)
    py = np.round(bottom - 1 - (y - lo) / (hi - lo) * (size - 1)).astype(int)
    blue = (png == (30, 80, 200)).all(axis=2)
    hits = [blue[b - 1:b + 2, a - 1:a + 2].any() for a, b in zip(px, py)]
    assert np.mean(hits) > 0.99, f"{path}: the points drawn are not the npz's"
    dark = png.max(axis=2) < 110
    assert runs(dark[top:bottom, left - 30:left - 1].any(axis=1)) >= 3, f"{path}: no y-axis ticks"
    assert runs(dark[bottom + 2:bottom + 20, left:right].any(axis=0)) >= 3, f"{path}: no x-axis ticks"


def fit_activations(task_id: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The task's units on its fit set, computed here `# [n_fit, n_units, ...]`, the fit set's dataset indices and
    its model-ready images `# [n_fit, C, H, W]`."""
    ctx = prepare(get_task(task_id), data_dir=data_dir)
    with torch.no_grad():
        images = ctx.fit_set.load(ctx.fit_indices)
        acts = ctx.model.run(ctx.to_input(images), until=ctx.task.layer)[:, list(ctx.task.units)].float().numpy()
    return acts, ctx.fit_indices, images.numpy()


def test_inspect_digits_unit_matches_the_model_on_the_fit_set(tmp_path, env, data_dir):
    out = tmp_path / "digits"
    proc = run_main("inspect", "digits-mlp/fc1:17", "--out", str(out), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "inspect.json")
    assert report["image"]["shape"] == [1, 8, 8] and report["image"]["range"] == [0.0, 1.0]
    assert report["inputs"]["image"]["min"] >= 0 and report["inputs"]["image"]["max"] <= 1
    acts, fit_indices, x = fit_activations("digits-mlp/fc1:17", data_dir)
    a = acts[:, 0].astype(np.float64)  # [897]
    unit = report["unit_reports"][0]
    assert report["n_fit"] == len(a) == 897 and report["read"] == "fit set only"
    assert unit["activation"]["mean"] == pytest.approx(a.mean(), rel=1e-5)
    assert unit["activation"]["sd"] == pytest.approx(a.std(), rel=1e-5)
    assert unit["activation"]["median"] == pytest.approx(np.median(a), rel=1e-5)
    assert unit["activation"]["fraction_active"] == pytest.approx((a > 0).mean())
    top = [e["dataset_index"] for e in unit["top_examples"]]
    assert len(top) == 16 and set(top) <= set(fit_indices.tolist())  # the fit set, never the eval set
    assert top == fit_indices[np.argsort(-a, kind="stable")[:16]].tolist()
    scores = [e["score"] for e in unit["top_examples"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(a.max(), rel=1e-5)
    assert unit["weighted_mean_weight"] == pytest.approx(np.clip(a, 0, None).sum(), rel=1e-5)
    # the weighted-mean image, recomputed from the fit images and the activations: in the npz and in the JSON
    x = x.astype(np.float64)  # [897, 1, 8, 8], pixels / 16
    w = np.clip(a, 0, None)
    weighted, plain = np.einsum("n,nchw->chw", w, x) / w.sum(), x.mean(0)
    with np.load(unit["data"]["weighted_mean"]["path"]) as npz:
        np.testing.assert_allclose(npz["weighted_mean"], weighted, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(npz["weighted_mean_pixels"], 255 * weighted, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(npz["plain_mean"], plain, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(npz["difference"], (weighted - plain).mean(0), atol=1e-6)
        assert float(npz["weight_sum"]) == pytest.approx(w.sum(), rel=1e-5)
        shown_pixels, difference = npz["weighted_mean_pixels"][0], npz["difference"]
    inline = unit["weighted_mean_input"]
    assert inline["shape"] == [1, 8, 8] and inline["npz"] == unit["data"]["weighted_mean"]["path"]
    np.testing.assert_allclose(np.array(inline["model_units"]), weighted, atol=2e-6)
    np.testing.assert_allclose(np.array(inline["pixels"]), 255 * weighted, atol=1e-3)
    with np.load(unit["data"]["top"]["path"]) as npz:
        assert npz["dataset_index"].tolist() == top and npz["score"] == pytest.approx(scores, rel=1e-6)
        np.testing.assert_array_equal(npz["images"], x[npz["fit_position"]].astype(np.float32))
    # the PNG shows the npz (8 × 8 pixels, each 20 × 20 display px), with axes and colour bars
    enlarge = lambda m: np.repeat(np.repeat(m, 20, axis=0), 20, axis=1)  # noqa: E731
    grey = enlarge(np.clip(np.round(shown_pixels), 0, 255))
    path = unit["images"]["weighted_mean"]
    assert_map_with_axes_and_bar(path, np.repeat(grey[..., None], 3, axis=2), "grey")
    t = difference / np.abs(difference).max()
    signed = 255 * np.stack([np.where(t < 0, 1 + t, 1), 1 - np.abs(t), np.where(t > 0, 1 - t, 1)], axis=-1)
    assert_map_with_axes_and_bar(path, enlarge(np.round(signed)), "signed")


@pytest.mark.slow
def test_inspect_mnist_conv_unit_maps_and_argmax(tmp_path, env, data_dir):
    out = tmp_path / "cnn"
    proc = run_main("inspect", "mnist-cnn/conv2:61", "--out", str(out), "--json", "--top", "8", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "inspect.json")
    assert report["image"]["shape"] == [1, 28, 28]
    assert report["image"]["range"] == pytest.approx([-0.1307 / 0.3081, (1 - 0.1307) / 0.3081])
    assert report["inputs"]["image"]["min"] == pytest.approx(-0.1307 / 0.3081, abs=1e-4)
    assert set(report["inputs"]) == set(get_task("mnist-cnn/conv2:61").inputs)
    acts, fit_indices, x = fit_activations("mnist-cnn/conv2:61", data_dir)
    a = acts[:, 0]  # [n_fit, h, w]
    unit = report["unit_reports"][0]
    assert set(unit["images"]) == {"top", "weighted_mean", "mean_map", "argmax_map", "top_overlay"}
    np.testing.assert_allclose(np.array(unit["mean_map"]), a.mean(0), atol=1e-5)
    peak = a.reshape(len(a), -1).max(1)
    assert np.array(unit["argmax_counts"]).sum() == int((peak > 0).sum())
    first = unit["top_examples"][0]
    i = int(np.argmax(peak))
    assert first["dataset_index"] == int(fit_indices[i])
    assert tuple(first["argmax"]) == np.unravel_index(a[i].argmax(), a[i].shape)
    assert unit["per_example_max"]["max"] == pytest.approx(float(peak.max()), rel=1e-5)
    h, w = a.shape[1:]
    with np.load(unit["data"]["mean_map"]["path"]) as npz:
        np.testing.assert_allclose(npz["mean_map"], a.mean(0), atol=1e-5)
        np.testing.assert_allclose(npz["row_px"], (np.arange(h) + 0.5) * 28 / h)
        mean_map = npz["mean_map"]
    with np.load(unit["data"]["argmax_map"]["path"]) as npz:
        np.testing.assert_array_equal(npz["counts"], np.array(unit["argmax_counts"]))
        np.testing.assert_allclose(npz["score"], peak, rtol=1e-5)
        counts = npz["counts"]
    order = np.argsort(-peak, kind="stable")[:8]
    with np.load(unit["data"]["top_overlay"]["path"]) as npz:
        assert npz["dataset_index"].tolist() == fit_indices[order].tolist()
        np.testing.assert_allclose(npz["activation"], a[order], atol=1e-5)
    from benchmark.analysis.figures import heat_rgb, upsample

    for key, values in (("mean_map", mean_map), ("argmax_map", counts)):
        assert_map_with_axes_and_bar(unit["images"][key], upsample(heat_rgb(values), (160, 160)), "heat")
    png = rgb_of(unit["images"]["top_overlay"])
    assert max(bar_colours(png[4:100, c], "overlay") for c in range(png.shape[1] - 60, png.shape[1])) >= 40


@pytest.mark.slow
def test_inspect_user_mistakes_are_one_line_and_leave_nothing(tmp_path, env):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [("inspect", "digits-mlp/fc1:999"), ("inspect", "digits-mlp/fc1:17", "--out", str(foreign)),
             ("inspect", "digits-mlp/fc1:17", "--out", str(a_file)), ("inspect", "digits-mlp/fc1:17", "--top", "0"),
             ("diagnose", "no-such-submission", "--task", "digits-mlp/fc1:17", "--out", str(tmp_path / "d")),
             ("diagnose", "linear", "--task", "digits-mlp/fc1:17", "--out", str(foreign))]
    for args in cases:
        proc = run_main(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("replacebench: error: "), (args, proc.stderr)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"] and a_file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "mine"]


@pytest.mark.slow
def test_inspect_replaces_its_own_folder_whole(tmp_path, env):
    out = tmp_path / "digits"
    for top in ("4", "2"):
        proc = run_main("inspect", "digits-mlp/fc1:17", "--out", str(out), "--json", "--top", top, env=env)
        assert proc.returncode == 0, proc.stderr
    assert len(json.loads((out / "inspect.json").read_text())["unit_reports"][0]["top_examples"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


@needs_isolation
@pytest.mark.slow
def test_diagnose_conv_unit_runs_isolated_and_agrees_with_score(tmp_path, env):
    out = tmp_path / "diag"
    args = ("--task", "mnist-cnn/conv2:61", "--eval-size", "400")
    proc = run_main("diagnose", "cnn-right-edge", *args, "--out", str(out), "--json", "--top", "6", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "diagnose.json")
    assert report["isolation"]["level"] == "namespaces" and report["n_eval"] == 400
    scored = run_main("score", "cnn-right-edge", *args, "--no-record", "--json", env=env)
    assert scored.returncode == 0, scored.stderr
    (record,) = json.loads(scored.stdout)  # score --json: always a list
    assert report["fidelity"][0]["pearson_r"] == pytest.approx(record["results"]["fidelity"][0]["pearson_r"], abs=1e-6)
    assert report["mean_loss"]["replaced"] == pytest.approx(record["results"]["mean_loss"]["replaced"], rel=1e-6)
    div = [e["divergence"] for e in report["top_by_activation"]]
    dl = [e["loss_difference"] for e in report["top_by_loss"]]
    assert div == sorted(div, reverse=True) and dl == sorted(dl, reverse=True) and len(div) == 6
    for e in report["top_by_loss"]:
        assert e["loss_difference"] == pytest.approx(e["loss_replaced"] - e["loss_clean"], abs=1e-6)
    h, w = np.array(report["diff_map"]["61"]).shape
    assert sum(d["n"] for d in report["by_decile"]["61"]) == 400 * h * w
    assert sum(c["n"] for c in report["by_class"]["61"]) == 400 and {c["label"] for c in report["by_class"]["61"]} == set(range(10))
    assert {"diff_map_61", "top_by_activation_maps", "top_by_loss_maps", "scatter_61"} <= set(report["images"])
    from benchmark.analysis.figures import heat_rgb, upsample

    with np.load(report["data"]["diff_map_61"]["path"]) as npz:
        np.testing.assert_allclose(npz["mean_abs_diff"], np.array(report["diff_map"]["61"]), atol=1e-6)
        assert_map_with_axes_and_bar(report["images"]["diff_map_61"], upsample(heat_rgb(npz["mean_abs_diff"]), (160, 160)), "heat")
    with np.load(report["data"]["scatter_61"]["path"]) as npz:
        assert int(npz["n_points_total"]) == 400 * h * w and len(npz["original"]) == 20000  # evenly subsampled
        flat = np.ravel_multi_index((npz["eval_position"], npz["row"], npz["col"]), (400, h, w))
        np.testing.assert_array_equal(flat, np.linspace(0, 400 * h * w - 1, 20000).astype(int))
        assert_scatter_shows(report["images"]["scatter_61"], npz["original"], npz["replaced"], npz["limits"])
    with np.load(report["data"]["top_by_loss"]["path"]) as npz:
        assert npz["loss_difference"] == pytest.approx(dl, abs=1e-6)


MEAN_INK = """
def replace(image):
    return 4.0 * image.reshape(image.shape[0], -1).mean(1, keepdim=True)
"""


@needs_isolation
def test_diagnose_digits_data_matches_the_model_and_a_known_replacement(tmp_path, env, data_dir):
    """A replacement whose output is known (4 × the image's mean): diagnose's npz hold the model's units and that
    output on the eval set, and its scatter PNG draws exactly those points on ticked axes."""
    sub = write_submission(tmp_path / "mean-ink", MEAN_INK)
    out = tmp_path / "diag"
    proc = run_main("diagnose", str(sub), "--task", "digits-mlp/fc1:17", "--eval-size", "300", "--top", "5", "--out",
                   str(out), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "diagnose.json")
    ctx = prepare(get_task("digits-mlp/fc1:17"), data_dir=data_dir, eval_size=300)
    with torch.no_grad():
        images = ctx.eval_set.load(ctx.eval_indices)
        original = ctx.model.run(ctx.to_input(images), until="fc1")[:, 17].double().numpy()  # [300]
    replaced = 4.0 * images.double().reshape(300, -1).mean(1).numpy()
    with np.load(report["data"]["scatter_17"]["path"]) as npz:
        assert npz["eval_position"].tolist() == list(range(300)) and int(npz["n_points_total"]) == 300
        np.testing.assert_allclose(npz["original"], original, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(npz["replaced"], replaced, rtol=1e-5, atol=1e-6)
        assert npz["limits"][0] <= min(original.min(), replaced.min()) and npz["limits"][1] >= original.max()
        assert_scatter_shows(report["images"]["scatter_17"], npz["original"], npz["replaced"], npz["limits"])
    order = np.argsort(-np.abs(replaced - original), kind="stable")[:5]
    with np.load(report["data"]["top_by_activation"]["path"]) as npz:
        assert npz["eval_position"].tolist() == order.tolist()
        assert npz["dataset_index"].tolist() == ctx.eval_indices[order].tolist()
        np.testing.assert_allclose(npz["divergence"], np.abs(replaced - original)[order], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(npz["original"][:, 0], original[order], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(npz["images"], images[order].numpy())


PROBE = """
import gc

import torch


def replace(image, task):
    found = any(isinstance(o, torch.nn.Module) and hasattr(o, task.layer) for o in gc.get_objects())
    return torch.full((image.shape[0], *task.target_shape), 1.0 if found else 0.0)
"""


@pytest.mark.slow
@needs_isolation
def test_diagnose_keeps_the_model_out_of_reach(tmp_path, env):
    """A probe outputs 1 where it can find the model among the garbage collector's objects, else 0: run by diagnose
    it outputs 0; run --in-process (no isolation) it outputs 1, so the probe works and isolation is what stops it."""
    probe = write_submission(tmp_path / "gc-probe", PROBE)
    runs = {}
    for mode in ("isolated", "in-process"):
        proc = run_main("diagnose", str(probe), "--task", "digits-mlp/fc1:17", "--out", str(tmp_path / mode), "--json",
                       *(["--in-process"] if mode == "in-process" else []), env=env)
        assert proc.returncode == 0, proc.stderr
        runs[mode] = json.loads(proc.stdout)
    isolated, local = runs["isolated"], runs["in-process"]
    assert isolated["isolation"]["level"] == "namespaces" and local["isolation"]["level"] == "none"
    assert {u["replaced"] for e in isolated["top_by_activation"] for u in e["units"]} == {0.0}
    assert {u["replaced"] for e in local["top_by_activation"] for u in e["units"]} == {1.0}


@pytest.mark.slow
def test_inspect_and_diagnose_inception_with_random_weights(tmp_path, data_dir):
    """InceptionV1 with random weights fetched from a local server, on the 103 sample JPEGs."""
    from helpers_inception import fetch_through_cli, random_state_dict

    env = fetch_through_cli(tmp_path, random_state_dict(0), data_dir)
    out = tmp_path / "insp"
    proc = run_cli("inspect", "inceptionv1/mixed3b:379", "--imagenet", str(data_dir / "imagenet-sample"),
                   "--fit-size", "12", "--top", "6", "--out", str(out), "--json", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "inspect.json")
    assert report["n_fit"] == 12 and report["image"]["shape"] == [3, 224, 224]
    assert report["image"]["range"] == [-117.0, 138.0]
    assert -117 <= report["inputs"]["image"]["min"] and report["inputs"]["image"]["max"] <= 138
    unit = report["unit_reports"][0]
    assert np.array(unit["mean_map"]).shape == tuple(report["target_shape"][1:]) == (28, 28)
    assert len(unit["top_examples"]) == 6 and all(0 <= e["argmax_pixel"][0] < 224 for e in unit["top_examples"])
    if isolation_problem() is not None:
        pytest.skip(f"diagnose needs process isolation: {isolation_problem()}")
    out = tmp_path / "diag"
    proc = run_cli("diagnose", "curve-detector", "--task", "inceptionv1/mixed3b:379", "--imagenet",
                   str(data_dir / "imagenet-sample"), "--fit-size", "12", "--eval-size", "16", "--top", "4",
                   "--out", str(out), "--json", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "diagnose.json")
    assert report["n_eval"] == 16 and report["isolation"]["level"] == "namespaces"
    assert np.array(report["diff_map"]["379"]).shape == (28, 28)
    assert sum(c["n"] for c in report["by_class"]["379"]) == 16
    fit_positions = {e["dataset_index"] for e in unit["top_examples"]}
    assert not fit_positions & {e["dataset_index"] for e in report["top_by_activation"]}  # inspect: fit; diagnose: eval


@pytest.mark.slow
@needs_isolation
def test_diagnose_of_a_failing_submission_exits_1_and_leaves_no_folder(tmp_path, env):
    sub = write_submission(tmp_path / "raiser", "def replace(image):\n    raise ValueError('no idea')\n")
    out = tmp_path / "out"
    proc = run_main("diagnose", str(sub), "--task", "digits-mlp/fc1:17", "--out", str(out), env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("replacebench: submission 'raiser'"), proc.stderr
    assert "ValueError: no idea" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raiser"]
