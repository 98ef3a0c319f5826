"""Which submission folders a pull request adds or changes: `replacebench changed-submissions --base REF`.

A folder counts when any file under `submissions/<name>/` differs between the merge base of REF and HEAD
(`git diff --name-only <merge-base> HEAD -- submissions/`) and the folder still exists at HEAD (a deleted
submission has nothing to score). Names come out sorted, one per line, for the public-submission workflow
(`.github/workflows/submissions.yml`, README: Submitting to the public board).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .. import paths
from ..errors import UserError


def _git(*args: str) -> str:
    proc = subprocess.run(["git", "-C", str(paths.PROJECT_ROOT), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
        raise UserError(f"git {' '.join(args[:2])}: {message}. Run this in a git checkout that has the base ref.")
    return proc.stdout


def changed_submissions(base: str) -> list[str]:
    """Names of the folders under submissions/ that differ between merge-base(base, HEAD) and HEAD."""
    merge_base = _git("merge-base", base, "HEAD").strip()
    names = set()
    for line in _git("diff", "--name-only", merge_base, "HEAD", "--", "submissions/").splitlines():
        parts = Path(line).parts
        if len(parts) >= 3 and parts[0] == "submissions" and (paths.submissions_dir() / parts[1]).is_dir():
            names.add(parts[1])
    return sorted(names)
