"""`verify` on another CPU: records scored under one vector width and thread count, re-scored under another.

Real scoring, real children, real MNIST: `score` under ATEN_CPU_CAPABILITY=default (torch's scalar kernels) and
one OpenMP thread, each setting with its own baseline cache (so clean and ablated losses are recomputed too); the
same under the machine's own kernels (AVX2 or better) and two threads. The raw figures move a little between the
two; `verify` of the first records under the second setting still passes (per-example losses within the float32
noise floor, each figure within its own sensitivity: board/tolerance.py). The same for the committed modular-addition
records (logits of ~300: their losses move by ~80 ulps of themselves, within the floor of their logits' scale) and
for a held-out record (its images the same bits under both settings: data/heldout.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.sandbox.process import isolation_problem

needs_isolation = pytest.mark.skipif(isolation_problem() is not None, reason=f"no process isolation: {isolation_problem()}")

TASK = "mnist-cnn/conv2:61"  # (conv2:7, where a flat tolerance failed between two CPUs, no longer ships)
SLUG = "mnist-cnn__conv2-61"


def cli(*args: str, cache: Path, scalar: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPLACEBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1" if scalar else "2",
           "MKL_NUM_THREADS": "1" if scalar else "2"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if scalar:
        env["ATEN_CPU_CAPABILITY"] = "default"
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def leaves(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


@pytest.mark.slow
@needs_isolation
def test_records_scored_on_scalar_kernels_and_one_thread_verify_on_vector_kernels_and_two(tmp_path, data_dir):
    scalar, vector = tmp_path / "scalar", tmp_path / "vector"
    for results, is_scalar in ((scalar, True), (vector, False)):
        for name in ("linear", "zero"):
            proc = cli("score", name, "--task", TASK, "--results-dir", str(results / "results"),
                       cache=results / "cache", scalar=is_scalar)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    moved = []
    for name in ("linear", "zero"):
        a = leaves(json.loads((scalar / "results" / SLUG / f"{name}.json").read_text())["results"])
        b = leaves(json.loads((vector / "results" / SLUG / f"{name}.json").read_text())["results"])
        moved += [(name, k, a[k], b[k]) for k in a if isinstance(a[k], float) and a[k] != b[k]]
        assert a[".p_at_least_clean"] is None if name == "linear" else a[".p_at_least_clean"] is not None
    assert moved, "the two settings gave identical figures: this test would not show anything"
    print(f"{len(moved)} figures moved, e.g. {moved[:3]}")
    records = [str(scalar / "results" / SLUG / f"{name}.json") for name in ("linear", "zero")]
    proc = cli("verify", *records, cache=vector / "cache", scalar=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 verified, 0 failed" in proc.stdout


MODADD_SLUG = "modadd-p113__mlp_hook_post-freq8"


@pytest.mark.slow
@needs_isolation
def test_committed_modadd_records_verify_on_scalar_kernels_and_one_thread(tmp_path):
    """The board's modular-addition records (scored on vector kernels) re-scored on scalar kernels and one thread,
    with a fresh cache: 708 of 8,939 mean-ablated losses moved past 16 ulps of themselves (up to 84: the logits are
    ~300), which the floor of each loss's own logit scale allows; the replacements are unchanged, so both verify."""
    from benchmark.record.layout import default_results_dir

    records = [str(default_results_dir() / MODADD_SLUG / f"{name}.json") for name in ("linear", "mean")]
    proc = cli("verify", *records, cache=tmp_path / "cache", scalar=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 verified, 0 failed" in proc.stdout


@pytest.mark.slow
@needs_isolation
def test_a_heldout_record_scored_on_vector_kernels_verifies_on_scalar_kernels_and_one_thread(tmp_path, data_dir):
    """A held-out record scored here (vector kernels, two threads) and verified on scalar kernels and one thread,
    each with its own fresh cache: the moved images are the same bits, so the held-out losses agree within the
    floor (with float32 resampling, a level flipped and 223 of 10,000 losses moved by up to 4e-3)."""
    from benchmark.data.mnist import raw_dir

    if not (raw_dir() / "t10k-images-idx3-ubyte").is_file():
        pytest.skip("no MNIST in REPLACEBENCH_DATA")
    secret = tmp_path / "heldout.secret"
    secret.write_text("verify-cpu-test-secret-" + "7" * 24 + "\n")
    results = tmp_path / "results"
    proc = cli("score", "mean", "--task", TASK, "--results-dir", str(results), "--held-out-secret", str(secret),
               cache=tmp_path / "vector", scalar=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = results / SLUG / "mean.heldout.json"
    proc = cli("verify", str(record), "--held-out-secret", str(secret), cache=tmp_path / "scalar", scalar=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 verified, 0 failed" in proc.stdout


def modadd_mean_baseline():
    """The clean, ablated and `mean`-replaced per-example arrays of modadd freq8 (`mean`'s replacement is the mean
    ablation), their logit scales, and a function giving the replaced losses with the fitted means scaled by
    (1 + rel): computed here, in process (the model is small)."""
    import numpy as np
    import torch

    from benchmark.harness.baseline import CONDITIONS, compute_baseline
    from benchmark.harness.context import prepare
    from benchmark.harness.passes import batches, logits_from, with_units
    from benchmark.tasks import get_task

    ctx = prepare(get_task("modadd-p113/mlp_hook_post:freq8"))
    base = compute_baseline(ctx)
    arrays = {k: v.astype(np.float32) for k, v in base.arrays.items() if k.startswith(("loss.", "kl."))}
    arrays["loss.replaced"], arrays["kl"] = arrays["loss.mean"], arrays["kl.mean"]
    scales = {c: base.scale(c) for c in CONDITIONS}
    scales["replaced"] = scales["mean"]
    mean = torch.from_numpy(base.arrays["mean_activation"])

    def replaced_losses(rel: float) -> np.ndarray:
        out = []
        with torch.no_grad():
            for batch in batches(ctx, "eval"):
                values = (mean * (1 + rel)).expand(len(batch), *ctx.target_shape)
                logits = logits_from(ctx, with_units(ctx, batch.activation, values), batch.carry)
                out.append(ctx.data_kind.per_example_outputs(logits, batch.labels, ())["loss"])
        return np.concatenate(out).astype(np.float32)

    return arrays, scales, replaced_losses


def test_the_floor_follows_the_logit_scale_and_still_catches_a_replacement_changed_by_1e4():
    """modadd freq8, `mean`: noise of 4 units of each value's conditioning, ε₃₂·(max(1,|x|) + min(1,|x|)·M) (twice
    what scalar kernels and one thread gave: docs/board.md), passes the floor of the logit scale and fails the old
    flat 16 ulps of max(1, |x|); the replacement's 179 stored means scaled by 1 + 1e-4 fails on most examples, and by
    1 + 1e-5 still on some."""
    import numpy as np

    from benchmark import stats
    from benchmark.board.verify import compare_arrays

    arrays, scales, replaced_losses = modadd_mean_baseline()
    assert np.array_equal(replaced_losses(0.0), arrays["loss.replaced"])
    rng = np.random.default_rng(0)
    pair = {"kl": ("clean", "replaced"), **{f"kl.{a}": ("clean", a) for a in ("zero", "mean", "resample")}}
    noisy = {}
    for key, x in arrays.items():
        m = scales[key.split(".")[1]] if key.startswith("loss.") else scales[pair[key][0]] + scales[pair[key][1]]
        unit = stats.EPS32 * (np.maximum(1, np.abs(x)) + np.minimum(1, np.abs(x)) * m)
        noisy[key] = (x + 4 * unit * rng.uniform(-1, 1, x.shape)).astype(np.float32)
    assert compare_arrays(arrays, noisy, scales) == []
    assert any(p.startswith("per-example loss.mean: ") for p in compare_arrays(arrays, noisy))  # the old floor
    for rel, at_least in ((1e-4, len(arrays["loss.clean"]) // 2), (1e-5, 10)):
        changed = {**arrays, "loss.replaced": replaced_losses(rel)}
        problems = compare_arrays(arrays, changed, scales)
        assert len(problems) == 1 and problems[0].startswith("per-example loss.replaced: "), problems
        assert int(problems[0].split(": ")[1].split(" of ")[0]) >= at_least, problems


# -- the same checks on a committed record's own arrays, without re-scoring (fast) -------------------------------
def committed(slug: str, name: str):
    from benchmark.board.verify import load_checked_arrays
    from benchmark.record.layout import default_results_dir

    record, arrays, problems = load_checked_arrays(default_results_dir() / slug / f"{name}.json")
    assert record is not None, problems
    return record, arrays


@pytest.mark.parametrize("slug, name", [("mnist-cnn__conv2-61", "zero"), ("mnist-cnn__conv2-61", "linear")])
def test_noise_within_the_floor_passes_and_beyond_it_fails(slug, name):
    """The record against itself with every loss moved by 3 ulps (as measured between two CPUs) passes; one loss
    moved past the floor, or a figure moved past its tolerance, fails and is named."""
    import dataclasses

    import numpy as np

    from benchmark import stats
    from benchmark.board.tolerance import figure_tolerances
    from benchmark.board.verify import check_rescore, is_failure

    record, arrays = committed(slug, name)
    assert check_rescore(record, record, arrays, arrays) == []
    rng = np.random.default_rng(0)
    noisy = {k: (v + rng.integers(-3, 4, v.shape) * np.spacing(v)).astype(np.float32) if v.dtype == np.float32 else v
             for k, v in arrays.items()}
    assert check_rescore(record, record, arrays, noisy) == []
    far = dict(noisy)
    far["loss.replaced"] = noisy["loss.replaced"].copy()
    far["loss.replaced"][17] += 100 * stats.loss_noise(far["loss.replaced"][17:18])[0]
    problems = check_rescore(record, record, arrays, far)
    # `linear` is fitted: one replaced example is within its drift between CPUs, a note; `zero` fails
    note = "note: " if record.complexity.fitted_parameters else ""
    assert len(problems) == 1 and problems[0].startswith(f"{note}per-example loss.replaced: 1 of ") and "example 17" in problems[0]
    assert is_failure(problems) == (not note)
    tolerances, _ = figure_tolerances(arrays, record.results.primary.ablation)
    low = tolerances["recovery.zero.effect_low"]
    assert 0 < low < 1e-4
    moved = record.results.to_dict()
    moved["recovery"]["zero"]["effect_low"] += 3 * low
    fresh = dataclasses.replace(record, results=type(record.results).from_dict(moved))
    problems = check_rescore(record, fresh, arrays, arrays)
    assert len(problems) == 1 and problems[0].startswith("recovery.zero.effect_low: ")


def test_a_fitted_submission_may_drift_on_a_few_replaced_examples_and_nothing_else_may():
    """mnist-mlp/fc2:top20 `linear` held out: scalar kernels moved 2 of 10,000 replaced losses by 6e-4, because its
    ill-conditioned fit amplifies last-bit differences in the activations it fits. For a fitted submission, every
    replaced-side example within 10 floors, and up to ⌈0.1% · n⌉ beyond, are a note; more, another column, or an
    unfitted submission fail."""
    import numpy as np

    from benchmark import stats
    from benchmark.board.verify import compare_arrays, is_failure

    record, arrays = committed("mnist-mlp__fc2-top20", "linear.heldout")
    assert record.complexity.fitted_parameters
    n = len(arrays["loss.clean"])

    def moved(key: str, count: int) -> dict:
        x = arrays[key].copy()
        x[:count] += np.float32(6e-4)
        return {**arrays, key: x}

    floors = 8 * stats.loss_noise(arrays["loss.replaced"])  # within FIT_DRIFT_FLOORS on every example: a note
    near = {**arrays, "loss.replaced": (arrays["loss.replaced"] + floors).astype(np.float32)}
    lines = compare_arrays(arrays, near, fitted=True)
    assert len(lines) == 1 and lines[0].startswith("note: ") and not is_failure(lines)
    assert is_failure(compare_arrays(arrays, near, fitted=False))
    for key in ("loss.replaced", "kl"):
        lines = compare_arrays(arrays, moved(key, 2), fitted=True)
        assert len(lines) == 1 and lines[0].startswith(f"note: per-example {key}: 2 of {n}") and not is_failure(lines)
        assert is_failure(compare_arrays(arrays, moved(key, 2), fitted=False))
        assert is_failure(compare_arrays(arrays, moved(key, n // 1000 + 1), fitted=True))
    assert is_failure(compare_arrays(arrays, moved("loss.clean", 1), fitted=True))
    assert is_failure(compare_arrays(arrays, moved("loss.mean", 1), fitted=True))
    flipped = arrays["top1.replaced"].copy()
    flipped[0] = ~flipped[0] if flipped.dtype == bool else 1 - flipped[0]
    lines = compare_arrays(arrays, {**arrays, "top1.replaced": flipped}, fitted=True)
    assert lines and not is_failure(lines)
    lines = compare_arrays(arrays, {**arrays, "top1.clean": flipped}, fitted=True)
    assert is_failure(lines)
