"""The runs folder (`paths.runs_dir()`): a researcher's own records, and `publish`, the explicit step to the board.

A plain `score` writes `runs/<task-slug>/<submission>.json` and its sidecar, the board's layout; a re-score
replaces its own run. `publish` copies runs onto the board after the board's checks; `runs` lists them and
removes them. Nothing here scores anything.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import UserError
from ..record.io import read_sidecar, submission_of
from ..record.layout import HELDOUT_SUFFIX, find_records
from ..record.typed import Record


@dataclass(frozen=True)
class Run:
    """One record in the runs folder (or None fields when it cannot be read)."""

    path: Path
    task: str
    submission: str
    split: str
    record: Record | None
    problem: str | None = None  # why it cannot be read


def read_runs(runs_dir: Path) -> list[Run]:
    """Every record under `runs_dir`, readable or not, by task folder, submission, then split (public first)."""
    runs = []
    for path in find_records(runs_dir):
        stem = path.name[: -len(".json")]
        submission = stem[: -len(HELDOUT_SUFFIX)] if stem.endswith(HELDOUT_SUFFIX) else stem
        split = "held-out" if stem.endswith(HELDOUT_SUFFIX) else "public"
        try:
            record = Record.read(path)
        except UserError as exc:
            runs.append(Run(path, path.parent.name, submission, split, None, str(exc)))
            continue
        runs.append(Run(path, record.task.id, record.submission.name, record.split, record))
    return sorted(runs, key=lambda r: (r.path.parent.name, r.submission, r.split != "public"))


def matching(runs: list[Run], pattern: str | None) -> list[Run]:
    """Runs whose task id or submission name matches the glob `pattern` (None: all)."""
    if pattern is None:
        return runs
    return [r for r in runs if fnmatch.fnmatchcase(r.task, pattern) or fnmatch.fnmatchcase(r.submission, pattern)]


def run_state(run: Run, hashes: dict[Path, str | None]) -> str:
    """'current', or why the run would not publish as it is (stale, task changed, non-standard, not isolated)."""
    from ..tasks import all_tasks
    from .leaderboard import is_stale

    if run.record is None:
        return "unreadable"
    record, marks = run.record, []
    if is_stale(record, hashes):
        marks.append("stale")
    task = all_tasks().get(run.task)
    if task is None or task.content_hash() != record.task.hash:
        marks.append("task changed")
    if not record.task.standard_protocol:
        marks.append("non-standard")
    if record.isolation.level != "namespaces":
        marks.append("not isolated")
    return ", ".join(marks) or "current"


def remove_runs(runs_dir: Path, submission: str, task_glob: str | None) -> list[Path]:
    """Delete `submission`'s runs (both splits; on tasks matching `task_glob`, None: all) and their sidecars."""
    chosen = [r for r in read_runs(runs_dir) if r.submission == submission
              and (task_glob is None or fnmatch.fnmatchcase(r.task, task_glob))]
    for run in chosen:
        for sidecar in own_sidecars(run.path):
            sidecar.unlink(missing_ok=True)
        run.path.unlink(missing_ok=True)
        if not any(run.path.parent.iterdir()):
            run.path.parent.rmdir()
    return [r.path for r in chosen]


def own_sidecars(record_path: Path) -> list[Path]:
    """Every sidecar `<stem>.<sha12>.npz` beside a record (never the other split's: `x.<sha>` ≠ `x.heldout.<sha>`)."""
    stem = record_path.name[: -len(".json")]
    ours = re.compile(re.escape(stem) + r"\.[0-9a-f]{12}\.npz")
    return [p for p in record_path.parent.iterdir() if ours.fullmatch(p.name)] if record_path.parent.exists() else []


# ---------------------------------------------------------------------------------------------------------------------
# publish


@dataclass(frozen=True)
class Publication:
    """One run to copy onto the board: where it goes, or why it may not."""

    run: Path
    target: Path
    task: str
    refusal: str | None = None


