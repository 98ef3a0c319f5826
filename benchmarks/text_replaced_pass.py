"""shakespeare-char: the replaced pass against a plain forward, for a head task and a neuron task, and the time to
score one task in isolation, in one run.

    python benchmarks/text_replaced_pass.py [--head TASK] [--neuron TASK] [--submission mean] [--repeats 5]
        [--json FILE]

One process, a fresh temporary cache (each task's baseline is computed once, before any timing). Per task, per
repeat, alternating, on the task's eval windows (`# [864, 128]` in the task's batches, loaded beforehand):

- **plain**: `model(tokens)` per eval batch: the fused forward, the floor;
- **replaced**: the harness's replaced pass (`scoring.replaced_pass`) with the submission imported in this process
  (`IsolatedSubmission(isolate=False)`, as `--in-process`: no sandbox, no transfers), loaded and fitted: per
  batch, `passes.batches` runs the model up to the layer capturing the inputs it declares, `replace`, the output
  validated and spliced in (`with_units`), `logits_from` runs the rest, then the per-example loss and the KL
  against the cached clean log-probabilities. Its ratio to **plain** is the harness's own overhead (goal ≤ 1.25);
  the seconds in `replace` calls are reported beside it.

Then, per task, `replacebench score SUB --task TASK --results-dir TMP` as a subprocess, timed from outside
(isolated, the baseline already cached: what a user waits for to score one task), with the record's own split.

Defaults: the first head task and the first single-neuron task of tasks/shakespeare-char.toml.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (benchmark/cli.py), before torch loads

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def default_tasks() -> tuple[str, str]:
    """The first head task and the first single-neuron task of shakespeare-char, in the task file's order."""
    from benchmark.tasks import all_tasks

    ids = [t.id for t in all_tasks().values() if t.id.startswith("shakespeare-char/")]
    head = next(i for i in ids if ":head" in i)
    neuron = next(i for i in ids if "mlp_hook_post:" in i and i.rsplit(":", 1)[1].isdigit())
    return head, neuron


def time_task(task_id: str, submission: str, repeats: int) -> dict:
    """The in-process replaced pass against a plain forward on one task, then `replacebench score` in isolation."""
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.harness.scoring import fit_submission, replaced_pass
    from benchmark.harness.submissions import take_snapshot
    from benchmark.sandbox.limits import limits_for
    from benchmark.sandbox.room import IsolatedSubmission
    from benchmark.tasks import get_task

    task = get_task(task_id)
    ctx = prepare(task)
    start = time.perf_counter()
    baseline = load_or_compute(ctx)
    baseline_seconds = time.perf_counter() - start
    model = ctx.model
    windows = [ctx.to_input(x) for _, x in ctx.eval_set.batches(ctx.eval_indices, task.batch_size)]
    timings: dict[str, list[float]] = {"plain": [], "replaced": [], "replace_calls": [], "score_cli": []}

    def plain() -> float:
        began = time.perf_counter()
        with torch.no_grad():
            for x in windows:
                model(x)
        return time.perf_counter() - began

    snapshot = take_snapshot(submission)
    try:
        with IsolatedSubmission(snapshot, limits_for(task.dataset), isolate=False) as local:
            local.load(task)
            local.start_replace(ctx.view(), fit_submission(ctx, local))
            plain()  # warm-up: first-call allocations
            replaced_pass(ctx, local, baseline)
            for _ in range(repeats):
                timings["plain"].append(plain())
                began = time.perf_counter()
                calls = replaced_pass(ctx, local, baseline)[2]
                timings["replaced"].append(time.perf_counter() - began)
                timings["replace_calls"].append(calls)
    finally:
        snapshot.cleanup()
    record_seconds = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-text-") as results:
            cmd = [sys.executable, "-m", "benchmark", "score", submission, "--task", task_id, "--results-dir", results]
            began = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            timings["score_cli"].append(time.perf_counter() - began)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
            slug = task_id.replace("/", "__").replace(":", "-")
            record = json.loads((Path(results) / slug / f"{Path(submission).name}.json").read_text())
            assert record["provenance"]["baseline_from_cache"]
            record_seconds.append(record["provenance"]["seconds"])
    med = {k: statistics.median(v) for k, v in timings.items()}
    inner = {k: statistics.median(s[k] for s in record_seconds) for k in record_seconds[0]}
    return {"task": task_id, "units": list(task.units), "layer": task.layer, "n_eval": len(ctx.eval_indices),
            "batch_size": task.batch_size, "inputs": list(task.inputs), "baseline_cold_seconds": baseline_seconds,
            "seconds": timings, "median_seconds": med, "score_record_seconds": inner,
            "replaced_over_plain": med["replaced"] / med["plain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head")
    parser.add_argument("--neuron")
    parser.add_argument("--submission", default="mean")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ["REPLACEBENCH_CACHE"] = tempfile.mkdtemp(prefix="bench-text-cache-")
    head, neuron = default_tasks()
    figures = [time_task(t, args.submission, args.repeats) for t in (args.head or head, args.neuron or neuron)]
    print(f"{args.submission} on shakespeare-char, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, "
          f"median of {args.repeats}:")
    for f in figures:
        med, inner = f["median_seconds"], f["score_record_seconds"]
        print(f"  {f['task']} ({f['n_eval']} windows in batches of {f['batch_size']}; baseline computed once "
              f"{f['baseline_cold_seconds']:.2f} s)")
        print(f"    plain forward, model(tokens)            {med['plain'] * 1000:8.1f} ms   runs: "
              + ", ".join(f"{t:.3f}" for t in f["seconds"]["plain"]))
        print(f"    replaced pass, in-process               {med['replaced'] * 1000:8.1f} ms   runs: "
              + ", ".join(f"{t:.3f}" for t in f["seconds"]["replaced"]))
        print(f"      of which in replace calls             {med['replace_calls'] * 1000:8.1f} ms")
        print(f"    replaced / plain = {f['replaced_over_plain']:.2f}  (goal ≤ 1.25)")
        print(f"    replacebench score {args.submission} --task … (isolated, baseline cached) "
              f"{med['score_cli']:.2f} s   runs: " + ", ".join(f"{t:.2f}" for t in f["seconds"]["score_cli"]))
        print("      the record's split: " + ", ".join(f"{k} {v:.2f}" for k, v in inner.items()))
    if args.json:
        args.json.write_text(json.dumps({"submission": args.submission, "threads": torch.get_num_threads(),
                                         "cpus": os.cpu_count(), "repeats": args.repeats, "tasks": figures},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
