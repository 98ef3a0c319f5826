"""modadd-p113, one task in isolation: the replaced pass against a plain forward, and the fixed cost per task,
timed in the same run.

    python benchmarks/bench_modadd_speed.py [--task modadd-p113/mlp_hook_post:freq8] [--submission mean]
        [--repeats 5] [--json FILE]

One process, a fresh temporary cache. Once per process, the first room is loaded: the zygote (the children's
parent) imports torch, then forks them; that is in no per-task figure. Once per task and machine, the baseline is
computed and cached. Then, per repeat, alternating, on the eval set (8,939 pairs in the task's batches):

- **plain**: `model(tokens)` per eval batch, the tokens loaded beforehand: the fused forward, the floor;
- **staged**: `model.run(tokens)` per batch, the same function split at the hook points (what the passes run);
- **replaced**: the harness's replaced pass (`scoring.replaced_pass`) in a room already loaded and fitted: every
  input the submission declares captured and sent to the child (the tokens as int64), its output validated and
  spliced in, and the per-example loss, top-k and KL; with the seconds spent in its replace calls;
- **in-process**: the same pass with the submission imported in this process (`--in-process`: no child, no
  transfers), to tell isolation's share from the pass's own;
- **per task**: the whole scoring of one task as `replacebench score` runs it, `runner.compute_record` with the
  baseline cache warm: the signature check, `prepare`, the baseline read from the cache, the children forked and
  the submission imported (`load`), the fit (the fit set's pass, the child's fit, `start_replace`), the replaced
  pass, the statistics and the record (fan-in, multiply-adds, the original layer's time, provenance). Its **fixed
  cost** is its total minus its replaced pass, both from the record's `provenance.seconds`, which also splits it;
  "other" is what that split leaves (prepare, signature check, the record's assembly), and `prepare` and the
  record's assembly are also timed alone.

Reports medians, the ratio replaced / plain (goal: ≤ 1.25) and the fixed cost per task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (benchmark/cli.py), before torch loads

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="modadd-p113/mlp_hook_post:freq8")
    parser.add_argument("--submission", default="mean")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ["REPLACEBENCH_CACHE"] = tempfile.mkdtemp(prefix="bench-modadd-")

    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.harness.runner import RunOptions, assemble_record
    from benchmark.harness.scoring import fit_submission, replaced_pass, score
    from benchmark.harness.session import compute_record
    from benchmark.harness.submissions import take_snapshot
    from benchmark.sandbox.limits import limits_for
    from benchmark.sandbox.process import ZYGOTE
    from benchmark.sandbox.room import IsolatedSubmission
    from benchmark.tasks import get_task

    task = get_task(args.task)
    limits = limits_for(task.dataset)
    snapshot = take_snapshot(args.submission)
    keys = ("plain", "staged", "replaced", "replace_calls", "in_process", "task_total", "task_replaced_pass",
            "baseline", "load", "fit", "statistics", "prepare_alone", "record_alone", "snapshot_alone")
    timings: dict[str, list[float]] = {k: [] for k in keys}

    def forward(fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for x in tokens:
                fn(x)
        return time.perf_counter() - start

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    try:
        with IsolatedSubmission(snapshot, limits) as room:
            start = time.perf_counter()
            ZYGOTE.start()
            room.load(task)  # waits for the zygote to import torch, then forks both children
            zygote = time.perf_counter() - start
            ctx = prepare(task)
            start = time.perf_counter()
            baseline = load_or_compute(ctx)
            baseline_cold = time.perf_counter() - start
            model = ctx.model
            tokens = [ctx.to_input(x) for _, x in ctx.eval_set.batches(ctx.eval_indices, task.batch_size)]
            room.start_replace(ctx.view(), fit_submission(ctx, room))
            forward(model)  # warm-up: first-call allocations
            forward(model.run)
            replaced_pass(ctx, room, baseline)
            compute_record(task, snapshot, RunOptions())  # warm-up: first imports in this process and the children
            with IsolatedSubmission(snapshot, limits) as other:
                result = score(ctx, other, baseline)
                isolation = other.isolation
            with IsolatedSubmission(snapshot, limits, isolate=False) as local:
                local.load(task)
                local.start_replace(ctx.view(), fit_submission(ctx, local))
                replaced_pass(ctx, local, baseline)
                for _ in range(args.repeats):
                    timings["plain"].append(forward(model))
                    timings["staged"].append(forward(model.run))
                    start = time.perf_counter()
                    calls = replaced_pass(ctx, room, baseline)[2]
                    timings["replaced"].append(time.perf_counter() - start)
                    timings["replace_calls"].append(calls)
                    timings["in_process"].append(timed(lambda: replaced_pass(ctx, local, baseline)))
                    record, _, _ = compute_record(task, snapshot, RunOptions())
                    seconds = record.provenance.seconds
                    assert record.provenance.baseline_from_cache
                    timings["task_total"].append(seconds["total"])
                    timings["task_replaced_pass"].append(seconds["replaced_pass"])
                    for key in ("baseline", "load", "fit", "statistics"):
                        timings[key].append(seconds[key])
                    timings["prepare_alone"].append(timed(lambda: prepare(task)))
                    timings["record_alone"].append(timed(lambda: assemble_record(
                        task, snapshot, ctx, RunOptions(), result, isolation, True, {}, time.perf_counter())))
                    timings["snapshot_alone"].append(timed(lambda: take_snapshot(args.submission).cleanup()))
    finally:
        snapshot.cleanup()
    med = {k: statistics.median(v) for k, v in timings.items()}
    fixed = [t - r for t, r in zip(timings["task_total"], timings["task_replaced_pass"])]
    med["task_fixed"] = statistics.median(fixed)
    med["task_other"] = med["task_fixed"] - sum(med[k] for k in ("baseline", "load", "fit", "statistics"))  # approx.
    n = len(ctx.eval_indices)
    figures = {
        "task": task.id, "submission": args.submission, "n_eval": n, "batch_size": task.batch_size,
        "inputs": list(task.inputs), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "repeats": args.repeats, "first_room_seconds": zygote, "baseline_cold_seconds": baseline_cold,
        "seconds": timings, "median_seconds": med,
        "replaced_over_plain": med["replaced"] / med["plain"],
        "replaced_over_staged": med["replaced"] / med["staged"],
        "in_process_over_plain": med["in_process"] / med["plain"],
        "task_replaced_pass_over_plain": med["task_replaced_pass"] / med["plain"],
    }
    print(f"{args.submission} on {task.id} ({len(task.units)} units), {n} pairs in batches of {task.batch_size}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, median of {args.repeats}:")
    print(f"  once per process: the first room loaded {zygote:.2f} s (the zygote imports torch); "
          f"once per task and machine: baseline computed and cached {baseline_cold:.2f} s")
    rows = [("plain", "model(tokens), fused forward"), ("staged", "model.run(tokens), split at the hook points"),
            ("replaced", "replaced pass, room loaded and fitted"),
            ("replace_calls", "  of which in replace calls (transfers, the child's work, validation)"),
            ("in_process", "replaced pass in-process (--in-process: no child, no transfers)"),
            ("task_total", "one task, compute_record (baseline cached)"),
            ("task_replaced_pass", "  of which the replaced pass"), ("task_fixed", "  fixed cost (the rest)"),
            ("load", "    children forked, submission imported (load)"),
            ("fit", "    fit: fit set's pass, the child's fit, start_replace"),
            ("baseline", "    baseline read from the cache"), ("statistics", "    statistics"),
            ("task_other", "    other: prepare, signature check, the record"),
            ("prepare_alone", "      prepare, alone"), ("record_alone", "      the record's assembly, alone"),
            ("snapshot_alone", "  (not in it: the submission's snapshot taken and removed)")]
    for key, label in rows:
        runs = f"   runs: {', '.join(f'{t:.3f}' for t in timings[key])}" if key in timings else ""
        print(f"  {label:<72} {med[key] * 1000:8.1f} ms{runs}")
    print(f"  replaced / plain = {figures['replaced_over_plain']:.2f}  (goal ≤ 1.25); replaced / staged = "
          f"{figures['replaced_over_staged']:.2f}; in-process / plain = {figures['in_process_over_plain']:.2f}; "
          f"the pipeline's own replaced pass / plain = "
          f"{figures['task_replaced_pass_over_plain']:.2f}")
    print(f"  fixed cost per task {med['task_fixed']:.3f} s = {med['task_fixed'] / med['plain']:.1f}× a plain forward "
          f"over the eval set")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
