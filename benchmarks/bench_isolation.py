"""Isolated vs in-process scoring, timed in the same run: the fixed cost per task and the replaced pass's ratio.

    REPLACEBENCH_DATA=../shared/data python benchmarks/bench_isolation.py [--repeats 5]

Workloads: mnist-mlp/fc1:13 and mnist-cnn/conv2:61 with `linear` (a fit step, 10,000 eval images), and
InceptionV1 mixed3b:curves with `curve-detector` on the 103-image sample (random weights in the published
format, fetched from a local HTTP server into a throwaway cache), plus `zero` on it.

For each workload, one process prepares the task and its baseline (not timed), then alternates in-process and
isolated scoring `--repeats` times, timing each phase of `scoring.score`:
- load: the children forked from the warm zygote and the submission imported (in-process: imported);
- fit: collecting the fit inputs, the fit step, handing the params to the replace child;
- replaced pass: the eval pass with the replacement spliced in;
- statistics are the same code in both modes and are left out.
The fixed cost per task is (isolated − in-process) of load + fit; the replaced pass is reported as a ratio.
The zygote's own start (importing torch, once per harness process) is reported on its own line.
Medians over the repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (benchmark/cli.py), before torch loads


def fetch_random_inception(cache: Path, data_dir: Path) -> None:
    """Random weights in the published .pth format, fetched through the real code from 127.0.0.1."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers_inception import random_state_dict, serve_directory

    from benchmark.maintainer.fetch_inception import fetch_inceptionv1

    served = cache / "served"
    served.mkdir(parents=True)
    torch.save(random_state_dict(0), served / "inception5h.pth")
    shutil.copy(data_dir / "inceptionv1" / "old_imagenet_labels.txt", served / "old_imagenet_labels.txt")
    with serve_directory(served) as url:
        fetch_inceptionv1(cache / "data", weights_url=f"{url}/inception5h.pth", labels_url=f"{url}/old_imagenet_labels.txt")


def phases(ctx, baseline, name: str, isolate: bool) -> dict[str, float]:
    from benchmark.harness.scoring import fit_submission, replaced_pass
    from benchmark.harness.submissions import take_snapshot
    from benchmark.sandbox.limits import limits_for
    from benchmark.sandbox.room import IsolatedSubmission

    snapshot = take_snapshot(name)
    try:
        with IsolatedSubmission(snapshot, limits_for(ctx.task.dataset), isolate=isolate) as room:
            t0 = time.perf_counter()
            room.load(ctx.task)
            t1 = time.perf_counter()
            room.start_replace(ctx.view(), fit_submission(ctx, room))
            t2 = time.perf_counter()
            replaced_pass(ctx, room, baseline)
            t3 = time.perf_counter()
    finally:
        snapshot.cleanup()
    return {"load": t1 - t0, "fit": t2 - t1, "pass": t3 - t2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["mnist-mlp", "mnist-cnn", "inceptionv1"], action="append")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("REPLACEBENCH_DATA", ROOT.parent / "shared" / "data")).resolve()
    cache = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    os.environ["REPLACEBENCH_CACHE"] = str(cache)

    from benchmark.sandbox.process import ZYGOTE, isolation_problem

    if isolation_problem():
        raise SystemExit(f"no process isolation here: {isolation_problem()}")
    start = time.perf_counter()
    ZYGOTE.start()
    import torch

    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    imagenet = data_dir / "imagenet-sample"
    workloads = [
        ("mnist-mlp", "mnist-mlp/fc1:13", "linear", {}),
        ("mnist-cnn", "mnist-cnn/conv2:61", "linear", {}),
        ("inceptionv1", "inceptionv1/mixed3b:curves", "curve-detector", {"imagenet_dir": imagenet, "eval_size": 52,
                                                                          "fit_size": 51}),
        ("inceptionv1", "inceptionv1/mixed3b:curves", "zero", {"imagenet_dir": imagenet, "eval_size": 52,
                                                                "fit_size": 51}),
    ]
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, repeats {args.repeats} (medians)")
    first = True
    try:
        for family, task_id, name, options in workloads:
            if args.only and family not in args.only:
                continue
            if family == "inceptionv1" and not (cache / "inceptionv1").exists():
                fetch_random_inception(cache, data_dir)
            ctx = prepare(get_task(task_id), data_dir=data_dir, **options)
            baseline = load_or_compute(ctx)
            if first:  # the zygote's start, once per harness process (overlapped with loading in `score`)
                phases(ctx, baseline, name, isolate=True)
                print(f"zygote ready (import torch, once per run) after {time.perf_counter() - start:.2f} s, "
                      "overlapped with preparing the task")
                first = False
            rows = {True: [], False: []}
            for _ in range(args.repeats):
                for isolate in (False, True):
                    rows[isolate].append(phases(ctx, baseline, name, isolate))
            med = {iso: {k: statistics.median(r[k] for r in rows[iso]) for k in ("load", "fit", "pass")} for iso in rows}
            fixed = (med[True]["load"] + med[True]["fit"]) - (med[False]["load"] + med[False]["fit"])
            ratio = med[True]["pass"] / med[False]["pass"]
            print(f"{task_id} {name} (n eval {len(ctx.eval_indices)}, n fit {len(ctx.fit_indices)})")
            for iso in (False, True):
                m = med[iso]
                print(f"  {'isolated  ' if iso else 'in-process'} load {m['load']:6.3f} s  fit {m['fit']:6.3f} s  "
                      f"replaced pass {m['pass']:6.3f} s")
            print(f"  fixed cost per task {fixed:+.3f} s (goal ≤ 3 s)   replaced pass ratio {ratio:.3f}x (goal ≤ 1.25x)")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
