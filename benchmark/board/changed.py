"""Which submission folders a pull request adds or changes: `replacebench changed-submissions --base REF [--repo DIR]`.

A folder counts when any file under `submissions/<name>/` differs between the merge base of REF and HEAD
(`git -c core.quotepath=false diff -z --name-only <merge-base> HEAD -- submissions/`, read as NUL-separated
paths, so a name with spaces, non-ASCII letters or a newline is read as it is, never as git's quoted form) and the
folder still exists at HEAD (a deleted submission has nothing to score). `--repo` names the checkout to look in
(the pull request's, when the base branch's harness runs the check). Names come out sorted, one per line, for
the public-submission workflow (`.github/workflows/submissions.yml`, README: Submitting to the public board).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .. import paths
from ..errors import UserError


def _git(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), "-c", "core.quotepath=false", *args], capture_output=True)
    if proc.returncode != 0:
        message = (proc.stderr.decode(errors="replace").strip().splitlines() or ["git failed"])[-1]
        raise UserError(f"git {' '.join(args[:2])}: {message}. Run this in a git checkout that has the base ref.")
    return proc.stdout


def changed_paths(base: str, repo: Path | None = None) -> list[str]:
    """Every path under submissions/ that differs between merge-base(base, HEAD) and HEAD in `repo` (default: the
    project), exactly as the file system names it."""
    repo = repo or paths.PROJECT_ROOT
    merge_base = _git(repo, "merge-base", base, "HEAD").decode().strip()
    listing = _git(repo, "diff", "-z", "--name-only", merge_base, "HEAD", "--", "submissions/")
    return [os.fsdecode(entry) for entry in listing.split(b"\0") if entry]


def changed_submissions(base: str, repo: Path | None = None) -> list[str]:
    """Names of the folders under `repo`'s submissions/ that differ between merge-base(base, HEAD) and HEAD."""
    root = repo or paths.PROJECT_ROOT
    names = set()
    for changed in changed_paths(base, root):
        parts = Path(changed).parts
        if len(parts) >= 3 and parts[0] == "submissions" and (root / "submissions" / parts[1]).is_dir():
            names.add(parts[1])
    return sorted(names)
