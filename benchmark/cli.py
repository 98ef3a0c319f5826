"""The `replacebench` command line.

User mistakes print one line (`replacebench: error: …`) and exit 2. A
submission that raises shows its own traceback and exits 1. An interrupted run
exits 130 and leaves no record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, zoo
from .errors import StatisticsError, SubmissionError, UserError, print_submission_failure
from .record.report import format_score
from .untrusted import one_line as printable


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data directory (default: $REPLACEBENCH_DATA, else the user cache)")


def _scoring(parser: argparse.ArgumentParser, results: bool = True) -> None:
    parser.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N")
    parser.add_argument("--imagenet", default=os.environ.get("REPLACEBENCH_IMAGENET"),
                        help="ImageNet validation folder <wnid>/*.JPEG (default: $REPLACEBENCH_IMAGENET)")
    if results:
        parser.add_argument("--results-dir", type=Path, default=None,
                            help="where records go (default: the runs folder, $REPLACEBENCH_RUNS or runs/; "
                                 "`replacebench publish` puts them on the board)")


def _isolation(parser: argparse.ArgumentParser, in_process: bool = True) -> None:
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="wall seconds each of the submission's processes (fit, replace) may take, import included "
                             "(default per dataset: " + ", ".join(f"{d.name} {d.time_limit_s:g}" for d in zoo.DATASETS.values()) + ")")
    parser.add_argument("--memory-limit", default=None, metavar="SIZE",
                        help="memory each of the submission's processes may allocate, e.g. 8G "
                             "(default per dataset: " + ", ".join(f"{d.name} {d.memory_limit_gib}G" for d in zoo.DATASETS.values()) + ")")
    if in_process:
        parser.add_argument("--in-process", action="store_true",
                            help="run the submission in the harness's own process, for debugging: NOT isolated, "
                                 "and the record says so")


def _heldout(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--held-out-secret", type=Path, default=None, metavar="FILE",
                        help=f"{what} on the held-out split: eval images moved by transforms seeded by the secret in FILE "
                             "(read by the harness only; the record keeps only its commitment; README: Held-out split)")


def _cluster(parser: argparse.ArgumentParser, shards: bool = True) -> None:
    group = parser.add_argument_group("cluster (needs the optional extra: pip install -e '.[cluster]')")
    group.add_argument("--cluster", metavar="ADDRESS|local",
                       help="run each job as a Ray task: 'local' starts Ray on this machine, else a Ray address")
    group.add_argument("--workers", type=int, default=None, metavar="N", help="with --cluster local: CPUs Ray may use")
    if shards:
        group.add_argument("--shards", type=int, default=1, metavar="K",
                           help="split each task's eval set into K jobs (fit runs once; statistics once, on the driver)")
    group.add_argument("--cpus-per-job", type=float, default=1.0, metavar="N", help="CPUs each Ray job asks for (default 1)")
    group.add_argument("--job-time-limit", type=float, default=None, metavar="SECONDS",
                       help="wall seconds per Ray job before it is cancelled (default: 2 x --time-limit + 600)")
    group.add_argument("--retries", type=int, default=2, metavar="N", help="retries of a job whose worker died (default 2)")


def cluster_options(args: argparse.Namespace) -> Any:
    """The --cluster settings, or None for a serial run (where the cluster-only flags are a mistake)."""
    if args.cluster is None:
        given = [flag for flag, value, default in (("--workers", args.workers, None), ("--shards", getattr(args, "shards", 1), 1),
                                                   ("--cpus-per-job", args.cpus_per_job, 1.0),
                                                   ("--job-time-limit", args.job_time_limit, None), ("--retries", args.retries, 2))
                 if value != default]
        if given:
            raise UserError(f"{given[0]} is for cluster runs; add --cluster local (or a Ray address).")
        return None
    if getattr(args, "in_process", False):
        raise UserError("--in-process cannot be used with --cluster: every Ray job scores in isolation.")
    from .harness.cluster import ClusterOptions

    options = ClusterOptions(address=args.cluster, workers=args.workers, shards=getattr(args, "shards", 1),
                             cpus_per_job=args.cpus_per_job, job_time_limit=args.job_time_limit, retries=args.retries)
    options.check()
    return options


class _Explain(argparse.Action):
    """`score --explain`: print the report's legend and exit 0, before the required arguments are checked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from .record.report import LEGEND

        print(LEGEND, end="")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replacebench", description="Replace a neuron with your own account of it; measure the loss it recovers.")
    parser.add_argument("--version", action="version", version=f"replacebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("tasks", help="list tasks")
    p.add_argument("pattern", nargs="?", default="*", help="glob over task ids, e.g. 'mnist-cnn/*'")

    p = sub.add_parser("show", help="show one task, and the recovery difference its eval set can detect")
    p.add_argument("task")
    _common(p)
    p.add_argument("--imagenet", default=os.environ.get("REPLACEBENCH_IMAGENET"),
                   help="ImageNet validation folder <wnid>/*.JPEG (default: $REPLACEBENCH_IMAGENET)")

    p = sub.add_parser("score", help="score a submission on a task")
    p.add_argument("submission", help="a name under submissions/ or a path to a submission folder")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--task", help="task id or glob")
    target.add_argument("--all", action="store_true", help="every task the submission serves")
    p.add_argument("--json", action="store_true", help="print the record(s) as JSON")
    p.add_argument("--explain", action=_Explain, nargs=0, help="explain each line of the report, and exit")
    p.add_argument("--no-record", action="store_true", help="do not write a result record")
    p.add_argument("--no-cache", action="store_true", help="recompute clean/ablation results instead of using the cache")
    p.add_argument("--eval-size", type=int, help="override the task's eval size (marks the result non-standard)")
    p.add_argument("--fit-size", type=int, help="override the task's fit size (marks the result non-standard)")
    p.add_argument("--force", action="store_true",
                   help="with --results-dir: overwrite a record made from a different version or authors of this "
                        "submission (a run in the runs folder is always replaced)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first task that fails (default: score the rest, and list the failures at the end)")
    p.add_argument("--full", action="store_true",
                   help="with several tasks: the full report for each (default: one line each)")
    _heldout(p, "score")
    _common(p)
    _scoring(p)
    _isolation(p)
    _cluster(p)

    p = sub.add_parser("verify", help="re-score records in isolation and check every figure")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("records", nargs="*", default=[], type=Path, help="record files (.json) to verify")
    which.add_argument("--all", action="store_true", help="every record on the board (with --runs: in the runs folder)")
    p.add_argument("--runs", action="store_true", help="with --all: verify the runs folder's records instead of the board's")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="with --all: where the records are (default: the board, $REPLACEBENCH_BOARD or leaderboard/results)")
    _heldout(p, "also re-score held-out records")
    _common(p)
    _scoring(p, results=False)
    _isolation(p, in_process=False)
    _cluster(p, shards=False)

    p = sub.add_parser("publish", help="copy a submission's runs onto the board (leaderboard/results)")
    p.add_argument("submission", help="a name under submissions/ or a path to a submission folder")
    p.add_argument("--task", default=None, help="only the runs on tasks matching this id or glob (default: every run)")
    p.add_argument("--force", action="store_true",
                   help="replace a board record made from a different version or authors of this submission")
    p.add_argument("--board-dir", type=Path, default=None,
                   help="the board's records (default: $REPLACEBENCH_BOARD, else leaderboard/results)")

    p = sub.add_parser("runs", help="list the runs folder's records, or remove a submission's runs")
    p.add_argument("pattern", nargs="?", default=None, help="glob over task ids or submission names, e.g. 'mnist-mlp/*'")
    p.add_argument("--remove", metavar="SUBMISSION", default=None, help="delete this submission's runs")
    p.add_argument("--task", default=None, help="with --remove: only its runs on tasks matching this id or glob")

    p = sub.add_parser("compare", help="paired comparison of two submissions on a task")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--task", required=True)
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where both records are (default: each submission's run, else its record on the board)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("leaderboard", help="render leaderboard/README.md from the records")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="output file (default leaderboard/README.md; '-' for stdout)")
    p.add_argument("--html", type=Path, default=None, metavar="DIR",
                   help="write the static site (index, a page per task and per submission) into DIR instead")

    p = sub.add_parser("changed-submissions", help="the submission folders a pull request adds or changes (for the "
                                                   "public board's workflow)")
    p.add_argument("--base", required=True, help="the branch the pull request targets, e.g. origin/main")
    p.add_argument("--repo", type=Path, default=None,
                   help="the git checkout to look in (default: this project), e.g. the pull request's own checkout")

    p = sub.add_parser("schema", help="print the JSON schema of a result record (committed as leaderboard/record.schema.json)")
    p.add_argument("--out", type=Path, default=None, help="write it to this file instead of printing it")

    p = sub.add_parser("length", help="a submission's description length, before fitting (see README: Complexity)")
    p.add_argument("submission", help="a name under submissions/ or a path to a submission folder")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a reference model with the pinned recipe")
    p.add_argument("model", help=zoo.one_of(zoo.trainable()))
    p.add_argument("--out-dir", type=Path, default=None, help="where the checkpoint goes (default checkpoints/)")
    _common(p)

    p = sub.add_parser("fetch", help="download data or weights from their official sources")
    p.add_argument("what", help=zoo.one_of(list(zoo.fetchers())))
    p.add_argument("--url", default=None, help="override the source (a dataset's base URL; a model's weights URL)")
    p.add_argument("--labels-url", default=None, help="a model with a label map: override the label map's URL")
    _common(p)

    p = sub.add_parser("stimuli", help="a submission's orientation tuning and fidelity on synthetic curves")
    p.add_argument("submission")
    p.add_argument("--task", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--fit-size", type=int, help="override the task's fit size for the fit step")
    _common(p)
    _scoring(p, results=False)
    _isolation(p)

    p = sub.add_parser("inspect", help="a task's inputs and units on its fit set: statistics, top examples, maps")
    p.add_argument("task")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <cache>/inspect/<task-slug>)")
    p.add_argument("--json", action="store_true", help="print the statistics and the images' paths as JSON")
    p.add_argument("--top", type=int, default=16, help="how many top-activating fit examples to show per unit")
    p.add_argument("--fit-size", type=int, help="override the task's fit size")
    _common(p)
    _scoring(p, results=False)

    p = sub.add_parser("diagnose", help="where a submission diverges from the original units, run isolated as by score")
    p.add_argument("submission")
    p.add_argument("--task", required=True)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <cache>/diagnose/<task-slug>/<submission>)")
    p.add_argument("--json", action="store_true", help="print the statistics and the images' paths as JSON")
    p.add_argument("--top", type=int, default=16, help="how many most-divergent examples to show")
    p.add_argument("--eval-size", type=int, help="override the task's eval size")
    p.add_argument("--fit-size", type=int, help="override the task's fit size")
    _common(p)
    _scoring(p, results=False)
    _isolation(p)

    p = sub.add_parser("select", help="choose a task family's target units (regenerates its task file)")
    p.add_argument("model", metavar="FAMILY", help=f"a task family: {', '.join(zoo.selectable())}")
    p.add_argument("--write", action="store_true", help="write tasks/<FAMILY>.toml (default: print it)")
    p.add_argument("--imagenet", metavar="DIR", help="ImageNet validation images (inceptionv1-random checks liveness on them)")
    p.add_argument("--unchecked", action="store_true",
                   help="inceptionv1-random only: write the seeded draw without checking liveness (no weights needed)")
    _heldout(p, "confirm each target (default: a public secret, so anyone can regenerate the file)")
    _common(p)
    return parser


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import all_tasks, select_tasks

    tasks = select_tasks(args.pattern) if args.pattern != "*" else list(all_tasks().values())
    width = max(len(t.id) for t in tasks)
    print(f"{'task':<{width}}  {'ablation':<8}  {'eval':>6}  inputs")
    for t in tasks:
        print(f"{t.id:<{width}}  {t.ablation:<8}  {t.eval_size:>6}  {', '.join(t.inputs)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .tasks import get_task

    task = get_task(args.task)
    for key, value in task.__dict__.items():
        print(f"{key:>18}: {value}")
    print(f"{'hash':>18}: {task.content_hash()}")
    print(f"{'power':>18}: {power_line(task, args)}")
    return 0


def power_line(task: Any, args: argparse.Namespace) -> str:
    """The smallest recovery difference the task's eval set detects at 80% power, from its (cached) baseline."""
    from . import stats
    from .record.format import fmt_points
    from .harness.baseline import load_or_compute
    from .harness.context import prepare

    try:
        ctx = prepare(task, data_dir=args.data_dir, imagenet_dir=args.imagenet)
        baseline = load_or_compute(ctx)
    except UserError as exc:
        return f"unavailable here ({exc})"
    mde = stats.detectable_recovery_difference(baseline.loss("clean"), baseline.loss(task.ablation))
    if mde is None:
        return f"the {task.ablation} ablation does not raise the mean eval loss: no recovery to measure"
    return (f"recovery differences of {fmt_points(mde)} points are detected at 80% power (paired, α = 0.05, "
            f"n = {len(ctx.eval_indices)}; README: Statistics)")


def cmd_length(args: argparse.Namespace) -> int:
    from .harness.description import BITS_PER_DATA_BYTE, BITS_PER_TOKEN
    from .harness.submissions import take_snapshot

    snapshot = take_snapshot(args.submission)
    snapshot.cleanup()
    d = snapshot.description
    if args.json:
        print(json.dumps({"submission": snapshot.name, **d.as_dict(), "bits_without_fitted": d.total_bits(0)}, indent=2))
        return 0
    print(f"{snapshot.name}: {d.total_bits(0):,} bits before fitted numbers (each adds 32)")
    print(f"  code     {d.code_tokens:>7,} tokens       × {d.bits_per_token} = {d.code_bits:>9,} bits "
          f"(vocabulary {d.vocabulary:,}; {BITS_PER_TOKEN} bits a token up to 256)")
    print(f"  names    {d.name_bytes:>7,} bytes        × {BITS_PER_DATA_BYTE} = {d.name_bits:>9,} bits")
    print(f"  literals {d.literal_numbers:>7,} numbers      at 4 bits a digit = {d.literal_bits:>9,} bits")
    print(f"  data     {d.data_bytes + d.path_bytes:>7,} bytes        × {BITS_PER_DATA_BYTE} = {d.data_bits:>9,} bits "
          f"({d.path_bytes:,} of them paths)")
    print(f"  stored bits before fitting: {d.stored_bits(0):,} (all but the tokens)")
    return 0


def tasks_served(meta_tasks: tuple[str, ...]) -> list[Any]:
    from .api import tasks_served

    return tasks_served(meta_tasks)


def run_options(args: argparse.Namespace, **overrides: Any) -> Any:
    from .api import run_options as api_run_options

    values = dict(device=args.device, data_dir=args.data_dir, imagenet_dir=args.imagenet,
                  progress=progress_enabled(), time_limit=args.time_limit, memory_limit=args.memory_limit)
    if "isolate" in overrides:
        overrides["in_process"] = not overrides.pop("isolate")
    values.update(overrides)
    return api_run_options(**values)


def start_zygote(args: argparse.Namespace) -> None:
    """Start importing torch for the submission's children now, while this process loads everything else."""
    from .api import start_zygote

    start_zygote(getattr(args, "in_process", False))


def read_heldout_secret(args: argparse.Namespace) -> bytes | None:
    """The held-out secret's bytes from `--held-out-secret FILE` (None without it), read here, in the harness."""
    from .api import read_heldout_secret

    return read_heldout_secret(args.held_out_secret, getattr(args, "in_process", False))


def cmd_score(args: argparse.Namespace) -> int:
    secret = read_heldout_secret(args)  # before any child starts: a bad file is a one-line error
    cluster = cluster_options(args)
    if cluster is not None and secret is not None:
        raise UserError("--held-out-secret cannot be combined with --cluster: the secret stays in this process; "
                        "score the held-out split serially.")
    from . import paths
    from .harness.preflight import check_data_first, check_run
    from .harness.submissions import take_snapshot
    from .tasks import select_tasks

    with take_snapshot(args.submission) as snapshot:
        if args.all:
            tasks = tasks_served(snapshot.meta.tasks)
            if not tasks:
                raise UserError(f"submission '{snapshot.name}' serves no task (its 'tasks' patterns match none).")
            if args.imagenet is None:
                needs_images = [t for t in tasks if t.dataset == "imagenet"]
                tasks = [t for t in tasks if t.dataset != "imagenet"]
                if not tasks:
                    raise UserError(f"every task '{snapshot.name}' serves needs ImageNet images: pass --imagenet DIR.")
                if needs_images:
                    print(f"replacebench: skipping {len(needs_images)} ImageNet task(s); pass --imagenet DIR to score them.",
                          file=sys.stderr)
        else:
            tasks = select_tasks(args.task)
        check_run(tasks, snapshot, secret)  # held-out splits, one task's parameters: before torch loads
        if cluster is None:
            start_zygote(args)
        check_data_first(tasks, args.data_dir, args.imagenet)  # before the model loads
        # the runs folder is the researcher's own: a re-score replaces its run there, whatever changed
        to_runs = not args.no_record and args.results_dir is None
        options = run_options(args, eval_size=args.eval_size, fit_size=args.fit_size,
                              use_cache=not args.no_cache, isolate=not args.in_process, force=args.force or to_runs,
                              heldout_secret=secret)
        results_dir = None if args.no_record else (args.results_dir or paths.runs_dir())
        label = "run" if to_runs else "record"
        if cluster is not None:
            return score_on_cluster(args, cluster, tasks, snapshot, options, results_dir, label)
        outcomes, skipped = score_serially(args, tasks, snapshot, options, results_dir, label)
    return finish_run(args, snapshot.name, tasks, outcomes, skipped)


def score_serially(args: argparse.Namespace, tasks: list[Any], snapshot: Any, options: Any, results_dir: Path | None,
                   label: str) -> tuple[list[Any], list[str]]:
    """Score each task in turn; with several, a failing task is reported (once) and the rest still run, unless
    --fail-fast. One task fails as it always has: its error propagates. Returns the outcomes and the skipped ids."""
    from .api import score_snapshot
    from .board.summary import TaskOutcome, one_line

    outcomes: list[TaskOutcome] = []
    several = len(tasks) > 1
    for k, task in enumerate(tasks, 1):
        if several:
            print(f"[{k}/{len(tasks)}] {task.id}", file=sys.stderr, flush=True)
        try:
            typed, path = score_snapshot(task, snapshot, options, results_dir)
        except (SubmissionError, StatisticsError, UserError) as exc:
            if not several:
                raise
            report_failure(exc)
            outcomes.append(TaskOutcome(task.id, error=one_line(exc)))
            if args.fail_fast:
                return outcomes, [t.id for t in tasks[k:]]
            continue
        outcome = TaskOutcome(task.id, record=typed, path=path)
        outcomes.append(outcome)
        print_result(args, outcome, several, label)
    return outcomes, []


def report_failure(exc: BaseException) -> None:
    """A failed task's error as the CLI shows it when it ends a run: a submission's with its own traceback."""
    if isinstance(exc, SubmissionError):
        print_submission_failure(f"replacebench: {exc}", exc.traceback_text)
    else:
        print(printable(f"replacebench: error: {exc}"), file=sys.stderr)
    sys.stderr.flush()


def print_result(args: argparse.Namespace, outcome: Any, several: bool, label: str) -> None:
    """One task's result as it arrives: the full report (one task, or --full), else one compact line."""
    from .board.summary import compact_line, shown_path

    if args.json:
        return
    if several and not args.full:
        print(compact_line(outcome.record, outcome.path, label))
    else:
        print(format_score(outcome.record))
        if outcome.path is not None:
            print(f"  {label}: {shown_path(outcome.path)}")
    sys.stdout.flush()  # each task's figures as soon as they exist, to a pipe or a file too


def finish_run(args: argparse.Namespace, name: str, tasks: list[Any], outcomes: list[Any], skipped: list[str]) -> int:
    """The JSON list (--json), the closing table (several tasks; on stderr under --json), and the exit status."""
    from .board.summary import summary_table

    if args.json:
        # always a list, one per record, each exactly as written
        print(json.dumps([o.record.to_dict() for o in outcomes if not o.failed], indent=2))
    if len(tasks) > 1:
        order = {t.id: i for i, t in enumerate(tasks)}
        table = summary_table(name, sorted(outcomes, key=lambda o: order.get(o.task, len(order))), skipped)
        print(("" if args.json else "\n") + table, file=sys.stderr if args.json else sys.stdout)
    return 1 if any(o.failed for o in outcomes) or skipped else 0


def score_on_cluster(args: argparse.Namespace, options: Any, tasks: list[Any], snapshot: Any, run: Any,
                     results_dir: Path | None, label: str = "record") -> int:
    """`score --cluster`: every task as Ray jobs; records written here as they arrive; 1 if any job failed."""
    from .board.summary import TaskOutcome
    from .harness.cluster import Cluster
    from .harness.cluster import score_on_cluster as fan_out

    outcomes = []
    with Cluster(options) as cluster:
        for outcome in fan_out(cluster, tasks, snapshot, run, results_dir):
            if outcome.record is None:
                print_submission_failure(f"FAILED {outcome.label}: {outcome.error}", outcome.traceback)
                task_id = outcome.label.split(" on ", 1)[-1]
                outcomes.append(TaskOutcome(task_id, error=(outcome.error or "failed").splitlines()[0]))
                continue
            done = TaskOutcome(outcome.record.task.id, record=outcome.record, path=outcome.path)
            outcomes.append(done)
            print_result(args, done, len(tasks) > 1, label)
    failed = sum(o.failed for o in outcomes)
    if failed:
        print(f"replacebench: {failed} of {len(tasks)} job(s) failed; they wrote no record.", file=sys.stderr)
    return finish_run(args, snapshot.name, tasks, outcomes, [])


def cmd_verify(args: argparse.Namespace) -> int:
    secret = read_heldout_secret(args)
    cluster = cluster_options(args)
    if cluster is not None and secret is not None:
        raise UserError("--held-out-secret cannot be combined with --cluster: the secret stays in this process; "
                        "verify the held-out records serially.")
    from .board.verify import check_heldout_secrets, check_planned, guarded, rescore_plan, verify_record
    from .record.layout import default_results_dir, find_records

    if args.runs and (not args.all or args.results_dir is not None):
        raise UserError("--runs goes with --all (and without --results-dir): `replacebench verify --all --runs`.")
    from . import paths as where

    folder = where.runs_dir() if args.runs else (args.results_dir or default_results_dir())
    paths = find_records(folder) if args.all else list(args.records)
    if not paths:
        raise UserError(f"no records to verify in {folder}; score something first, or name record files (.json)."
                        if args.all else "no records to verify; name record files (.json).")
    needs_secret = check_heldout_secrets(paths, secret)  # a wrong secret is an error before anything runs
    failed = skipped = 0
    if cluster is not None:
        from .harness.cluster import Cluster, verify_on_cluster

        for path in [p for p in paths if p in needs_secret]:
            print(f"skip {path}: a held-out record; re-scoring it needs the board's secret, and serially")
        public = [p for p in paths if p not in needs_secret]
        with Cluster(cluster) as ray_cluster:
            for path, problems in verify_on_cluster(ray_cluster, public, run_options(args), guarded(rescore_plan),
                                                     guarded(check_planned)):
                failed += report_verified(path, problems)
        skipped = len(paths) - len(public)
        print(f"{len(public) - failed} verified, {failed} failed" + (f", {skipped} skipped (held-out)" if skipped else ""))
        return 1 if failed else 0
    start_zygote(args)
    for path in paths:
        if path in needs_secret:
            skipped += 1
            print(f"skip {path}: a held-out record; re-scoring it needs the board's secret "
                  f"(--held-out-secret FILE, commitment {needs_secret[path][:12]}…)")
            continue
        failed += report_verified(path, verify_record(path, run_options(args, heldout_secret=secret)))
    print(f"{len(paths) - failed - skipped} verified, {failed} failed" + (f", {skipped} skipped (held-out)" if skipped else ""))
    return 1 if failed else 0


def report_verified(path: Path, problems: list[str]) -> bool:
    """One record's `verify` result: `ok` or `FAIL`, then each problem (notes too); whether it failed."""
    from .board.verify import is_failure

    failed = is_failure(problems)
    print(f"{'FAIL' if failed else 'ok  '} {path}")
    for problem in problems:
        print(f"     {problem}")
    return failed


def cmd_publish(args: argparse.Namespace) -> int:
    from . import paths
    from .board.runs import PublishRefused, publish
    from .board.summary import shown_path
    from .harness.submissions import resolve_submission_path

    board = args.board_dir or paths.board_dir()
    try:
        published = publish(resolve_submission_path(args.submission), paths.runs_dir(), board, args.task, args.force)
    except PublishRefused as exc:
        for plan in exc.refused:
            print(f"replacebench: refused {shown_path(plan.run)} ({plan.task}): {plan.refusal}", file=sys.stderr)
        print(f"replacebench: nothing published: {len(exc.refused)} run(s) refused; fix them, or leave them out "
              "with --task.", file=sys.stderr)
        return 1
    for path in published:
        print(f"published {shown_path(path)}")
    folder, named = resolve_submission_path(args.submission), paths.submissions_dir() / Path(args.submission).name
    if not named.is_dir() or folder != named.resolve():
        print(f"replacebench: note: the board re-scores its records from {shown_path(named)}; put this folder there "
              "(and commit it) before the board is verified.", file=sys.stderr)
    print("render the board with `replacebench leaderboard`" + ("" if args.board_dir is None else
                                                                 f" --results-dir {args.board_dir}"))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from . import paths
    from .board.runs import matching, read_runs, remove_runs, run_state
    from .board.summary import primary_cell, shown_path

    folder = paths.runs_dir()
    if args.remove is not None:
        if args.pattern is not None:
            raise UserError("--remove takes the submission itself; narrow it with --task GLOB, not a pattern.")
        name = Path(args.remove).name if os.sep in args.remove else args.remove
        if args.task is not None:
            from .tasks import select_tasks

            select_tasks(args.task)  # a misspelt glob is an error, not "nothing to remove"
        removed = remove_runs(folder, name, args.task)
        if not removed:
            where = "" if args.task is None else f" on '{args.task}'"
            raise UserError(f"no runs of '{name}'{where} in {shown_path(folder)}; list them with `replacebench runs`.")
        for path in removed:
            print(f"removed {shown_path(path)}")
        return 0
    if args.task is not None:
        raise UserError("--task goes with --remove; to list runs on some tasks, pass the glob: replacebench runs 'GLOB'.")
    runs = matching(read_runs(folder), args.pattern)
    if not runs:
        print(f"no runs in {shown_path(folder)}" + ("" if args.pattern is None else f" match '{args.pattern}'")
              + "; `replacebench score SUB --task T` makes one.")
        return 0
    hashes: dict[Path, str | None] = {}
    rows = [(r.task + ("" if r.split == "public" else " (held-out)"), r.submission,
             "—" if r.record is None else primary_cell(r.record), run_state(r, hashes)) for r in runs]
    titles = ("task", "submission", "primary recovery [95% CI]", "state")
    widths = [max(len(t), *(len(row[i]) for row in rows)) for i, t in enumerate(titles)]
    for row in (titles, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"{len(rows)} run(s) in {shown_path(folder)}; publish one with `replacebench publish SUB`")
    return 0


def cmd_changed_submissions(args: argparse.Namespace) -> int:
    from .board.changed import changed_submissions

    for name in changed_submissions(args.base, args.repo):
        print(name)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .api import compare
    from .board.compare import format_comparison

    result = compare(args.task, args.a, args.b, args.results_dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_comparison(result))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from . import paths

    if args.html is not None:
        if args.out is not None:
            raise UserError("--out and --html write different things (the Markdown board, the site); pass one.")
        from .board.site import write_site
        from .record.layout import default_results_dir

        out = write_site(args.results_dir or default_results_dir(), args.html,
                         warn=lambda message: print(f"replacebench: warning: {message}", file=sys.stderr))
        print(f"wrote {out / 'index.html'}")
        return 0
    from .atomic import atomic_write_bytes
    from .board.leaderboard import render
    from .record.layout import default_results_dir

    text = render(args.results_dir or default_results_dir(),
                  warn=lambda message: print(f"replacebench: warning: {message}", file=sys.stderr))
    if args.out is not None and str(args.out) == "-":
        print(text)
        return 0
    out = args.out or (paths.leaderboard_dir() / "README.md")
    atomic_write_bytes(out, text.encode())
    print(f"wrote {out}")
    return 0


def schema_text() -> str:
    """The record's JSON schema as committed: indented, one trailing newline."""
    from .record.typed import json_schema

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.out is None:
        print(text, end="")
        return 0
    from .atomic import atomic_write_bytes

    atomic_write_bytes(args.out, text.encode())
    print(f"wrote {args.out}")
    return 0


def train_summary(model_id: str, result: Any) -> str:
    """The line `replacebench train` prints. A character model (a `WindowRecipe`) is measured on its `val` split in
    nats per character, which `TrainResult` carries in its test_* fields."""
    if isinstance(zoo.MODELS[model_id].recipe, zoo.WindowRecipe):
        measured = f"val loss {result.test_loss:.4f} nats/char, val accuracy {100 * result.test_accuracy:.2f}%"
    else:
        measured = f"test accuracy {100 * result.test_accuracy:.2f}%, test loss {result.test_loss:.4f}"
    return f"trained {model_id}: {measured}, {result.seconds:.0f} s; wrote {result.path} (sha256 {result.sha256})"


def cmd_train(args: argparse.Namespace) -> int:
    from .maintainer.train import train

    result = train(args.model, data_dir=args.data_dir, out_dir=args.out_dir, progress=progress_enabled())
    print(train_summary(args.model, result))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .errors import unknown
    from .zoo import fetchers, load_object

    targets = fetchers()
    if args.what not in targets:
        raise unknown("fetch target", args.what, targets, "replacebench fetch --help")
    for key, value in load_object(targets[args.what])(args.data_dir, args.url, args.labels_url).items():
        print(f"{key}: {value}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from .maintainer.inception_random import FAMILY, select_random_inception
    from .maintainer.select import select_targets

    if args.held_out_secret is not None and args.model in (FAMILY, zoo.MODADD_SELECT, zoo.SHAKESPEARE_SELECT):
        raise UserError(f"--held-out-secret: {args.model} has no held-out split to confirm its targets on.")
    if args.model == FAMILY:
        text, path = select_random_inception(args.imagenet or os.environ.get("REPLACEBENCH_IMAGENET"), args.data_dir,
                                             unchecked=args.unchecked, write=args.write)
    elif args.unchecked:
        raise UserError(f"--unchecked is for {FAMILY} only: {args.model} is chosen from its own data, which is here.")
    elif args.model == zoo.MODADD_SELECT:
        from .maintainer.modadd_select import select_modadd

        text, path = select_modadd(args.data_dir, write=args.write)
    elif args.model == zoo.SHAKESPEARE_SELECT:
        from .maintainer.shakespeare_select import select_shakespeare

        text, path = select_shakespeare(args.data_dir, write=args.write)
    else:
        text, path = select_targets(args.model, data_dir=args.data_dir, write=args.write,
                                    secret=read_heldout_secret(args))
    print(f"wrote {path}" if args.write else text, end="" if not args.write else "\n")
    return 0


def cmd_stimuli(args: argparse.Namespace) -> int:
    start_zygote(args)
    from .analysis.stimulus_report import stimulus_report
    from .harness.session import ScoringSession
    from .harness.submissions import take_snapshot
    from .tasks import get_task

    task = get_task(args.task)
    with take_snapshot(args.submission) as snapshot:
        options = run_options(args, fit_size=args.fit_size, isolate=not args.in_process)
        with ScoringSession(task, snapshot, options) as session:
            session.load()
            params = None
            model = None
            if session.room.fit_signature is not None and args.imagenet:
                ctx = session.prepare()
                params = session.fit()
                model = ctx.model.cpu()
            report = stimulus_report(task, session.room, params=params, model=model)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    name = snapshot.name
    print(f"{name} on radial-tuning curves for {task.id} (orientation: direction the convex side faces, "
          f"degrees counter-clockwise from right)")
    print("submission:\n" + report.submission_tuning.round(1).to_string(index=False))
    if report.model_tuning is not None:
        print("model:\n" + report.model_tuning.round(1).to_string(index=False))
        print("fidelity on stimuli: " + ", ".join(
            f"{f['unit']}: r {f['pearson_r']:.3f}" if f.get("pearson_r") is not None else f"{f['unit']}: r —"
            for f in report.fidelity))
    else:
        print(f"(model weights not found: run `replacebench fetch {task.model}` for the model's tuning and fidelity)")
    return 0


def check_count(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"{name} must be at least 1, not {value}.")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .analysis.inspection import inspect_task
    from .tasks import get_task

    check_count("--top", args.top)
    check_count("--fit-size", args.fit_size)
    report = inspect_task(get_task(args.task), args.out, data_dir=args.data_dir, imagenet_dir=args.imagenet,
                          device=args.device, top=args.top, fit_size=args.fit_size)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        grid = f" and all {report['grid']['pairs']:,} pairs of its grid" if "grid" in report else ""
        print(f"inspected {report['task']} on its fit set (n = {report['n_fit']}){grid}; open {report['html']}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    start_zygote(args)
    from .analysis.diagnosis import diagnose
    from .tasks import get_task

    check_count("--top", args.top)
    check_count("--eval-size", args.eval_size)
    check_count("--fit-size", args.fit_size)
    report = diagnose(args.submission, get_task(args.task), args.out, options=run_options(
        args, eval_size=args.eval_size, fit_size=args.fit_size, isolate=not args.in_process), top=args.top)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"diagnosed {report['submission']} on {report['task']} (n = {report['n_eval']}); "
              f"r {report['overall_r_text']}; open {report['html']}")
    return 0


COMMANDS = {
    "tasks": cmd_tasks, "show": cmd_show, "score": cmd_score, "verify": cmd_verify, "publish": cmd_publish,
    "runs": cmd_runs, "compare": cmd_compare, "leaderboard": cmd_leaderboard,
    "schema": cmd_schema,
    "length": cmd_length, "train": cmd_train, "fetch": cmd_fetch, "select": cmd_select, "stimuli": cmd_stimuli,
    "inspect": cmd_inspect, "diagnose": cmd_diagnose, "changed-submissions": cmd_changed_submissions,
}


def main(argv: Sequence[str] | None = None) -> int:
    # The harness and a submission's child take turns on the CPU. OpenMP's default, spinning after each parallel
    # region, steals the cores from the other side: measured 3.5x slower replaced passes on 2 cores. Set before
    # torch loads its OpenMP runtime; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:  # one line, whatever text of a submission's it quotes
        print(printable(f"replacebench: error: {exc}"), file=sys.stderr)
        return 2
    except StatisticsError as exc:  # data the statistics cannot use: the user's to fix (e.g. too few examples)
        print(f"replacebench: error: {exc}", file=sys.stderr)
        return 2
    except SubmissionError as exc:
        print_submission_failure(f"replacebench: {exc}", exc.traceback_text)
        return 1
    except KeyboardInterrupt:
        print("replacebench: interrupted; no record was written.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is silent
        return 0


if __name__ == "__main__":
    sys.exit(main())
