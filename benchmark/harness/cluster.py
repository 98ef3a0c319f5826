"""Scoring on a Ray cluster (`score … --cluster ADDRESS|local`, `verify --all --cluster …`).

Ray is an optional extra (`pip install -e '.[cluster]'`) and imported only here, only when `--cluster` is given.

- **Jobs.** Each (submission, task) is one Ray task asking for `--cpus-per-job` CPUs (and one GPU with
  `--device cuda`). The worker re-creates the submission folder from the bytes the driver hashed, snapshots
  it (the hash must match), and scores it exactly as a serial run does (`session.compute_record`): in the
  sandbox, its children forked from that worker process's own zygote. It returns the record and its
  per-example arrays; the driver alone writes records (`record.io.write_record`), so a worker never touches the
  results folder. The record differs from a serial run's only in `provenance.execution`
  ({"mode": "ray", …} instead of {"mode": "serial"}) and in its timings.
- **Shards** (`--shards K`). One task's eval set is cut into K contiguous pieces on batch boundaries. A fit
  job runs the submission's `fit` once, on the whole fit set; then each shard job computes the baseline
  (clean and ablations) and the replaced pass for its piece, with those params. The driver concatenates the
  per-example arrays in eval order, replays the shards' per-batch fidelity sums in order, and computes every
  statistic once: the same batches in the same order give the unsharded numbers.
- **Failures.** A worker that dies (killed, out of memory, node lost) is retried `--retries` times by Ray,
  then the job is reported as failed and writes no record. A submission's own failure is not retried. A job
  that runs past its wall limit (`--job-time-limit`; default: twice the sandbox's per-child limit plus ten
  minutes) is cancelled. Ctrl-C cancels every job.
- **Requirements.** Every node runs the same commit of this package (checked: a record whose git commit
  differs from the driver's is refused), and sees the data and the cache (`$REPLACEBENCH_DATA`,
  `$REPLACEBENCH_CACHE`, `--imagenet`) at the same paths; the driver passes its `REPLACEBENCH_*` and
  thread settings to the workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SubmissionError, UserError
from ..record.typed import Record

RAY_REQUIREMENT = "ray==2.60.0"
ENV_PREFIXES = ("REPLACEBENCH_", "OMP_", "MKL_", "OPENBLAS_")
WALL_MARGIN_S = 600.0


def import_ray() -> Any:
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--cluster needs Ray, an optional extra: pip install -e '.[cluster]' ({RAY_REQUIREMENT}).") from None
    return ray


@dataclass(frozen=True)
class ClusterOptions:
    address: str  # "local" (start Ray on this machine) or a Ray address ("auto", "ray://host:10001", "host:6379")
    workers: int | None = None  # local: how many CPUs Ray may use (default: this machine's count)
    shards: int = 1  # pieces of each task's eval set
    cpus_per_job: float = 1.0
    job_time_limit: float | None = None  # wall seconds per job, on the driver; None: from the sandbox limits
    retries: int = 2  # retries of a job whose worker died

    def check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers {self.workers} must be at least 1.")
        if self.shards < 1:
            raise UserError(f"--shards {self.shards} must be at least 1.")
        if not self.cpus_per_job > 0:
            raise UserError(f"--cpus-per-job {self.cpus_per_job} must be positive.")
        if self.job_time_limit is not None and not self.job_time_limit > 0:
            raise UserError(f"--job-time-limit {self.job_time_limit} must be a positive number of seconds.")
        if self.retries < 0:
            raise UserError(f"--retries {self.retries} must be 0 or more.")
        if self.workers is not None and self.address != "local":
            raise UserError("--workers is for --cluster local; a running cluster has the workers it has.")


@dataclass
class Outcome:
    """One job's end: a record (and where it was written), or why there is none."""

    label: str
    record: Record | None = None
    path: Path | None = None
    error: str | None = None
    traceback: str | None = None
    problems: list[str] | None = None  # verify: what the re-score found


