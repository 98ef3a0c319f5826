"""The public board's pull-request check, run locally step by step, as the workflow runs it.

A clone of this repository gets a branch that adds a submission folder; `.github/scripts/check-submissions`
(what `.github/workflows/submissions.yml` runs) must find it, score it in isolation, verify the new record and
render the site with it. The clone is real (git), the scoring is real (sandboxed children), the data is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

CODE = '''import torch


def replace(image, task):
    """Half of the unit's typical value everywhere: a deliberately weak entry."""
    return torch.full((image.shape[0], 1), 0.5)
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture()
def pull_request(tmp_path: Path) -> Path:
    """A clone on a branch `pull-request` (off `target`) whose one commit adds submissions/half-unit (it serves digits-mlp/fc1:17)."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    git(repo, "checkout", "-q", "-B", "target")  # the branch the pull request targets
    git(repo, "checkout", "-q", "-b", "pull-request")
    folder = repo / "submissions" / "half-unit"
    folder.mkdir()
    (folder / "submission.toml").write_text('name = "half-unit"\nauthors = ["a stranger"]\nkind = "hand-written"\n'
                                            'description = "a constant"\ntasks = ["digits-mlp/fc1:17"]\n')
    (folder / "replacement.py").write_text(CODE)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add half-unit")
    return repo


def run_in(repo: Path, *command: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "REPLACEBENCH_HOME": str(repo), "REPLACEBENCH": f"{sys.executable} -m benchmark", **env}
    return subprocess.run(list(command), capture_output=True, text=True, cwd=repo, env=full, timeout=900)


@pytest.mark.slow
def test_the_workflow_script_scores_verifies_and_renders_a_new_submission(pull_request, data_dir, session_cache):
    repo = pull_request
    changed = run_in(repo, sys.executable, "-m", "benchmark", "changed-submissions", "--base", "target")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.split() == ["half-unit"]
    # the pull request also slips a record onto the board with no submission folder behind it
    forged = json.loads((repo / "leaderboard" / "results" / "digits-mlp__fc1-17" / "zero.json").read_text())
    forged["submission"]["name"] = "phantom"
    (repo / "leaderboard" / "results" / "digits-mlp__fc1-17" / "phantom.json").write_text(json.dumps(forged))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "and a record")
    # the base branch's checkout runs its own script and harness on the pull request's folders
    base = repo.parent / "base"
    subprocess.run(["git", "clone", "-q", "-b", "target", str(repo), str(base)], check=True)
    out = base / "out"
    proc = run_in(base, "bash", ".github/scripts/check-submissions", "target", str(out), str(repo))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (out / "results").rglob("*.json")) == ["half-unit.json"]  # only what it scored
    assert "phantom" not in (out / "site" / "index.html").read_text()
    record = json.loads((out / "results" / "digits-mlp__fc1-17" / "half-unit.json").read_text())
    assert record["isolation"]["level"] == "namespaces" and record["submission"]["authors"] == ["a stranger"]
    assert "1 verified, 0 failed" in proc.stdout
    assert "half-unit" in (out / "site" / "index.html").read_text()
    assert (out / "site" / "submissions" / "half-unit.html").exists()
    assert git(base, "status", "--porcelain", "--", "leaderboard") == ""  # the board itself is untouched


def test_the_workflow_scores_with_the_base_branchs_harness_and_reads_only(tmp_path):
    """The workflow parses; it may only read the repository; no checkout keeps a token; the base branch is checked
    out and installed, the pull request only supplies folders to base's own check-submissions script."""
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "submissions.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow[True]["pull_request"]["paths"] == ["submissions/**"]  # YAML 1.1 reads the key `on` as True
    steps = workflow["jobs"]["check"]["steps"]
    checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    assert {c["with"]["path"] for c in checkouts} == {"base", "pr"}
    assert all(c["with"]["persist-credentials"] is False for c in checkouts)
    base = next(c for c in checkouts if c["with"]["path"] == "base")
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    run = {s.get("name"): s for s in steps}
    assert run["Install the base branch's harness"]["working-directory"] == "base"
    check = run["Score, verify and render"]
    assert check["working-directory"] == "base" and check["run"].startswith(".github/scripts/check-submissions ")
    assert check["run"].endswith(" ../pr")


def test_changed_submissions_reads_paths_git_would_quote(tmp_path, monkeypatch):
    """Changed files with non-ASCII letters and spaces in their names (git quotes the first in its default output)
    still name their folders; a deleted folder is left out."""
    from benchmark import paths
    from benchmark.board.changed import changed_paths, changed_submissions

    repo = tmp_path / "repo"
    for name in ("mean", "zero", "gone"):
        (repo / "submissions" / name).mkdir(parents=True)
        (repo / "submissions" / name / "replacement.py").write_text("x = 1\n")
    git(repo.parent, "init", "-q", "-b", "target", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-q", "-b", "pull-request")
    (repo / "submissions" / "mean" / "données.npy").write_bytes(b"\0")  # the only change in mean
    (repo / "submissions" / "zero" / "my notes.txt").write_text("a space\n")  # the only change in zero
    (repo / "submissions" / "café").mkdir()  # a new folder whose own name is not ASCII
    (repo / "submissions" / "café" / "replacement.py").write_text("x = 2\n")
    git(repo, "rm", "-rq", "submissions/gone")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pull request")
    assert '"submissions/mean/donn\\303\\251es.npy"' in git(repo, "diff", "--name-only", "target", "HEAD")  # quoted
    assert sorted(changed_paths("target", repo)) == ["submissions/café/replacement.py", "submissions/gone/replacement.py",
                                                     "submissions/mean/données.npy", "submissions/zero/my notes.txt"]
    assert changed_submissions("target", repo) == ["café", "mean", "zero"]
    monkeypatch.setattr(paths, "PROJECT_ROOT", repo)  # the default: this project
    assert changed_submissions("target") == ["café", "mean", "zero"]


@pytest.mark.slow
def test_nothing_changed_and_a_bad_base_are_clear(pull_request):
    repo = pull_request
    git(repo, "checkout", "-q", "target")
    proc = run_in(repo, "bash", ".github/scripts/check-submissions", "target", str(repo / "pr"))
    assert proc.returncode == 0 and "no submission folder changed" in proc.stdout
    proc = run_in(repo, sys.executable, "-m", "benchmark", "changed-submissions", "--base", "no-such-branch")
    assert proc.returncode == 2 and proc.stderr.startswith("replacebench: error: git merge-base")
    assert proc.stderr.count("\n") == 1
    proc = run_in(repo, "bash", ".github/scripts/check-submissions", "no-such-branch", str(repo / "pr"))
    assert proc.returncode == 2 and "no submission folder changed" not in proc.stdout  # the script stops there
