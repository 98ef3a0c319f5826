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

pytestmark = pytest.mark.slow

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


def test_the_workflow_script_scores_verifies_and_renders_a_new_submission(pull_request, data_dir, session_cache):
    repo = pull_request
    changed = run_in(repo, sys.executable, "-m", "benchmark", "changed-submissions", "--base", "target")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.split() == ["half-unit"]
    out = repo / "pr"
    proc = run_in(repo, "bash", ".github/scripts/check-submissions", "target", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((out / "results" / "digits-mlp__fc1-17" / "half-unit.json").read_text())
    assert record["isolation"]["level"] == "namespaces" and record["submission"]["authors"] == ["a stranger"]
    assert "1 verified, 0 failed" in proc.stdout
    assert "half-unit" in (out / "site" / "index.html").read_text()
    assert (out / "site" / "submissions" / "half-unit.html").exists()
    assert git(repo, "status", "--porcelain", "--", "leaderboard") == ""  # the board itself is untouched
    # the workflow runs exactly this script
    workflow = (ROOT / ".github" / "workflows" / "submissions.yml").read_text()
    assert ".github/scripts/check-submissions" in workflow and 'paths: ["submissions/**"]' in workflow


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
