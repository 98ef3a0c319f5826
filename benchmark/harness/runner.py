"""A scoring run's options, and its record assembled from a finished scoring (`session.py` runs the scoring)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__, stats
from ..record.migrate import SCHEMA_VERSION
from ..record.provenance import environment, git_commit
from ..record.typed import (
    Bits,
    Complexity,
    Efficiency,
    Isolation,
    Provenance,
    Record,
    Results,
    SubmissionInfo,
    TaskInfo,
)
from ..tasks import Task
from .context import TaskContext
from .description import BITS_PER_FITTED, CONVENTION_VERSION
from .efficiency import original_macs, original_seconds_per_example
from .fan_in import target_fan_in
from .scoring import ScoreResult
from .submissions import Snapshot


@dataclass
class RunOptions:
    device: str | None = None
    data_dir: str | None = None
    imagenet_dir: str | None = None
    eval_size: int | None = None
    fit_size: int | None = None
    progress: bool = False
    use_cache: bool = True
    isolate: bool = True  # False: --in-process (debugging; the record says it was not isolated)
    time_limit: float | None = None  # seconds per child; None: the task family's default
    memory_limit: str | None = None  # e.g. "8G"; None: the task family's default
    force: bool = False  # overwrite a record made from a different submission hash or authors
    # the held-out split's secret (`heldout.py`), read by this process from a file; never printed, never in a record
    heldout_secret: bytes | None = field(default=None, repr=False)
    execution: dict[str, Any] | None = None  # how the job ran (provenance.execution); None: {"mode": "serial"}

    @property
    def split(self) -> str:
        return "public" if self.heldout_secret is None else "held-out"


def complexity(snapshot: Snapshot, fitted: int, fan_in: int) -> Complexity:
    """The record's complexity figures: description length in bits (`description.py`) and the copy test
    (stored bits ≥ 8 bits per target weight)."""
    d = snapshot.description
    return Complexity(
        convention=CONVENTION_VERSION,
        description_bits=d.total_bits(fitted),
        bits=Bits(code=d.code_bits, names=d.name_bits, literals=d.literal_bits, data=d.data_bits,
                  fitted=BITS_PER_FITTED * fitted),
        code_tokens=d.code_tokens,
        fitted_parameters=fitted,
        literal_numbers=d.literal_numbers,
        data_bytes=d.data_bytes + d.path_bytes,
        stored_numbers=None,
        stored_bits=d.stored_bits(fitted),
        target_fan_in=fan_in,
        copy=d.is_copy(fitted, fan_in),
        source_bytes_xz=snapshot.description_bytes_xz,
    )


def assemble_record(task: Task, snapshot: Snapshot, ctx: TaskContext, options: RunOptions, result: ScoreResult,
                    isolation: dict[str, Any], baseline_from_cache: bool, seconds: dict[str, float],
                    started: float) -> Record:
    """The typed result record of a finished scoring (one process, or the shards of one, joined); its JSON
    (`Record.to_dict`) is the record file, key for key in the order of the `typed.py` parts' fields."""
    fan_in = target_fan_in(ctx.model, task.layer, task.units, ctx.input_shapes)
    n_eval = len(ctx.eval_indices)
    efficiency = Efficiency(
        original_macs_per_example=original_macs(ctx.model, task.layer, task.units, ctx.input_shapes),
        original_seconds_per_example=original_seconds_per_example(ctx.model, task.layer, task.units,
                                                                  ctx.input_shapes, ctx.device),
        replace_seconds_per_example=result.seconds["replace_calls"] / n_eval,
    )
    submission_hash, task_hash = snapshot.content_hash, task.content_hash()
    meta = snapshot.meta
    task_info = TaskInfo(
        id=task.id, version=task.version, hash=task_hash, model=task.model, layer=task.layer, units=list(task.units),
        inputs=list(task.inputs), primary_ablation=task.ablation, dataset=task.dataset, eval_split=task.eval_split,
        n_eval=int(n_eval), n_fit=int(len(ctx.fit_indices)), topk=list(task.topk),
        standard_protocol=ctx.standard_protocol, overrides=ctx.overrides, protocol=task.protocol,
    )
    submission = SubmissionInfo(name=meta.name, kind=meta.kind, authors=list(meta.authors),
                                description=meta.description, content_hash=submission_hash)
    figures = complexity(snapshot, result.fitted_parameters, fan_in)
    git = git_commit()
    provenance = Provenance(
        package_version=__version__,
        git_commit=git["commit"],
        git_dirty=git["dirty"],
        task_hash=task_hash,
        checkpoint_sha256=ctx.checkpoint_sha256,
        data_hash=ctx.data_hash,
        submission_hash=submission_hash,
        **environment(),
        device=str(ctx.device),
        intervals=stats.INTERVALS,
        n_examples=int(n_eval),
        baseline_from_cache=baseline_from_cache,
        heldout_transform=ctx.eval_set.transform.to_dict() if ctx.heldout_commitment else None,
        execution=options.execution or {"mode": "serial"},
        seconds={"total": time.perf_counter() - started, **seconds, **result.seconds},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return Record(
        schema_version=SCHEMA_VERSION, split=options.split, heldout_commitment=ctx.heldout_commitment, task=task_info,
        submission=submission, complexity=figures, isolation=Isolation.from_dict(isolation), efficiency=efficiency,
        results=Results.from_dict(result.figures), provenance=provenance,
    )