def plan_publish(folder: Path, runs_dir: Path, board_dir: Path, task_glob: str | None,
                 force: bool) -> list[Publication]:
    """What `publish` would do with the submission folder's runs: each run's target on the board, or its refusal.

    Refused: a run of an earlier version of the folder (stale), a non-standard run (--eval-size/--fit-size), a run
    scored --in-process, a run whose task file changed since, an unreadable run or sidecar; a board record of
    another version or other authors unless `force`.
    """
    from ..harness.submissions import META_FILE, folder_hash, parse_meta, read_folder
    from ..tasks import all_tasks, select_tasks

    files = read_folder(folder)
    meta = parse_meta(files.get(META_FILE, b""), folder / META_FILE, folder.name)
    current = folder_hash(folder)
    ids = None if task_glob is None else {t.id for t in select_tasks(task_glob)}
    runs = [r for r in read_runs(runs_dir) if r.submission == meta.name and (ids is None or r.task in ids)]
    if not runs:
        where = "" if task_glob is None else f" on '{task_glob}'"
        raise UserError(f"no runs of '{meta.name}'{where} in {runs_dir}; score it first: "
                        f"replacebench score {meta.name} --task {task_glob or 'TASK'}")
    tasks = all_tasks()
    plans = []
    for run in runs:
        target = board_dir / run.path.parent.name / run.path.name
        plans.append(Publication(run.path, target, run.task, _refusal(run, current, tasks, target, meta, force)))
    return plans


def _refusal(run: Run, current: str, tasks: dict[str, Any], target: Path, meta: Any, force: bool) -> str | None:
    """Why this run may not go onto the board (None: it may)."""
    if run.record is None:
        return f"{run.problem}"
    record, name = run.record, run.submission
    rescore = f"re-score it: replacebench score {name} --task {run.task}"
    if record.submission.content_hash != current:
        return (f"stale: scored from an earlier version of the folder (hash {record.submission.content_hash[:12]}, "
                f"now {current[:12]}); {rescore}")
    if not record.task.standard_protocol:
        return f"non-standard (scored with --eval-size/--fit-size); {rescore}"
    if record.isolation.level != "namespaces":
        return f"scored --in-process (not isolated); {rescore}"
    task = tasks.get(run.task)
    if task is None:
        return f"the task {run.task} no longer exists"
    if task.content_hash() != record.task.hash:
        return f"the task file changed since this run (task hash {record.task.hash[:12]}, now " \
               f"{task.content_hash()[:12]}); {rescore}"
    try:
        read_sidecar(run.path, record)
    except UserError as exc:
        return str(exc)
    if target.exists() and not force:
        old = submission_of(target)
        if old is None:
            return f"the board's {target} is not a readable record; pass --force to replace it"
        if old.authors != list(meta.authors):
            return (f"the board's record was made by authors {old.authors}, not {list(meta.authors)}; pick another "
                    "submission name, or pass --force to replace it")
        if old.content_hash != record.submission.content_hash:
            return (f"the board's record was made from a different version (hash {old.content_hash[:12]}); pass "
                    "--force to replace it")
    return None


def install(plan: Publication) -> Path:
    """Copy the run and its sidecar onto the board: the sidecar first, each written whole under a temporary name and
    renamed, so a reader never sees a record without its sidecar; then the board's older sidecars of it go."""
    record = Record.from_dict(json.loads(plan.run.read_text()), str(plan.run))
    if record.sidecar is None:
        raise UserError(f"{plan.run} names no per-example file; score it again.")
    sidecar = plan.run.parent / record.sidecar.file
    plan.target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(plan.target.parent / sidecar.name, sidecar.read_bytes())
    atomic_write_bytes(plan.target, plan.run.read_bytes())
    for old in own_sidecars(plan.target):
        if old.name != sidecar.name:
            old.unlink(missing_ok=True)
    return plan.target


def publish(folder: Path, runs_dir: Path, board_dir: Path, task_glob: str | None = None,
            force: bool = False) -> list[Path]:
    """Copy the folder's runs onto the board, all or nothing: a refused run raises `PublishRefused`, naming each."""
    plans = plan_publish(folder, runs_dir, board_dir, task_glob, force)
    refused = [p for p in plans if p.refusal is not None]
    if refused:
        raise PublishRefused(refused, len(plans))
    return [install(p) for p in plans]


class PublishRefused(UserError):
    """Some runs may not go onto the board; nothing was published."""

    def __init__(self, refused: list[Publication], total: int):
        self.refused = refused
        lines = [f"{p.task}: {p.refusal}" for p in refused]
        super().__init__(f"nothing published: {len(refused)} of {total} run(s) refused ({'; '.join(lines)}).")
