"""The rough edges a new user hit (issue 8's list), each reproduced through the real CLI and fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT, run_cli, write_submission
from test_cli import assert_user_error

from benchmark import __version__

TASK = "digits-mlp/fc1:17"


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"replacebench {__version__}"


@pytest.mark.slow
def test_eval_and_fit_sizes_are_checked(session_cache):
    assert_user_error(run_cli("score", "zero", "--task", TASK, "--no-record", "--eval-size", "0"), "--eval-size 0", "at least 2")
    assert_user_error(run_cli("score", "zero", "--task", TASK, "--no-record", "--eval-size", "5000"),
                      "--eval-size 5000", "only 900", "at most 900")
    assert_user_error(run_cli("score", "zero", "--task", TASK, "--no-record", "--fit-size", "1"), "--fit-size 1")
    # the task's own size is the standard protocol, not an override; --json gives a list even for one task
    proc = run_cli("score", "zero", "--task", TASK, "--no-record", "--json", "--eval-size", "900")
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    assert record["task"]["standard_protocol"] is True and record["task"]["overrides"] == {}


@pytest.mark.slow
def test_each_task_is_printed_when_done(tmp_path, session_cache):
    """Two tasks through a pipe: the first task's figures arrive while the second is still being scored."""
    folder = write_submission(tmp_path / "slow-second", '''
import time

import torch

def replace(image, task):
    if task.id.endswith(":19"):
        time.sleep(6)
    return torch.zeros(image.shape[0], 1)
''')
    child = subprocess.Popen([sys.executable, "-m", "benchmark", "score", str(folder), "--task", "digits-mlp/fc1:1[79]",
                              "--no-record"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                             env=os.environ.copy())
    try:
        first = child.stdout.readline()
        while not first.startswith("digits-mlp/fc1:17 "):  # the first task's compact line
            first = child.stdout.readline()
            assert first, "stdout ended before the first task's figures"
        time.sleep(1)
        assert child.poll() is None  # the second task (6 s in replace) is still running: the first was not held back
    finally:
        child.wait(timeout=120)
    assert child.returncode == 0


@pytest.mark.slow
def test_score_all_checks_every_dataset_before_the_first_task(tmp_path, session_cache):
    """`zero` serves digits and MNIST tasks; without MNIST the run fails at once, before scoring any digits task."""
    proc = run_cli("score", "zero", "--all", "--no-record", "--data-dir", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    notice, error = proc.stderr.strip().splitlines()  # the ImageNet tasks' skip notice, then the one error line
    assert notice.startswith("replacebench: skipping") and error.startswith("replacebench: error: MNIST not found")
    assert proc.stdout == ""


def test_compare_with_a_pattern_says_it_needs_one_task():
    assert_user_error(run_cli("compare", "zero", "mean", "--task", "digits-mlp/*"), "one task id", "replacebench tasks")


def test_fetch_mnist_offline_names_where_the_file_goes(tmp_path):
    proc = run_cli("fetch", "mnist", "--url", "http://127.0.0.1:9/", "--data-dir", str(tmp_path / "data"))
    assert_user_error(proc, "could not download", str(tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte"))
    assert ".fetch-" not in proc.stderr  # not a temporary folder that is gone by the time it is read
    assert not list((tmp_path / "data" / "MNIST" / "raw").iterdir())  # nothing partial left


def test_output_into_a_closed_pipe_is_quiet():
    for command in ("tasks", "compare zero mean --task digits-mlp/fc1:17"):
        proc = subprocess.run(f"{sys.executable} -m benchmark {command} | head -1", shell=True, capture_output=True,
                              text=True, cwd=ROOT)
        assert proc.stdout and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, (command, proc.stderr)


@pytest.mark.slow
def test_compare_prints_a_verdict_with_the_primary_test(tmp_path, session_cache):
    """The verdict names the winner, the recovery difference with its CI at meaningful digits, and the primary test."""
    import re

    results = tmp_path / "results"
    for name in ("zero", "mean"):
        assert run_cli("score", name, "--task", TASK, "--results-dir", str(results)).returncode == 0
    proc = run_cli("compare", "zero", "mean", "--task", TASK, "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    verdict = proc.stdout.splitlines()[1]
    found = re.fullmatch(r"  verdict: mean beats zero: recovery \+(\d+) points \[\+(\d+), \+(\d+)\], "
                         r"paired t-test p < 1e-4", verdict)
    assert found, verdict
    compared = json.loads(run_cli("compare", "zero", "mean", "--task", TASK, "--results-dir", str(results), "--json").stdout)
    d, lo, hi = (100 * -compared[k] for k in ("recovery_diff", "recovery_diff_high", "recovery_diff_low"))
    assert [int(x) for x in found.groups()] == [round(d), round(lo), round(hi)]  # width > 10 points: whole points
    assert "negative: zero has the lower loss" in proc.stdout and "robustness check" in proc.stdout
    assert "{" not in proc.stdout  # no raw dicts
