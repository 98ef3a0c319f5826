"""InceptionV1 end to end with weights in the published format: fetch over HTTP, load, score, board, stimuli.

The real weights cannot be downloaded here, so random weights are saved as a
.pth state dict exactly like the public file and served from 127.0.0.1.
Everything else is real: the CLI in subprocesses, the 103 sample JPEGs, the
label map.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import board_column, run_cli
from helpers_inception import fetch_through_cli, random_state_dict, serve_directory

pytestmark = pytest.mark.slow
TASK = "inceptionv1/mixed3b:curves"


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, data_dir):
    """Random weights fetched through `replacebench fetch inceptionv1` from a local server."""
    root = tmp_path_factory.mktemp("inception")
    env = fetch_through_cli(root, random_state_dict(0), data_dir)
    assert (root / "cache" / "inceptionv1" / "inception5h.safetensors").exists()
    return root, env


def score_args(data_dir: Path, results: Path, *extra: str) -> list[str]:
    return ["--task", TASK, "--imagenet", str(data_dir / "imagenet-sample"), "--eval-size", "24", "--fit-size", "16",
            "--results-dir", str(results), *extra]


def test_fetch_score_leaderboard_on_real_images(fetched, data_dir):
    root, env = fetched
    results = root / "results"
    for name in ("zero", "curve-detector"):
        proc = run_cli("score", name, *score_args(data_dir, results), env=env)
        assert proc.returncode == 0, proc.stderr
    record = json.loads((results / "inceptionv1__mixed3b-curves" / "curve-detector.json").read_text())
    assert record["task"]["n_eval"] == 24 and record["task"]["n_fit"] == 16
    assert record["task"]["standard_protocol"] is False and record["task"]["topk"] == [1, 5]
    assert set(record["results"]["accuracy"]) == {"top1", "top5"}
    assert set(record["results"]["mcnemar_replaced_vs_clean"]) == {"top1", "top5"}
    assert [f["unit"] for f in record["results"]["fidelity"]] == [379, 406, 385, 343, 342, 388, 324, 340, 330, 349]
    assert record["complexity"]["fitted_parameters"] == 20  # gain + bias per unit
    fetched_sha = json.loads((root / "cache" / "inceptionv1" / "inception5h.json").read_text())["safetensors_sha256"]
    assert record["provenance"]["checkpoint_sha256"] == fetched_sha
    board = root / "board.md"
    proc = run_cli("leaderboard", "--results-dir", str(results), "--out", str(board), env=env)
    assert proc.returncode == 0, proc.stderr
    text = board.read_text()
    assert f"## {TASK}" in text and "top-5 repl. / clean" in text
    row = next(line for line in text.splitlines() if "| curve-detector (" in line)
    assert "non-standard)" in row and row.startswith("| — |")  # shown, marked, and not ranked among standard runs
    assert row.split("|")[board_column(text, "frontier")].strip() == ""  # nor put on the frontier


def test_stimuli_report_with_the_model(fetched, data_dir):
    _, env = fetched
    proc = run_cli("stimuli", "curve-detector", "--task", "inceptionv1/mixed3b:379", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["submission_tuning"][0]["unit"] == 379
    assert report["model_tuning"] is not None and report["fidelity"][0]["unit"] == 379
    assert report["fidelity"][0]["n_samples"] == 36 * 3 * 28 * 28  # orientations × radii × positions


def test_damaged_weights_are_refused(fetched, data_dir, tmp_path):
    root, env = fetched
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    weights = cache / "inceptionv1" / "inception5h.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    proc = run_cli("score", "zero", *score_args(data_dir, tmp_path / "results"), env={**env, "REPLACEBENCH_CACHE": str(cache)})
    assert proc.returncode == 2 and "sha256" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_missing_imagenet_folder_is_a_clear_error(fetched, tmp_path):
    _, env = fetched
    proc = run_cli("score", "zero", "--task", TASK, "--results-dir", str(tmp_path / "r"), env=env)
    assert proc.returncode == 2 and "--imagenet" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_conversion_is_byte_identical_across_processes(fetched, tmp_path):
    """Two fetches of the same .pth in two processes give the same safetensors sha256, so records compare."""
    root, env = fetched
    served = root / "served"
    other = {**env, "REPLACEBENCH_CACHE": str(tmp_path / "cache")}
    with serve_directory(served) as url:
        proc = run_cli("fetch", "inceptionv1", "--url", f"{url}/inception5h.pth", "--labels-url",
                       f"{url}/old_imagenet_labels.txt", env=other)
    assert proc.returncode == 0, proc.stderr
    first = json.loads((root / "cache" / "inceptionv1" / "inception5h.json").read_text())
    second = json.loads((tmp_path / "cache" / "inceptionv1" / "inception5h.json").read_text())
    assert first["pth_sha256"] == second["pth_sha256"]
    assert first["safetensors_sha256"] == second["safetensors_sha256"]
