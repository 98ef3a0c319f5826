"""Experiments stay off the board: the runs folder, `publish`, `runs`, and glob runs that keep going.

Real subprocesses of the CLI on the fast digits-mlp tasks, real data, real files. Every test points the runs folder
($REPLACEBENCH_RUNS) and the board ($REPLACEBENCH_BOARD) into tmp_path, so nothing here writes into the committed
leaderboard/results/; the one test of a plain `score` (no such variables) runs in a git clone of the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_cli, write_submission

TASK = "digits-mlp/fc1:17"
SLUG = "digits-mlp__fc1-17"
#: three digits-mlp tasks, in the order the registry (and so a glob run) lists them
GLOB = "digits-mlp/fc1:1*"
GLOB_TASKS = ["digits-mlp/fc1:17", "digits-mlp/fc1:19", "digits-mlp/fc1:13"]

CONSTANT = "import torch\n\n\ndef replace(image, task):\n    return torch.full((image.shape[0], *task.target_shape), {value})\n"
#: a submission that raises on one task only: the others score
FAILS_ON = '''import torch


def helper(task):
    if task.id == {task!r}:
        raise ValueError("boom on " + task.id)


def replace(image, task):
    helper(task)
    return torch.full((image.shape[0], *task.target_shape), 0.5)
'''


@pytest.fixture()
def env(tmp_path: Path, data_dir: Path, session_cache: Path) -> dict[str, str]:
    """A runs folder and a board of this test's own."""
    return {"REPLACEBENCH_RUNS": str(tmp_path / "runs"), "REPLACEBENCH_BOARD": str(tmp_path / "board")}


def sub(tmp_path: Path, name: str, code: str, authors: str = "test") -> Path:
    folder = write_submission(tmp_path / "subs" / name, code)
    meta = folder / "submission.toml"
    meta.write_text(meta.read_text().replace('authors = ["test"]', f'authors = ["{authors}"]'))
    return folder


