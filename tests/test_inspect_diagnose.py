"""`replacebench inspect` and `replacebench diagnose`, through the real CLI in subprocesses, on real data.

Every figure checked is recomputed here from the model and the data, independently of the report: inspect's
statistics and top examples from the fit set, diagnose's fidelity from `score` on the same examples. diagnose runs
the submission isolated; a probe finds the model only when it is run --in-process (a positive control
showing that the isolation, not luck, keeps it out).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, write_submission
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
    """The folder holds the page, the JSON and every image the JSON names, and the page links each one by name."""
    assert Path(report["out"]) == out.absolute() and (out / name).exists() and (out / "index.html").exists()
    html = (out / "index.html").read_text()
    for path in report["images"].values() if "images" in report else [p for u in report["unit_reports"] for p in u["images"].values()]:
        assert Path(path).parent == out.absolute()
        assert_png_not_blank(path)
        assert f'src="{Path(path).name}"' in html
    assert not list(out.parent.glob(f".{out.name}.*")), "a temporary folder was left behind"


def fit_activations(task_id: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The task's units on its fit set, computed here `# [n_fit, n_units, ...]`, and the fit set's dataset indices."""
    ctx = prepare(get_task(task_id), data_dir=data_dir)
    with torch.no_grad():
        images = ctx.fit_set.load(ctx.fit_indices)
        acts = ctx.model.run(ctx.to_input(images), until=ctx.task.layer)[:, list(ctx.task.units)].float().numpy()
    return acts, ctx.fit_indices


def test_inspect_digits_unit_matches_the_model_on_the_fit_set(tmp_path, env, data_dir):
    out = tmp_path / "digits"
    proc = run_cli("inspect", "digits-mlp/fc1:17", "--out", str(out), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "inspect.json")
    assert report["image"]["shape"] == [1, 8, 8] and report["image"]["range"] == [0.0, 1.0]
    assert report["inputs"]["image"]["min"] >= 0 and report["inputs"]["image"]["max"] <= 1
    acts, fit_indices = fit_activations("digits-mlp/fc1:17", data_dir)
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


@pytest.mark.slow
def test_inspect_mnist_conv_unit_maps_and_argmax(tmp_path, env, data_dir):
    out = tmp_path / "cnn"
    proc = run_cli("inspect", "mnist-cnn/conv2:61", "--out", str(out), "--json", "--top", "8", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "inspect.json")
    assert report["image"]["shape"] == [1, 28, 28]
    assert report["image"]["range"] == pytest.approx([-0.1307 / 0.3081, (1 - 0.1307) / 0.3081])
    assert report["inputs"]["image"]["min"] == pytest.approx(-0.1307 / 0.3081, abs=1e-4)
    assert set(report["inputs"]) == set(get_task("mnist-cnn/conv2:61").inputs)
    acts, fit_indices = fit_activations("mnist-cnn/conv2:61", data_dir)
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
        proc = run_cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("replacebench: error: "), (args, proc.stderr)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"] and a_file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "mine"]


@pytest.mark.slow
def test_inspect_replaces_its_own_folder_whole(tmp_path, env):
    out = tmp_path / "digits"
    for top in ("4", "2"):
        proc = run_cli("inspect", "digits-mlp/fc1:17", "--out", str(out), "--json", "--top", top, env=env)
        assert proc.returncode == 0, proc.stderr
    assert len(json.loads((out / "inspect.json").read_text())["unit_reports"][0]["top_examples"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


@needs_isolation
@pytest.mark.slow
def test_diagnose_conv_unit_runs_isolated_and_agrees_with_score(tmp_path, env):
    out = tmp_path / "diag"
    args = ("--task", "mnist-cnn/conv2:61", "--eval-size", "400")
    proc = run_cli("diagnose", "cnn-right-edge", *args, "--out", str(out), "--json", "--top", "6", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_report_folder(report, out, "diagnose.json")
    assert report["isolation"]["level"] == "namespaces" and report["n_eval"] == 400
    scored = run_cli("score", "cnn-right-edge", *args, "--no-record", "--json", env=env)
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
        proc = run_cli("diagnose", str(probe), "--task", "digits-mlp/fc1:17", "--out", str(tmp_path / mode), "--json",
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
    proc = run_cli("diagnose", str(sub), "--task", "digits-mlp/fc1:17", "--out", str(out), env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("replacebench: submission 'raiser'"), proc.stderr
    assert "ValueError: no idea" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raiser"]
