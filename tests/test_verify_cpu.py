"""`verify` on another CPU: records scored under one vector width and thread count, re-scored under another.

Real scoring, real children, real MNIST: `score` under ATEN_CPU_CAPABILITY=default (torch's scalar kernels) and
one OpenMP thread, each setting with its own baseline cache (so clean and ablated losses are recomputed too); the
same under the machine's own kernels (AVX2 or better) and two threads. The raw figures move a little between the
two; `verify` of the first records under the second setting still passes (per-example losses within the float32
noise floor, each figure within its own sensitivity: board/tolerance.py).
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
    env = {**os.environ, "REPLACEBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1" if scalar else "2"}
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
    from benchmark.board.verify import check_rescore

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
    assert len(problems) == 1 and problems[0].startswith("per-example loss.replaced: 1 of ") and "example 17" in problems[0]
    tolerances, _ = figure_tolerances(arrays, record.results.primary.ablation)
    low = tolerances["recovery.zero.effect_low"]
    assert 0 < low < 1e-4
    moved = record.results.to_dict()
    moved["recovery"]["zero"]["effect_low"] += 3 * low
    fresh = dataclasses.replace(record, results=type(record.results).from_dict(moved))
    problems = check_rescore(record, fresh, arrays, arrays)
    assert len(problems) == 1 and problems[0].startswith("recovery.zero.effect_low: ")