def records(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json")) if folder.exists() else []


def one_error_line(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


# -- the runs folder -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_plain_score_leaves_the_board_and_git_status_clean(tmp_path, data_dir, session_cache):
    """In a clone, `score` with no --results-dir writes runs/ (ignored by git), never leaderboard/."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    assert "/runs/" in (repo / ".gitignore").read_text().splitlines()
    env = {k: v for k, v in os.environ.items() if k not in ("REPLACEBENCH_RUNS", "REPLACEBENCH_BOARD")}
    env["REPLACEBENCH_HOME"] = str(repo)
    proc = subprocess.run([sys.executable, "-m", "benchmark", "score", "zero", "--task", TASK], capture_output=True,
                          text=True, cwd=repo, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"  run: runs/{SLUG}/zero.json" in proc.stdout.splitlines()  # relative: it lies under the cwd
    assert records(repo / "runs") == [f"{SLUG}/zero.json"]
    assert git(repo, "status", "--porcelain", "--", "leaderboard") == ""
    assert git(repo, "status", "--porcelain") == ""  # runs/ is ignored


@pytest.mark.slow
def test_rescore_runs_publish_and_its_refusals(tmp_path, env):
    runs, board = tmp_path / "runs", tmp_path / "board"
    folder = sub(tmp_path, "mine", CONSTANT.format(value=0.5))
    first = run_cli("score", str(folder), "--task", TASK, env=env)
    assert first.returncode == 0, first.stderr
    assert f"  run: {runs / SLUG / 'mine.json'}" in first.stdout  # not under the cwd: the path as it is
    old_hash = json.loads((runs / SLUG / "mine.json").read_text())["submission"]["content_hash"]

    # an edited submission replaces its own run: no --force, no new name
    (folder / "replacement.py").write_text(CONSTANT.format(value=0.25))
    again = run_cli("score", str(folder), "--task", TASK, env=env)
    assert again.returncode == 0, again.stderr
    run = json.loads((runs / SLUG / "mine.json").read_text())
    assert run["submission"]["content_hash"] != old_hash
    assert not board.exists()  # scoring never touches the board

    listed = run_cli("runs", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(TASK)]
    assert "mine" in row and "vs zero" in row and row.rstrip().endswith("current")

    published = run_cli("publish", str(folder), env=env)
    assert published.returncode == 0, published.stderr
    assert f"published {board / SLUG / 'mine.json'}" in published.stdout and "replacebench leaderboard" in published.stdout
    assert (board / SLUG / "mine.json").read_bytes() == (runs / SLUG / "mine.json").read_bytes()
    assert (board / SLUG / run["sidecar"]["file"]).read_bytes() == (runs / SLUG / run["sidecar"]["file"]).read_bytes()
    assert [p.name for p in (board / SLUG).iterdir()] and not list((board / SLUG).glob(".*"))  # no temporary left
    assert "the board re-scores its records from submissions/mine" in published.stderr  # not where this folder is

    # edited since its run: stale, refused, the board untouched
    on_board = (board / SLUG / "mine.json").read_bytes()
    (folder / "replacement.py").write_text(CONSTANT.format(value=0.75))
    stale = run_cli("publish", str(folder), env=env)
    assert stale.returncode == 1
    assert "stale" in stale.stderr and f"replacebench score mine --task {TASK}" in stale.stderr
    assert "nothing published" in stale.stderr and "Traceback" not in stale.stderr
    assert (board / SLUG / "mine.json").read_bytes() == on_board

    # re-scored: the board holds another version, which only --force replaces
    assert run_cli("score", str(folder), "--task", TASK, env=env).returncode == 0
    other = run_cli("publish", str(folder), env=env)
    assert other.returncode == 1 and "different version" in other.stderr and "--force" in other.stderr
    forced = run_cli("publish", str(folder), "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads((board / SLUG / "mine.json").read_text())["submission"]["content_hash"] == \
        json.loads((runs / SLUG / "mine.json").read_text())["submission"]["content_hash"]
    assert len(list((board / SLUG).glob("mine.*.npz"))) == 1  # the old version's sidecar left the board

    # other authors under the same name need --force too
    (folder / "submission.toml").write_text((folder / "submission.toml").read_text().replace('["test"]', '["someone"]'))
    assert run_cli("score", str(folder), "--task", TASK, env=env).returncode == 0
    authors = run_cli("publish", str(folder), env=env)
    assert authors.returncode == 1 and "authors" in authors.stderr

    # --board-dir puts it elsewhere
    elsewhere = tmp_path / "elsewhere"
    moved = run_cli("publish", str(folder), "--board-dir", str(elsewhere), env=env)
    assert moved.returncode == 0, moved.stderr
    assert records(elsewhere) == [f"{SLUG}/mine.json"] and f"--results-dir {elsewhere}" in moved.stdout


@pytest.mark.slow
def test_publish_refuses_non_standard_in_process_and_changed_task_runs(tmp_path, env):
    runs, board = tmp_path / "runs", tmp_path / "board"
    folder = sub(tmp_path, "mine", CONSTANT.format(value=0.5))
    assert run_cli("score", str(folder), "--task", TASK, "--eval-size", "300", env=env).returncode == 0
    proc = run_cli("publish", str(folder), env=env)
    assert proc.returncode == 1 and "non-standard" in proc.stderr and not board.exists()

    assert run_cli("score", str(folder), "--task", TASK, "--in-process", env=env).returncode == 0
    proc = run_cli("publish", str(folder), env=env)
    assert proc.returncode == 1 and "--in-process" in proc.stderr and not board.exists()

    assert run_cli("score", str(folder), "--task", TASK, env=env).returncode == 0
    path = runs / SLUG / "mine.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "task": {**record["task"], "hash": "0" * 64}}))  # as if the task file changed
    proc = run_cli("publish", str(folder), env=env)
    assert proc.returncode == 1 and "task file changed" in proc.stderr and not board.exists()
    assert "task changed" in run_cli("runs", env=env).stdout

    nothing = run_cli("publish", str(folder), "--task", "digits-mlp/fc1:9", env=env)
    one_error_line(nothing, 2, "no runs of 'mine'", "replacebench score mine")
    one_error_line(run_cli("publish", str(folder), "--task", "digits-mpl/*", env=env), 2, "Did you mean 'digits-mlp/*'")


@pytest.mark.slow
def test_runs_lists_verifies_and_removes(tmp_path, env):
    runs = tmp_path / "runs"
    assert "no runs in" in run_cli("runs", env=env).stdout
    for name in ("zero", "mean"):
        assert run_cli("score", name, "--task", TASK, env=env).returncode == 0
    listed = run_cli("runs", "zero", env=env).stdout.splitlines()
    assert listed[0].split() == ["task", "submission", "primary", "recovery", "[95%", "CI]", "state"]
    assert [line.split()[:2] for line in listed[1:-1]] == [[TASK, "zero"]] and "1 run(s)" in listed[-1]
    assert len(run_cli("runs", "digits-mlp/*", env=env).stdout.splitlines()) == 4  # header, two runs, footer

    verified = run_cli("verify", "--all", "--runs", env=env)
    assert verified.returncode == 0 and "2 verified, 0 failed" in verified.stdout, verified.stdout + verified.stderr
    one_error_line(run_cli("verify", "--all", env=env), 2, "no records to verify", str(tmp_path / "board"))
    one_error_line(run_cli("verify", "--runs", str(runs / SLUG / "zero.json"), env=env), 2, "--runs goes with --all")

    published = run_cli("publish", "zero", env=env)
    assert published.returncode == 0 and published.stderr == "", published.stderr
    verified = run_cli("verify", "--all", env=env)  # --all is the board
    assert verified.returncode == 0 and "1 verified, 0 failed" in verified.stdout, verified.stdout + verified.stderr
    assert str(tmp_path / "board" / SLUG / "zero.json") in verified.stdout

    removed = run_cli("runs", "--remove", "zero", env=env)
    assert removed.returncode == 0 and f"removed {runs / SLUG / 'zero.json'}" in removed.stdout
    assert records(runs) == [f"{SLUG}/mean.json"] and not list((runs / SLUG).glob("zero.*"))
    compared = run_cli("compare", "mean", "zero", "--task", TASK, "--json", env=env)  # a run against the board's zero
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["a"] == "mean"
    one_error_line(run_cli("compare", "mean", "linear", "--task", TASK, env=env), 2, "no result for 'linear'",
                   f"{runs} or {tmp_path / 'board'}")
    one_error_line(run_cli("runs", "--remove", "zero", env=env), 2, "no runs of 'zero'")
    one_error_line(run_cli("runs", "--remove", "mean", "--task", "digits-mlp/fc1:9", env=env), 2, "no runs of 'mean'")
    assert run_cli("runs", "--remove", "mean", "--task", "digits-mlp/*", env=env).returncode == 0
    assert records(runs) == []


@pytest.mark.slow
def test_results_dir_and_no_record_still_go_where_they_say(tmp_path, env):
    runs, results = tmp_path / "runs", tmp_path / "results"
    proc = run_cli("score", "zero", "--task", TASK, "--results-dir", str(results), env=env)
    assert proc.returncode == 0 and f"  record: {results / SLUG / 'zero.json'}" in proc.stdout
    assert records(results) == [f"{SLUG}/zero.json"] and not runs.exists()
    assert run_cli("score", "zero", "--task", TASK, "--no-record", env=env).returncode == 0
    assert not runs.exists()


# -- glob runs -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_glob_with_one_failing_task_scores_the_rest_and_names_the_failure(tmp_path, env):
    runs = tmp_path / "runs"
    folder = sub(tmp_path, "flaky", FAILS_ON.format(task=GLOB_TASKS[1]))
    proc = run_cli("score", str(folder), "--task", GLOB, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr
    for k, task in enumerate(GLOB_TASKS, 1):
        assert f"[{k}/3] {task}" in proc.stderr.splitlines()
    # the submission's own traceback, once
    assert proc.stderr.count("The submission's traceback:") == 1
    assert proc.stderr.count("Traceback (most recent call last)") == 1 and "in helper" in proc.stderr
    # the line as the children run it (the canonical rendering), at its line number as written
    assert "raise ValueError('boom on ' + task.id)" in proc.stderr and ", line 6, in helper" in proc.stderr
    assert records(runs) == sorted(f"digits-mlp__fc1-{t.rsplit(':', 1)[1]}/flaky.json" for t in (GLOB_TASKS[0], GLOB_TASKS[2]))
    out = proc.stdout.splitlines()
    # a compact line per result, then one table
    compact = [line for line in out if line.startswith("digits-mlp/") and "run: " in line]
    assert [line.split()[0] for line in compact] == [GLOB_TASKS[0], GLOB_TASKS[2]]
    assert not any(line.startswith("  recovery vs") for line in out)
    table = out[out.index("flaky: 2 of 3 task(s) scored, 1 failed"):]
    assert table[1].split() == ["task", "primary", "recovery", "[95%", "CI]"]
    rows = dict(line.split(None, 1) for line in table[2:])
    assert list(rows) == GLOB_TASKS
    assert rows[GLOB_TASKS[1]].startswith("FAILED: ") and "boom on digits-mlp/fc1:19" in rows[GLOB_TASKS[1]]
    for task in (GLOB_TASKS[0], GLOB_TASKS[2]):
        assert rows[task].endswith("vs zero") and "%" in rows[task]


@pytest.mark.slow
def test_fail_fast_stops_and_says_what_it_skipped(tmp_path, env):
    runs = tmp_path / "runs"
    folder = sub(tmp_path, "flaky", FAILS_ON.format(task=GLOB_TASKS[0]))
    proc = run_cli("score", str(folder), "--task", GLOB, "--fail-fast", env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "[1/3]" in proc.stderr and "[2/3]" not in proc.stderr and not runs.exists()
    rows = proc.stdout.splitlines()
    assert "flaky: 0 of 3 task(s) scored, 1 failed, 2 skipped (--fail-fast)" in rows
    assert [line.split()[:2] for line in rows[-3:]] == [[GLOB_TASKS[0], "FAILED:"], [GLOB_TASKS[1], "skipped"],
                                                        [GLOB_TASKS[2], "skipped"]]


@pytest.mark.slow
def test_full_and_json_over_several_tasks(tmp_path, env):
    from benchmark.tasks import select_tasks

    ids = [t.id for t in select_tasks("digits-mlp/fc1:1*")]  # the task file's order
    assert len(ids) >= 2
    proc = run_cli("score", "zero", "--task", "digits-mlp/fc1:1*", "--full", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("  recovery vs zero") == len(ids) and proc.stdout.count("  run: ") == len(ids)
    assert f"zero: {len(ids)} of {len(ids)} task(s) scored" in proc.stdout
    proc = run_cli("score", "zero", "--task", "digits-mlp/fc1:1*", "--json", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert [r["task"]["id"] for r in json.loads(proc.stdout)] == ids
    assert f"zero: {len(ids)} of {len(ids)} task(s) scored" in proc.stderr  # the table stays off the JSON


@pytest.mark.slow
def test_one_task_fails_as_before(tmp_path, env):
    """A single task's failure: the submission's error and exit 1, no progress line, no table."""
    folder = sub(tmp_path, "flaky", FAILS_ON.format(task=TASK))
    proc = run_cli("score", str(folder), "--task", TASK, env=env)
    assert proc.returncode == 1 and "ValueError: boom" in proc.stderr
    assert "[1/1]" not in proc.stderr and "task(s) scored" not in proc.stdout


# -- misspelt globs --------------------------------------------------------------------------------------------------


def test_a_misspelt_glob_suggests_the_corrected_glob(tmp_path):
    for command in (("tasks", "mnist-mpl/*"), ("score", "zero", "--task", "mnist-mpl/*")):
        one_error_line(run_cli(*command, env={"REPLACEBENCH_RUNS": str(tmp_path / "runs")}), 2,
                       "no task matches 'mnist-mpl/*'", "Did you mean 'mnist-mlp/*'?")
    assert not (tmp_path / "runs").exists()


def test_corrected_glob_fixes_the_model_and_layer_parts():
    from benchmark.tasks import all_tasks, corrected_glob, select_tasks

    registry = all_tasks()
    assert corrected_glob("mnist-mpl/*", registry) == "mnist-mlp/*"
    assert corrected_glob("digits-mlp/fc2:*", registry) == "digits-mlp/fc1:*"
    assert corrected_glob("mnist-cnn/conv22:*", registry) == "mnist-cnn/conv2:*"
    assert corrected_glob("mnist-mlp/fc1:9999*", registry) is None  # nothing to correct: no suggestion
    assert corrected_glob("zzzz/*", registry) is None
    with pytest.raises(Exception, match="Did you mean 'mnist-mlp/fc1:13'"):
        select_tasks("mnist-mlp/fc1:133")  # an id, not a glob: the closest id, as before


def test_load_results_reads_the_runs_folder(tmp_path, monkeypatch):
    import shutil

    import benchmark as rb
    from benchmark.record.layout import default_results_dir

    board = default_results_dir()
    monkeypatch.setenv("REPLACEBENCH_RUNS", str(tmp_path / "runs"))
    assert len(rb.load_results(runs=True)) == 0
    shutil.copytree(board / "mnist-mlp__fc1-13", tmp_path / "runs" / "mnist-mlp__fc1-13")
    frame = rb.load_results(runs=True)
    assert set(frame["task"]) == {"mnist-mlp/fc1:13"} and len(frame) == len(list(board.glob("mnist-mlp__fc1-13/*.json")))
    assert len(rb.load_results()) > len(frame)  # the board
    with pytest.raises(rb.UserError, match="not both"):
        rb.load_results(tmp_path, runs=True)


def test_publish_from_python_is_all_or_nothing(tmp_path, monkeypatch):
    """rb.publish copies runs (here: the board's own current records of `zero`, copied into a runs folder) and their
    sidecars byte for byte; a refused run stops every one."""
    import shutil

    import benchmark as rb
    from benchmark.record.layout import default_results_dir

    runs, board = tmp_path / "runs", tmp_path / "board"
    monkeypatch.setenv("REPLACEBENCH_RUNS", str(runs))
    for task in (SLUG, "digits-mlp__fc1-9"):
        (runs / task).mkdir(parents=True)
        for path in (default_results_dir() / task).glob("zero.*"):
            shutil.copy(path, runs / task / path.name)
    published = rb.publish("zero", task="digits-mlp/fc1:17", board_dir=board)
    assert sorted(p.name for p in published) == ["zero.heldout.json", "zero.json"]
    assert sorted(p.name for p in (board / SLUG).iterdir()) == sorted(p.name for p in (runs / SLUG).iterdir())
    for path in (board / SLUG).iterdir():
        assert path.read_bytes() == (runs / SLUG / path.name).read_bytes()

    stale = runs / "digits-mlp__fc1-9" / "zero.json"
    record = json.loads(stale.read_text())
    stale.write_text(json.dumps({**record, "submission": {**record["submission"], "content_hash": "f" * 64}}))
    with pytest.raises(rb.UserError, match=r"nothing published: 1 of 4 run\(s\) refused .*stale"):
        rb.publish("zero", board_dir=board)
    assert not (board / "digits-mlp__fc1-9").exists()
    with pytest.raises(rb.UserError, match="no runs of 'zero' on 'digits-mlp/fc1:27'"):
        rb.publish("zero", task="digits-mlp/fc1:27", board_dir=board)