# -- the worker's side ---------------------------------------------------------------------------------------------
def _with_snapshot(files: dict[str, bytes], folder_name: str, expected_hash: str, work: Callable[[Any], Any]) -> Any:
    """Re-create the submission folder from the driver's bytes, snapshot it (same hash), run `work(snapshot)`."""
    from .submissions import take_snapshot

    scratch = Path(tempfile.mkdtemp(prefix="replacebench-job-"))
    try:
        source = scratch / folder_name
        for rel, data in files.items():
            path = source / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        snapshot = take_snapshot(str(source))
        try:
            if snapshot.content_hash != expected_hash:
                raise UserError(f"submission '{folder_name}' arrived with hash {snapshot.content_hash[:12]}, "
                                f"not {expected_hash[:12]}")
            return work(snapshot)
        finally:
            snapshot.cleanup()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _guarded(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A job's answer: its value, or the submission's or the user's error as data (such errors are not retried)."""
    from ..record.provenance import git_commit

    try:
        return {"ok": True, "git_commit": git_commit()["commit"], **work()}
    except SubmissionError as exc:
        return {"ok": False, "error": str(exc), "traceback": exc.traceback_text}
    except UserError as exc:
        return {"ok": False, "error": str(exc), "traceback": None}


def _worker_options(options: Any) -> Any:
    # Ray shows a worker the GPUs it was given as cuda:0…; progress bars would interleave
    device = "cuda" if (options.device or "").startswith("cuda") else options.device
    return replace(options, device=device, progress=False)


def score_job(task_id: str, files: dict[str, bytes], folder_name: str, expected_hash: str, options: Any) -> dict[str, Any]:
    """A Ray task: score one submission on one task; the record, its per-example arrays and logit scales (nothing
    written)."""
    from ..tasks import get_task
    from .session import compute_record

    def work() -> dict[str, Any]:
        record, arrays, scales = _with_snapshot(
            files, folder_name, expected_hash,
            lambda snapshot: compute_record(get_task(task_id), snapshot, _worker_options(options)))
        return {"record": record, "arrays": arrays, "scales": scales}

    return _guarded(work)


def fit_job(task_id: str, files: dict[str, bytes], folder_name: str, expected_hash: str, options: Any) -> dict[str, Any]:
    """A Ray task: the submission's fit on the whole fit set, once for all shards; its params (None: no fit step)."""
    from ..tasks import get_task
    from .session import ScoringSession

    def fit(snapshot: Any) -> dict[str, Any]:
        with ScoringSession(get_task(task_id), snapshot, _worker_options(options)) as session:
            session.prepare()
            session.load()
            params = session.fit()
            return {"params": params, "seconds": {"load": session.seconds["load"], "fit": session.seconds["fit"]}}

    return _guarded(lambda: _with_snapshot(files, folder_name, expected_hash, fit))


class RecordingFidelity:
    """A stand-in for `stats.FidelityAccumulator` that keeps each batch's sums, for the driver to replay in order."""

    def __init__(self, n_units: int) -> None:
        from ..stats import FidelityAccumulator

        self._reducer = FidelityAccumulator(n_units)
        self.summaries: list[tuple[Any, ...]] = []

    def update(self, original: Any, replaced: Any) -> None:
        summary = self._reducer.batch_summary(original, replaced)
        if summary is not None:
            self.summaries.append(summary)

    def result(self) -> list[Any]:
        return []


def shard_job(task_id: str, files: dict[str, bytes], folder_name: str, expected_hash: str, options: Any,
              params: dict[str, np.ndarray] | None, start: int, stop: int) -> dict[str, Any]:
    """A Ray task: baseline and replaced pass on eval positions [start, stop), with the params of the one fit."""
    from ..tasks import get_task
    from .session import ScoringSession

    def work(snapshot: Any) -> dict[str, Any]:
        task = get_task(task_id)
        seconds: dict[str, float] = {}
        with ScoringSession(task, snapshot, _worker_options(options)) as session:
            session.prepare(eval_range=(start, stop))
            baseline = session.load_baseline()
            seconds["baseline"] = session.seconds["baseline"]
            began = time.perf_counter()
            session.load()
            session.start_replace(params)  # the fit ran once, in its own job: its child here ends unused
            seconds["load"] = time.perf_counter() - began
            fidelity = RecordingFidelity(len(task.units))
            began = time.perf_counter()
            replaced, _, seconds["replace_calls"] = session.replaced_pass(fidelity=fidelity)  # type: ignore[arg-type]
            seconds["replaced_pass"] = time.perf_counter() - began
            isolation = session.room.isolation
        kept = {k: v for k, v in baseline.arrays.items()
                if k.startswith(("loss.", "kl.", "top", "scale."))}  # not logp_clean [n, classes]: only the shard needs it
        return {"baseline": kept, "from_cache": baseline.from_cache, "replaced": replaced,
                "fidelity": fidelity.summaries, "seconds": seconds, "isolation": isolation}

    return _guarded(lambda: _with_snapshot(files, folder_name, expected_hash, work))


# -- the driver's side ---------------------------------------------------------------------------------------------
def serial_threads() -> int:
    """The torch thread count of a serial run here (torch's default, or $OMP_NUM_THREADS)."""
    import torch

    return torch.get_num_threads()


class Cluster:
    """A connection to Ray for one command: `with Cluster(options) as cluster: …` (shuts Ray down after)."""

    def __init__(self, options: ClusterOptions) -> None:
        options.check()
        self.options = options
        self.ray = import_ray()
        self.slots = 1
        self.commit: str | None = None

    def __enter__(self) -> Cluster:
        import logging

        ray, o = self.ray, self.options
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # Ray would give each worker one thread per CPU it asked for; a different thread count changes float sums
        # (a least-squares fit, a matrix product) in their last bits. Workers use the thread count a serial run on
        # this machine uses, so their records equal its records; set OMP_NUM_THREADS to choose another.
        env.setdefault("OMP_NUM_THREADS", str(serial_threads()))
        runtime_env = {"env_vars": env}
        common = dict(runtime_env=runtime_env, logging_level=logging.ERROR, configure_logging=True)
        try:
            if o.address == "local":
                ray.init(num_cpus=o.workers or os.cpu_count() or 1, include_dashboard=False, **common)
            else:
                ray.init(address=o.address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot reach the Ray cluster at '{o.address}' ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
        from ..record.provenance import git_commit

        self.commit = git_commit()["commit"]  # what every worker must run (checked on each answer)
        resources = ray.cluster_resources()
        self.cpus = int(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))
        self.slots = max(1, int(self.cpus // o.cpus_per_job))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.ray.shutdown()

    def execution(self, shard: dict[str, int] | None = None) -> dict[str, Any]:
        """What a record says about how it was made."""
        return {"mode": "ray", "address": self.options.address, "workers": self.slots, "shard": shard}

    def remote(self, function: Callable[..., Any], device: str | None) -> Any:
        gpus = 1 if (device or "").startswith("cuda") else 0
        if gpus and self.gpus < 1:
            raise UserError("--device cuda asked for, but the Ray cluster has no GPU.")
        if gpus:
            self.slots = min(self.slots, self.gpus)
        return self.ray.remote(function).options(num_cpus=self.options.cpus_per_job, num_gpus=gpus,
                                                 max_retries=self.options.retries, retry_exceptions=False)

    def drain(self, jobs: list[tuple[Any, Callable[[], Any], float]]) -> Iterator[tuple[Any, Any, str | None]]:
        """Run `(key, submit, wall_limit)` jobs, at most `slots` at a time; yield `(key, value, error)` as each ends.

        A job's wall clock starts when it is submitted (no more are submitted than can run). One past its limit is
        cancelled (its worker killed, and with it the sandbox's zygote and children). Ctrl-C, or the caller
        stopping, cancels every job still running.
        """
        ray = self.ray
        queue = list(jobs)
        running: dict[Any, tuple[Any, float, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.slots:
                    key, submit, limit = queue.pop(0)
                    running[submit()] = (key, time.monotonic() + limit, limit)
                timeout = max(0.0, min(deadline for _, deadline, _ in running.values()) - time.monotonic())
                ready, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
                for ref in ready:
                    key, _, _ = running.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        yield key, None, _describe(exc, self.options.retries)
                        continue
                    yield key, value, None
                now = time.monotonic()
                for ref, (key, deadline, limit) in list(running.items()):
                    if now >= deadline:
                        ray.cancel(ref, force=True)
                        del running[ref]
                        yield key, None, f"ran past its wall limit of {limit:g} s (--job-time-limit); cancelled"
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise


def _describe(exc: BaseException, retries: int) -> str:
    ray = import_ray()
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)) or \
            "worker died" in str(exc).lower() or "died unexpectedly" in str(exc).lower():
        return f"its worker died ({retries} retries used): {first}"
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return "cancelled"
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        return f"the harness failed in the worker: {type(cause).__name__ if cause else ''} {cause or first}".strip()
    return f"{type(exc).__name__}: {first}"


def _wall_limit(cluster: Cluster, task: Any, options: Any) -> float:
    if cluster.options.job_time_limit is not None:
        return cluster.options.job_time_limit
    from ..sandbox.limits import limits_for

    return 2 * limits_for(task.dataset, options.time_limit, options.memory_limit).time_s + WALL_MARGIN_S


def _check_commit(answer: dict[str, Any], mine: str | None) -> str | None:
    if answer.get("git_commit") != mine:
        return (f"the worker runs commit {str(answer.get('git_commit'))[:12]}, the driver {str(mine)[:12]}: "
                "install the same commit on every node")
    return None


def score_on_cluster(cluster: Cluster, tasks: list[Any], snapshot: Any, options: Any,
                     results_dir: Path | None) -> Iterator[Outcome]:
    """Score `snapshot` on every task as Ray jobs (each task cut into `shards` pieces when asked); write each record
    from here as it arrives; yield one Outcome per task."""
    from ..record.io import check_overwrite, write_record
    from .submissions import read_folder

    files = read_folder(snapshot.source)
    shared = (files, snapshot.source.name, snapshot.content_hash)
    if results_dir is not None and not options.force:
        for task in tasks:
            check_overwrite(results_dir, task.slug(), snapshot)
    if cluster.options.shards > 1:
        yield from _sharded(cluster, tasks, snapshot, shared, options, results_dir)
        return
    job = cluster.remote(score_job, options.device)
    run = replace(options, execution=cluster.execution())
    jobs = [(task, (lambda t=task: job.remote(t.id, *shared, run)), _wall_limit(cluster, task, options)) for task in tasks]
    for task, answer, error in cluster.drain(jobs):
        label = f"{snapshot.name} on {task.id}"
        if error is None and not answer["ok"]:
            yield Outcome(label, error=answer["error"], traceback=answer["traceback"])
            continue
        error = error or _check_commit(answer, cluster.commit)
        if error is not None:
            yield Outcome(label, error=error)
            continue
        record, path = answer["record"], None
        if results_dir is not None:
            path, record = write_record(record, answer["arrays"], results_dir, task.slug(), snapshot.name)
        yield Outcome(label, record=record, path=path)


def shard_bounds(n: int, shards: int, batch_size: int) -> list[tuple[int, int]]:
    """`shards` contiguous pieces of range(n), each starting on a batch boundary (so every batch is the one an
    unsharded pass makes); fewer pieces when there are fewer batches."""
    batches = -(-n // batch_size)
    shards = max(1, min(shards, batches))
    cuts = [round(i * batches / shards) * batch_size for i in range(shards + 1)]
    return [(cuts[i], min(cuts[i + 1], n)) for i in range(shards) if cuts[i] < min(cuts[i + 1], n)]


def _sharded(cluster: Cluster, tasks: list[Any], snapshot: Any, shared: tuple[Any, ...], options: Any,
             results_dir: Path | None) -> Iterator[Outcome]:
    from .session import ScoringSession

    started = {task.id: time.perf_counter() for task in tasks}
    fit, shard = cluster.remote(fit_job, options.device), cluster.remote(shard_job, options.device)
    fits: dict[str, dict[str, Any]] = {}
    for task, answer, error in cluster.drain([(t, (lambda t=t: fit.remote(t.id, *shared, options)), _wall_limit(cluster, t, options))
                                              for t in tasks]):
        label = f"{snapshot.name} on {task.id}"
        error = error or (None if answer["ok"] else answer["error"]) or _check_commit(answer, cluster.commit)
        if error is not None:
            yield Outcome(label, error=f"fit: {error}", traceback=None if answer is None else answer.get("traceback"))
            continue
        fits[task.id] = answer
    drivers, bounds = {}, {}  # the driver's half of each task's session: its context and its record; no room
    jobs = []
    for task in tasks:
        if task.id not in fits:
            continue
        drivers[task.id] = ScoringSession(task, snapshot, options, started=started[task.id])
        ctx = drivers[task.id].prepare()
        bounds[task.id] = shard_bounds(len(ctx.eval_indices), cluster.options.shards, task.batch_size)
        params = fits[task.id]["params"]
        for i, (a, b) in enumerate(bounds[task.id]):
            jobs.append(((task, i), (lambda t=task, p=params, a=a, b=b: shard.remote(t.id, *shared, options, p, a, b)),
                         _wall_limit(cluster, task, options)))
    pieces: dict[str, dict[int, dict[str, Any]]] = {t.id: {} for t in tasks}
    failed: dict[str, str] = {}
    for (task, i), answer, error in cluster.drain(jobs):
        error = error or (None if answer["ok"] else answer["error"]) or _check_commit(answer, cluster.commit)
        if task.id in failed:
            continue
        if error is not None:
            failed[task.id] = error
            yield Outcome(f"{snapshot.name} on {task.id}", error=f"shard {i + 1} of {len(bounds[task.id])}: {error}",
                          traceback=None if answer is None else answer.get("traceback"))
            continue
        pieces[task.id][i] = answer
        if len(pieces[task.id]) == len(bounds[task.id]):
            yield _join(cluster, drivers[task.id], fits[task.id], pieces.pop(task.id), bounds[task.id], results_dir)


def _join(cluster: Cluster, driver: Any, fitted: dict[str, Any], pieces: dict[int, dict[str, Any]],
          bounds: list[tuple[int, int]], results_dir: Path | None) -> Outcome:
    """One record from a task's shards: arrays concatenated in eval order, fidelity replayed, statistics once;
    `driver`: the task's session on the driver (its context, no room)."""
    from ..record.io import write_record
    from ..stats import FidelityAccumulator
    from .baseline import Baseline
    from .scoring import ScoreResult, result_arrays, result_scales, summarize
    from .submissions import count_params

    task, snapshot, ctx = driver.task, driver.snapshot, driver.ctx
    ordered = [pieces[i] for i in range(len(bounds))]
    baseline = Baseline(arrays={k: np.concatenate([p["baseline"][k] for p in ordered]) for k in ordered[0]["baseline"]})
    baseline.arrays["eval_indices"] = ctx.eval_indices
    replaced = {k: np.concatenate([p["replaced"][k] for p in ordered]) for k in ordered[0]["replaced"]}
    fidelity = FidelityAccumulator(len(task.units))
    for piece in ordered:
        for summary in piece["fidelity"]:
            fidelity.merge(summary)
    began = time.perf_counter()
    figures = summarize(ctx, baseline, replaced, fidelity.result())
    seconds = {
        **fitted["seconds"],
        "replace_calls": sum(p["seconds"]["replace_calls"] for p in ordered),  # the submission's total cost
        "replaced_pass": max(p["seconds"]["replaced_pass"] for p in ordered),  # wall time, the shards in parallel
        "statistics": time.perf_counter() - began,
    }
    result = ScoreResult(figures=figures, arrays=result_arrays(ctx, baseline, replaced),
                         fitted_parameters=count_params(fitted["params"] or {}), seconds=seconds,
                         scales=result_scales(baseline, replaced))
    record = driver.record(result, isolation=ordered[0]["isolation"],
                           baseline_from_cache=all(p["from_cache"] for p in ordered),
                           seconds={"baseline": max(p["seconds"]["baseline"] for p in ordered)},
                           execution=cluster.execution({"count": len(bounds), "bounds": [list(b) for b in bounds]}))
    path = None
    if results_dir is not None:
        path, record = write_record(record, result.arrays, results_dir, task.slug(), snapshot.name)
    return Outcome(f"{snapshot.name} on {task.id}", record=record, path=path)


def verify_on_cluster(cluster: Cluster, paths: list[Path], options: Any,
                      rescore_plan: Callable[[Path, Any], Any],
                      check_rescore: Callable[[Any, Any, Any, Any], list[str]]) -> Iterator[tuple[Path, list[str]]]:
    """`verify`: the cheap checks here, each re-score as a Ray job; yields (record path, problems) as each ends.

    `rescore_plan` and `check_rescore` are `board.verify`'s (passed in: the harness does not import the board):
    `check_rescore(plan, fresh record, fresh per-example arrays, fresh logit scales)`.
    """
    from .submissions import read_folder

    job = cluster.remote(score_job, options.device)
    jobs, plans = [], {}
    for path in paths:
        plan = rescore_plan(path, options)
        if isinstance(plan, list):
            yield path, plan
            continue
        record, task, folder, run = plan[:4]
        try:
            files = read_folder(folder)
        except UserError as exc:
            yield path, [f"re-scoring failed: {exc}"]
            continue
        plans[path] = plan
        run = replace(run, execution=cluster.execution())
        jobs.append((path, (lambda t=task, f=files, n=folder.name, h=record.submission.content_hash, r=run:
                            job.remote(t.id, f, n, h, r)), _wall_limit(cluster, task, run)))
    for path, answer, error in cluster.drain(jobs):
        error = error or (None if answer["ok"] else answer["error"]) or _check_commit(answer, cluster.commit)
        if error is not None:
            yield path, [f"re-scoring failed: {error}"]
            continue
        yield path, check_rescore(plans[path], answer["record"], answer.get("arrays"), answer.get("scales"))


__all__ = ["Cluster", "ClusterOptions", "Outcome", "import_ray", "score_on_cluster", "shard_bounds",
           "verify_on_cluster"]
