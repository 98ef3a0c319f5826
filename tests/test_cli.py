"""The command line as a user meets it: real subprocesses, real files, real data.

Every user mistake must give one line on stderr, a non-zero exit, no traceback,
and no result record.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    ROOT,
    assert_matches_committed,
    board_column,
    run_cli,
    write_submission,
)

TASK = "digits-mlp/fc1:17"


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("replacebench: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def no_records(results: Path) -> bool:
    return not results.exists() or not any(results.rglob("*.json"))


def test_tasks_lists_every_family():
    proc = run_cli("tasks")
    assert proc.returncode == 0
    for family in ("digits-mlp/", "mnist-mlp/", "mnist-cnn/", "inceptionv1/mixed3b:curves", "inceptionv1/mixed3a:curves",
                   "inceptionv1/mixed3b:curves-circuits2020"):
        assert family in proc.stdout


@pytest.mark.slow
def test_score_writes_a_record_with_provenance(results, session_cache):
    proc = run_cli("score", "linear", "--task", TASK, "--results-dir", str(results), "--json")
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)  # always a list, one record per task
    on_disk = json.loads((results / "digits-mlp__fc1-17" / "linear.json").read_text())
    assert on_disk["results"] == record["results"]
    prov = record["provenance"]
    for key in ("package_version", "git_commit", "task_hash", "checkpoint_sha256", "data_hash", "submission_hash",
                "python", "torch", "torchvision", "device", "intervals", "n_examples", "seconds"):
        assert key in prov, key
    assert prov["torch"].startswith("2.14.1") and prov["torchvision"].startswith("0.29.1")
    sidecar = results / "digits-mlp__fc1-17" / record["sidecar"]["file"]
    with np.load(sidecar) as arrays:
        assert len(arrays["loss.replaced"]) == prov["n_examples"] == 900


def test_unknown_task(results):
    assert_user_error(run_cli("score", "zero", "--task", "digits-mlp/fc1:1777", "--results-dir", str(results)),
                      "unknown task", "Did you mean")
    assert no_records(results)


def test_unknown_submission(results):
    assert_user_error(run_cli("score", "lineer", "--task", TASK, "--results-dir", str(results)),
                      "unknown submission 'lineer'", "Did you mean 'linear'")


@pytest.mark.slow
def test_bad_signature(tmp_path, results, session_cache):
    sub = write_submission(tmp_path / "bad", "def replace(conv1):\n    return conv1\n")
    assert_user_error(run_cli("score", str(sub), "--task", TASK, "--results-dir", str(results)),
                      "parameter 'conv1' is not an input")
    assert no_records(results)


@pytest.mark.parametrize(
    "code, fragments",
    [
        ("import torch\ndef replace(image, task):\n    return torch.zeros(image.shape[0], 3)\n", ["shape", "expected"]),
        ("import torch\ndef replace(image, task):\n    return torch.zeros(image.shape[0], *task.target_shape, dtype=torch.float64)\n",
         ["dtype torch.float64"]),
        ("import torch\ndef replace(image, task):\n    return torch.full((image.shape[0], *task.target_shape), float('nan'))\n",
         ["non-finite"]),
        ("import torch\ndef replace(image, task):\n    return torch.full((image.shape[0], *task.target_shape), float('inf'))\n",
         ["non-finite"]),
        ("def replace(image, task):\n    return [0.0]\n", ["must return a torch.Tensor"]),
        ("import torch\ndef fit(image):\n    return None\ndef replace(image, task, params):\n    return image\n",
         ["fit() returned NoneType", "return {} to store nothing"]),
    ],
)
@pytest.mark.slow
def test_bad_outputs_are_the_submissions_error(tmp_path, results, session_cache, code, fragments):
    """A submission that returns something unusable: exit 1, one line naming it and what to fix, no record."""
    sub = write_submission(tmp_path / "bad", code)
    proc = run_cli("score", str(sub), "--task", TASK, "--results-dir", str(results))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replacebench: submission 'bad'"), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert no_records(results)


def test_submission_that_raises_shows_its_own_traceback(tmp_path, results, session_cache):
    code = "def helper(x):\n    raise ValueError('my own bug')\n\ndef replace(image, task):\n    return helper(image)\n"
    sub = write_submission(tmp_path / "raiser", code)
    proc = run_cli("score", str(sub), "--task", TASK, "--results-dir", str(results))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "in helper" in proc.stderr and "ValueError: my own bug" in proc.stderr
    assert "replacement.py" in proc.stderr
    assert no_records(results)


def copy_project(tmp_path: Path) -> Path:
    """A copy of the project's tasks, checkpoints and submissions, to damage safely."""
    home = tmp_path / "home"
    for part in ("tasks", "checkpoints", "submissions"):
        shutil.copytree(ROOT / part, home / part, ignore=shutil.ignore_patterns("__pycache__"))
    return home


