"""One scoring session: one submission on one task, from its declared parameters to its record.

Every path that runs a submission's code goes through `ScoringSession` (a context manager): `score`, `verify`,
`diagnose`, `stimuli`, the Python API and the cluster's jobs. It owns, in this order:

1. entering: a held-out secret refused `--in-process`; the parameters the source declares, read statically
   against the task (`submissions.check_signatures`, before any model loads); the sandbox's limits
   (`limits_for`, the options' `--time-limit`/`--memory-limit` over the dataset's defaults); the room
   (`sandbox.room.IsolatedSubmission`, the one place the harness builds one), whose zygote starts importing
   torch now, so that its start-up overlaps loading the model and the baseline;
2. `prepare()`: the task's `TaskContext` from the options (device, data, sizes, held-out secret); a cluster
   shard's piece of the eval set (`eval_range`);
3. `load_baseline()`: the clean and ablated results (`baseline.load_or_compute`), timed;
4. `load()`, `fit()`, `start_replace(params)`, `replaced_pass(...)`: the submission's code, imported only now
   that the baseline exists; or `score()`, the four of them and the statistics (`scoring.score`);
5. `record(result)`: the record, by `runner.assemble_record` (its content is that function's, unchanged).

Leaving the session ends every child. A session that is never entered has no room: the driver of a sharded
cluster run uses one for the context and the record, while its fit and shard jobs hold the rooms.

Where each of the six places that assembled scoring went (issue 16):

- `runner.compute_record` (score, the API, verify, a cluster job) → `compute_record` here: a session's
  `prepare`, `load_baseline`, `score`, `record`; `runner.run_score`'s overwrite check and record writing moved
  to its one caller that writes, `api.score_snapshot`, and `verify` calls `compute_record`;
- `scoring.score_folder` (tests: several submissions on one prepared task) → `score_folder` here: a session
  given the context and the baseline, then `score`;
- `cluster.fit_job` → a session's `prepare`, `load`, `fit`;
- `cluster.shard_job` → a session's `prepare(eval_range=…)`, `load_baseline`, `load`, `start_replace`,
  `replaced_pass(fidelity=…)`; the driver's `_sharded`/`_join` → an unentered session's `prepare` and `record`;
- `analysis.diagnosis.diagnose` → a session's `prepare`, `load_baseline`, `load`, `fit`, `start_replace`,
  `replaced_pass(on_batch=…)`;
- `cli.cmd_stimuli` → a session's `load`, and with a fit step and `--imagenet`, `prepare` and `fit`; its room
  goes to `stimulus_report`.

`api.score` and `cli.cmd_score` share the run's checks before torch or any model loads (`preflight.check_run`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

import numpy as np

from .. import stats
from ..errors import UserError
from ..sandbox.limits import limits_for
from ..sandbox.process import Limits
from ..sandbox.room import IsolatedSubmission
from ..tasks import Task
from .baseline import Baseline, load_or_compute
from .context import TaskContext, prepare
from .passes import Batch
from .runner import RunOptions, assemble_record
from .scoring import ScoreResult, fit_submission, replaced_pass, score
from .submissions import Snapshot, check_signatures, take_snapshot


class ScoringSession:
    """The submission `snapshot` on `task` under `options`; `with ScoringSession(…) as session:` holds its room.

    `limits`: the room's limits (None: from the options and the task's dataset). `ctx`, `baseline`: a context
    and a baseline already made (several submissions scored on one prepared task). `started`: when the run
    began, for the record's total seconds (None: now).
    """

    def __init__(self, task: Task, snapshot: Snapshot, options: RunOptions, *, limits: Limits | None = None,
                 ctx: TaskContext | None = None, baseline: Baseline | None = None, started: float | None = None):
        self.started = time.perf_counter() if started is None else started
        self.task, self.snapshot, self.options = task, snapshot, options
        self.limits = limits
        self.ctx, self.baseline = ctx, baseline
        self._room: IsolatedSubmission | None = None
        self.seconds: dict[str, float] = {}  # baseline; load and fit where run step by step

    def __enter__(self) -> ScoringSession:
        if self.options.heldout_secret is not None and not self.options.isolate:
            raise UserError("--held-out-secret cannot be combined with --in-process: the submission would run in the "
                            "process that holds the secret.")
        check_signatures(self.snapshot, self.task)  # the parameters its source declares, before the model loads
        if self.limits is None:
            self.limits = limits_for(self.task.dataset, self.options.time_limit, self.options.memory_limit)
        self._room = IsolatedSubmission(self.snapshot, self.limits, isolate=self.options.isolate)
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._room is not None:
            self._room.close()

    @property
    def room(self) -> IsolatedSubmission:
        """The submission's room (`sandbox.room`), made on entering the session; its children end on leaving it."""
        if self._room is None:
            raise RuntimeError("the session has no room: use it as `with ScoringSession(...) as session:`")
        return self._room

    def _context(self) -> TaskContext:
        if self.ctx is None:
            raise RuntimeError("the session has no context yet: call prepare() first")
        return self.ctx

    # -- the task ----------------------------------------------------------------------------------------------
    def prepare(self, *, eval_range: tuple[int, int] | None = None) -> TaskContext:
        """The task's model and data, its eval and fit sets (`context.prepare`, with the options' device, data
        folders, sizes and held-out secret).

        `eval_range` (start, stop): only eval positions [start, stop) of the whole eval set, a cluster shard. Its
        resample partners are its slice of the whole set's draw, and its baseline its own cache entry (the data
        hash names the piece), never mistaken for (or overwriting) the whole eval set's."""
        o = self.options
        ctx = prepare(self.task, device=o.device, data_dir=o.data_dir, imagenet_dir=o.imagenet_dir,
                      eval_size=o.eval_size, fit_size=o.fit_size, heldout_secret=o.heldout_secret)
        if eval_range is not None:
            start, stop = eval_range
            total = len(ctx.eval_indices)
            ctx.eval_offset, ctx.eval_total = start, total
            ctx.eval_indices = ctx.eval_indices[start:stop]
            ctx.data_hash = hashlib.sha256(f"{ctx.data_hash} shard {start}:{stop} of {total}".encode()).hexdigest()
        self.ctx = ctx
        return ctx

    def load_baseline(self) -> Baseline:
        """The clean and ablated results on the eval set: from the cache, or computed (and cached); timed."""
        began = time.perf_counter()
        self.baseline = load_or_compute(self._context(), progress=self.options.progress,
                                        use_cache=self.options.use_cache)
        self.seconds["baseline"] = time.perf_counter() - began
        return self.baseline

    # -- the submission, step by step ----------------------------------------------------------------------------
    def load(self) -> None:
        """Import the submission's code in its children and check its signatures against the task; timed."""
        began = time.perf_counter()
        self.room.load(self.task)
        self.seconds["load"] = time.perf_counter() - began

    def fit(self) -> dict[str, np.ndarray] | None:
        """Its fit step on the fit set (only); the validated params, or None without a fit step; timed."""
        began = time.perf_counter()
        params = fit_submission(self._context(), self.room, self.options.progress)
        self.seconds["fit"] = time.perf_counter() - began
        return params

    def start_replace(self, params: dict[str, np.ndarray] | None) -> None:
        """Hand its replace child the task view and `params`. A fit child still open (its fit ran elsewhere: a
        cluster shard) ends unused."""
        room = self.room
        room.close_fit_child()
        room.start_replace(self._context().view(), params)

    def replaced_pass(self, *, fidelity: stats.FidelityAccumulator | None = None,
                      on_batch: Callable[[Batch, np.ndarray], None] | None = None,
                      ) -> tuple[dict[str, np.ndarray], list[stats.UnitFidelity], float]:
        """The eval pass with the replacement spliced in (`scoring.replaced_pass`): per-example outputs, activation
        fidelity, and the seconds spent in its `replace` calls."""
        if self.baseline is None:
            raise RuntimeError("the session has no baseline yet: call load_baseline() first")
        return replaced_pass(self._context(), self.room, self.baseline, self.options.progress,
                             fidelity=fidelity, on_batch=on_batch)

    # -- the whole of it ---------------------------------------------------------------------------------------
    def score(self) -> ScoreResult:
        """Load the code (the baseline already exists), fit it, run the replaced pass, and compute every statistic
        (`scoring.score`, which times each step)."""
        if self.baseline is None:
            raise RuntimeError("the session has no baseline yet: call load_baseline() first")
        return score(self._context(), self.room, self.baseline, progress=self.options.progress)

    def record(self, result: ScoreResult, *, isolation: dict[str, Any] | None = None,
               baseline_from_cache: bool | None = None, seconds: dict[str, float] | None = None,
               execution: dict[str, Any] | None = None) -> dict[str, Any]:
        """The record (`runner.assemble_record`) of `result`. The keywords stand in for what a sharded run's
        driver, which holds no room and no baseline, gets from its shards: how they ran, whether every baseline
        came from the cache, their timings, and `execution` for the options' `provenance.execution`."""
        if isolation is None:
            isolation = self.room.isolation
        if baseline_from_cache is None:
            assert self.baseline is not None
            baseline_from_cache = self.baseline.from_cache
        options = self.options if execution is None else replace(self.options, execution=execution)
        return assemble_record(self.task, self.snapshot, self._context(), options, result, isolation,
                               baseline_from_cache, {"baseline": self.seconds["baseline"]} if seconds is None else seconds,
                               self.started)


def compute_record(task: Task, snapshot: Snapshot, options: RunOptions
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score the submission `snapshot` on `task`: the record (without its `sidecar` entry), its per-example arrays
    (the sidecar) and the logit scale of each condition (`ScoreResult.scales`, for `verify`; not stored).

    The children start first (their start-up overlaps loading the model and the baseline), but the submission's
    code is imported only once the baseline exists.
    """
    with ScoringSession(task, snapshot, options) as session:
        session.prepare()
        session.load_baseline()
        result = session.score()
    return session.record(result), result.arrays, result.scales


def score_folder(ctx: TaskContext, baseline: Baseline, name_or_path: str, *, isolate: bool = True,
                 limits: Limits | None = None, progress: bool = False) -> ScoreResult:
    """Snapshot a submission folder and score it in its own room (isolated unless `isolate=False`) on a task already
    prepared, with its baseline (limits: the dataset's defaults unless given)."""
    with take_snapshot(name_or_path) as snapshot:
        options = RunOptions(progress=progress, isolate=isolate)
        with ScoringSession(ctx.task, snapshot, options, limits=limits, ctx=ctx, baseline=baseline) as session:
            return session.score()


__all__ = ["ScoringSession", "compute_record", "score_folder"]
