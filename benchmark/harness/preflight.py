"""What a run checks before torch, scipy or the model load, so that a bad input is a one-line error in well under a
second instead of after the imports (about 3.5 s on a 2-core machine).

`replacebench score` and `api.score` share these, after `submissions.take_snapshot` (which checks the folder, its
metadata and its code's syntax, statically):

1. `check_run`: with a held-out secret, every task has a held-out split (only then are the kinds and the
   transforms imported); one task: the parameters the source declares, read statically against the task
   (`check_signatures`). Nothing heavy is imported;
2. the caller starts the zygote, whose torch import overlaps what follows;
3. `check_data_first`: every dataset split the tasks read opens (`zoo.open_split`, which loads torch): a missing
   one fails now, not mid-run.

This module imports nothing heavy at import time (tested: `tests/test_description.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import UserError
from ..tasks import Task
from ..zoo import open_split
from .submissions import Snapshot, check_signatures


def check_heldout_tasks(tasks: Sequence[Task], secret: bytes | None) -> None:
    """With a secret, every task must have a held-out split."""
    if secret is None:
        return
    from ..data.heldout import TRANSFORMS
    from ..kinds import kind_of

    without = sorted({t.dataset for t in tasks if t.dataset not in TRANSFORMS})
    for reason in (kind_of(dataset).no_held_out() for dataset in without):
        if reason:
            raise UserError(reason)  # the kind's own reason (tokens: every input public, the answer computed)
    if without:
        raise UserError(f"no held-out split is defined for {', '.join(without)} tasks (only "
                        f"{', '.join(sorted(TRANSFORMS))}): score them without --held-out-secret.")


def check_data_first(tasks: Sequence[Task], data_dir: str | os.PathLike | None,
                     imagenet_dir: str | os.PathLike | None) -> None:
    """Open every dataset split the tasks read before scoring the first: a missing one fails now, not mid-run."""
    for dataset, split in sorted({(t.dataset, s) for t in tasks for s in (t.eval_split, t.fit_split)}):
        open_split(dataset, split, None if data_dir is None else os.fspath(data_dir),
                   None if imagenet_dir is None else os.fspath(imagenet_dir))


def check_run(tasks: Sequence[Task], snapshot: Snapshot, heldout_secret: bytes | None) -> None:
    """What a run (`score`, `api.score`) checks before torch loads: a held-out split for every task (with a secret);
    one task: the parameters the source declares against it (a glob checks each task in its session). The caller
    then starts the zygote (its torch import overlaps the rest) and calls `check_data_first`, whose openers load
    torch."""
    check_heldout_tasks(tasks, heldout_secret)
    if len(tasks) == 1:
        check_signatures(snapshot, tasks[0])


__all__ = ["check_data_first", "check_heldout_tasks", "check_run"]