@pytest.mark.slow
def test_checkpoint_with_wrong_sha256(tmp_path, results):
    home = copy_project(tmp_path)
    ckpt = home / "checkpoints" / "digits-mlp.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    proc = run_cli("score", "zero", "--task", TASK, "--results-dir", str(results), env={"REPLACEBENCH_HOME": str(home)})
    assert_user_error(proc, "sha256", "replacebench train digits-mlp")
    assert no_records(results)


@pytest.mark.slow
def test_missing_mnist_data(tmp_path, results):
    proc = run_cli("score", "zero", "--task", "mnist-mlp/fc1:13", "--results-dir", str(results), "--data-dir", str(tmp_path / "empty"))
    assert_user_error(proc, "replacebench fetch mnist")
    assert no_records(results)


@pytest.mark.slow
def test_corrupt_mnist_data(tmp_path, results, data_dir):
    copy = tmp_path / "data" / "MNIST" / "raw"
    shutil.copytree(data_dir / "MNIST" / "raw", copy)
    target = copy / "t10k-images-idx3-ubyte"
    data = bytearray(target.read_bytes())
    data[5000] ^= 0x01
    target.write_bytes(bytes(data))
    proc = run_cli("score", "zero", "--task", "mnist-mlp/fc1:13", "--results-dir", str(results), "--data-dir", str(tmp_path / "data"))
    assert_user_error(proc, "t10k-images-idx3-ubyte")
    assert no_records(results)


