"""What produced a record's figures, beyond its inputs: the project's git commit and the library versions."""

from __future__ import annotations

import platform
import subprocess
from typing import Any

import numpy as np

from .. import paths


def git_commit() -> dict[str, Any]:
    """The project's git commit and whether its tracked code has uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        # results written into the project's own leaderboard/ do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)leaderboard"],
                               cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment() -> dict[str, str]:
    """Versions of everything a number may depend on (the keys are `Provenance` fields)."""
    import scipy
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
    }