@pytest.mark.slow
def test_interrupted_scoring_leaves_no_record(tmp_path, results, session_cache):
    """The user's own Ctrl-C: exit 130, no record, and the submission's processes gone."""
    code = (
        "import time, torch\n"
        "def replace(image, task):\n"
        "    print('replace started', flush=True)\n"
        "    time.sleep(0.5)\n"
        "    return torch.zeros(image.shape[0], *task.target_shape)\n"
    )
    sub = write_submission(tmp_path / "slow", code)
    # as in a terminal: Ctrl-C reaches the command (a shell running CI in the background may ignore SIGINT)
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "score", str(sub), "--task", "digits-mlp/fc1:17",
                             "--results-dir", str(results)], stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if "replace started" in line:
            break
    assert any("replace started" in line for line in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    err = "".join(seen) + proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130, err
    assert "no record was written" in err
    assert no_records(results)
    assert not any(results.rglob("*")) or not any(p.is_file() for p in results.rglob("*"))


@pytest.mark.slow
def test_concurrent_runs_leave_a_consistent_record(results, session_cache):
    """Two runs writing the same record at once: both succeed, and the record names an intact sidecar."""
    args = [sys.executable, "-m", "benchmark", "score", "mean", "--task", TASK, "--results-dir", str(results)]
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    folder = results / "digits-mlp__fc1-17"
    from benchmark.record.io import read_sidecar
    from benchmark.record.typed import Record

    arrays = read_sidecar(folder / "mean.json", Record.read(folder / "mean.json"))
    assert len(arrays["loss.replaced"]) == 900
    assert not list(folder.glob(".*"))  # no temporary files left


@pytest.mark.slow
def test_leaderboard_and_compare(tmp_path, results, session_cache):
    for name in ("zero", "linear", "mean"):
        assert run_cli("score", name, "--task", TASK, "--results-dir", str(results)).returncode == 0
    out = tmp_path / "board.md"
    proc = run_cli("leaderboard", "--results-dir", str(results), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    board = out.read_text()
    section = board.split(f"## {TASK}")[1]
    # the heading's detectable difference, computed here from the per-example losses by hand
    from benchmark.record.io import read_sidecar
    from benchmark.record.typed import Record

    zero = Record.read(results / "digits-mlp__fc1-17" / "zero.json")
    losses = read_sidecar(results / "digits-mlp__fc1-17" / "zero.json", zero)
    d = losses["loss.zero"].astype(np.float64) - losses["loss.clean"].astype(np.float64)
    mde = (1.959964 + 0.841621) * d.std(ddof=1) / (np.sqrt(len(d)) * d.mean())
    assert f"Detectable recovery difference (80% power): {100 * mde:.0f} points." in section.split("\n|")[0]
    show = run_cli("show", TASK)
    assert show.returncode == 0 and f"recovery differences of {100 * mde:.0f} points" in show.stdout
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    # the mean ablation costs nothing measurable here, so no entry's loss is significantly below it (≤ mean)
    # the ranked table, then the reference (copy) table
    assert [r.split("|")[2].strip() for r in rows] == ["mean (≤ mean)", "zero (≤ mean)", "linear (copy, ≤ mean)"]
    assert section.index("| ref | linear") > section.index("**Reference (copy)**") > section.index("| 2 | zero")
    # linear stores 64 weights + bias + kernel = 66 numbers ≥ the unit's fan-in 65: a copy, so a reference, never
    # ranked and off the frontier; mean's CI [~78, ~113] lies wholly above zero's [0, 0]: 1 and 2
    assert [r.split("|")[1].strip() for r in rows] == ["1", "2", "ref"]
    # the two baselines sit on the frontier (zero recovers 0% in the fewest bits, mean ~92% in a few more)
    frontier = board_column(board, "frontier")
    assert [r.split("|")[frontier].strip() for r in rows] == ["◆", "◆", ""]
    proc = run_cli("compare", "linear", "zero", "--task", TASK, "--results-dir", str(results), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # independent check of the paired test on the sidecars' per-example losses
    import scipy.stats

    from benchmark.record.io import read_sidecar
    from benchmark.record.typed import Record

    folder = results / "digits-mlp__fc1-17"
    a = read_sidecar(folder / "linear.json", Record.read(folder / "linear.json"))["loss.replaced"]
    b = read_sidecar(folder / "zero.json", Record.read(folder / "zero.json"))["loss.replaced"]
    expected = scipy.stats.ttest_rel(a.astype(float), b.astype(float)).pvalue
    assert json.dumps(result)  # plain JSON
    assert any(abs(v - expected) < 1e-9 * max(1, expected) for v in _numbers(result)), (expected, result)


def test_compare_without_records(results):
    assert_user_error(run_cli("compare", "linear", "zero", "--task", TASK, "--results-dir", str(results)), "score linear")


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return [float(obj)] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


@pytest.mark.slow
def test_train_command_reproduces_the_committed_checkpoint(tmp_path):
    proc = run_cli("train", "digits-mlp", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from benchmark.download import sha256_file

    assert len(sha256_file(tmp_path / "digits-mlp.safetensors")) == 64
    assert_matches_committed(tmp_path / "digits-mlp.safetensors", ROOT / "checkpoints" / "digits-mlp.safetensors")
    assert "test accuracy 97.11%" in proc.stdout


@pytest.mark.slow
def test_unknown_model_and_fetch_target():
    assert_user_error(run_cli("train", "mnist-cn"), "unknown model", "Did you mean 'mnist-cnn'")
    assert_user_error(run_cli("fetch", "mnsit"), "unknown fetch target", "Did you mean 'mnist'")


@pytest.mark.parametrize("code, shown", [
    ("def replace(image:\n    return image\n", ["replacement.py\", line 1", "SyntaxError"]),
    ("import no_such_package_here\ndef replace(image):\n    return image\n", ["line 1, in <module>", "ModuleNotFoundError"]),
])
@pytest.mark.slow
def test_submission_that_fails_to_import(tmp_path, results, code, shown):
    sub = write_submission(tmp_path / "broken", code)
    proc = run_cli("score", str(sub), "--task", TASK, "--results-dir", str(results))
    assert proc.returncode == 1, proc.stderr
    assert "failed to import" in proc.stderr
    for fragment in shown:
        assert fragment in proc.stderr
    assert "benchmark/harness/submissions.py" not in proc.stderr  # the user's code, not ours
    assert no_records(results)


@pytest.mark.slow
def test_score_all_skips_imagenet_tasks_without_images(tmp_path, session_cache):
    sub = write_submission(tmp_path / "digits-only", "import torch\ndef replace(image, task):\n"
                           "    return torch.zeros(image.shape[0], *task.target_shape)\n")
    toml = sub / "submission.toml"
    toml.write_text(toml.read_text() + 'tasks = ["digits-mlp/fc1:17", "inceptionv1/mixed3b:379"]\n')
    proc = run_cli("score", str(sub), "--all", "--no-record")
    assert proc.returncode == 0, proc.stderr
    assert "skipping 1 ImageNet task" in proc.stderr and "digits-only on digits-mlp/fc1:17" in proc.stdout
    toml.write_text(toml.read_text().replace('"digits-mlp/fc1:17", ', ""))
    assert_user_error(run_cli("score", str(sub), "--all", "--no-record"), "needs ImageNet images")


@pytest.mark.slow
def test_git_provenance_ignores_the_leaderboard_but_not_the_code(tmp_path):
    """Records written into leaderboard/ must not mark the code dirty; an edited source file must."""
    repo = tmp_path / "repo"
    (repo / "leaderboard").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "leaderboard" / "r.json").write_text("{}\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(git + args, check=True)
    code = "import json; from benchmark.record import provenance; print(json.dumps(provenance.git_commit()))"

    def provenance() -> dict:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "REPLACEBENCH_HOME": str(repo)})
        return json.loads(out.stdout)
    assert provenance()["dirty"] is False
    (repo / "leaderboard" / "r.json").write_text('{"new": 1}\n')
    assert provenance()["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    assert provenance()["dirty"] is True
