"""Scoring speed: the harness (cached baseline) against a naive scorer, timed in the same run.

Both score the submission in isolation, through the same `IsolatedSubmission` (the zygote's start, once per
process, is included in both; see bench_isolation.py for what isolation costs).

    python benchmarks/bench_scoring.py mnist [--task mnist-mlp/fc1:13] [--submission zero]
    python benchmarks/bench_scoring.py inception --imagenet DIR   (needs `replacebench fetch inceptionv1`)

The naive scorer reruns the whole model for every condition (clean, zero,
mean, resample, replaced) on every batch, with no cache, then computes the same
statistics. "Warm" is the harness with the baseline already cached; "cold"
includes computing and caching it. Each measurement runs in a fresh process so
its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def naive_score(ctx, room) -> dict:
    """Every condition by a full forward pass per batch, nothing cached; same statistics, same isolated submission."""
    from benchmark import stats
    from benchmark.harness.baseline import fit_target_activations
    from benchmark.kinds.base import classification_outputs as per_example_outputs
    from benchmark.harness.hooks import capture, splice
    from benchmark.harness.passes import as_array
    from benchmark.harness.scoring import fit_submission

    task, model = ctx.task, ctx.model
    fit_target = fit_target_activations(ctx)
    mean = fit_target.mean(0)
    partner = np.random.default_rng(task.seed + 2).integers(0, len(fit_target), size=len(ctx.eval_indices))
    room.load(task)
    room.start_replace(ctx.view(), fit_submission(ctx, room))
    signature = room.replace_signature
    labels_all = torch.as_tensor(ctx.eval_labels)
    losses: dict[str, list] = {c: [] for c in ("clean", "zero", "mean", "resample", "replaced")}
    position = 0
    with torch.no_grad():
        for _, images in ctx.eval_set.batches(ctx.eval_indices, task.batch_size):
            images = ctx.to_input(images)  # same device and memory layout as the harness
            b = len(images)
            labels = labels_all[position : position + b]
            values = {
                "zero": lambda o: torch.zeros_like(o[:, list(task.units)]),
                "mean": lambda o: mean.expand(b, *mean.shape),
                "resample": lambda o: fit_target[torch.as_tensor(partner[position : position + b])],
            }
            losses["clean"].append(per_example_outputs(model.class_logits(model(images)), labels, task.topk)["loss"])
            for name, fn in values.items():
                with splice(model, task.layer, task.units, fn):
                    losses[name].append(per_example_outputs(model.class_logits(model(images)), labels, task.topk)["loss"])
            names = [n for n in signature.inputs if n != "image"]
            with capture(model, names) as store:
                def replaced(o):
                    inputs = {n: as_array(images if n == "image" else store[n]) for n in signature.inputs}
                    return torch.from_numpy(room.replace(inputs, (b, *ctx.target_shape)))

                with splice(model, task.layer, task.units, replaced):
                    losses["replaced"].append(per_example_outputs(model.class_logits(model(images)), labels, task.topk)["loss"])
            position += b
    arrays = {k: np.concatenate(v) for k, v in losses.items()}
    return {k: v.to_dict() for k, v in stats.recovery_stats(
        arrays["clean"], {a: arrays[a] for a in ("zero", "mean", "resample")}, arrays["replaced"]).items()}


def measure(mode: str, task_id: str, submission_name: str, imagenet: str | None, eval_size: int | None,
            fit_size: int | None) -> dict:
    """One timing in this process: 'warm', 'cold' or 'naive'."""
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.harness.scoring import score
    from benchmark.harness.submissions import take_snapshot
    from benchmark.sandbox.limits import limits_for
    from benchmark.sandbox.room import IsolatedSubmission
    from benchmark.tasks import get_task

    ctx = prepare(get_task(task_id), imagenet_dir=imagenet, eval_size=eval_size, fit_size=fit_size)
    snapshot = take_snapshot(submission_name)
    if mode == "warm":
        load_or_compute(ctx)  # make sure the cache is there; not timed
    with IsolatedSubmission(snapshot, limits_for(ctx.task.dataset)) as room:
        start = time.perf_counter()
        if mode == "naive":
            recovery = naive_score(ctx, room)
        else:
            result = score(ctx, room, load_or_compute(ctx, use_cache=True))
            recovery = result.figures["recovery"]
        seconds = time.perf_counter() - start
    snapshot.cleanup()
    return {"mode": mode, "seconds": seconds, "n": int(len(ctx.eval_indices)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "recovery_zero": recovery["zero"]["recovery"]}


def run_isolated(args: argparse.Namespace, mode: str, cache: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--task", args.task, "--submission", args.submission]
    for flag, value in (("--imagenet", args.imagenet), ("--eval-size", args.eval_size), ("--fit-size", args.fit_size)):
        if value is not None:
            cmd += [flag, str(value)]
    import os

    from benchmark import paths

    weights = paths.user_cache_root() / "inceptionv1"  # fetched weights live in the cache: share them
    if weights.exists() and not (Path(cache) / "inceptionv1").exists():
        (Path(cache) / "inceptionv1").symlink_to(weights, target_is_directory=True)
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "REPLACEBENCH_CACHE": cache})
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", nargs="?", choices=["mnist", "inception"], default="mnist")
    parser.add_argument("--task")
    parser.add_argument("--submission", default="zero")
    parser.add_argument("--imagenet")
    parser.add_argument("--eval-size", type=int)
    parser.add_argument("--fit-size", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["warm", "cold", "naive"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.task, args.submission, args.imagenet, args.eval_size, args.fit_size)))
        return
    if args.task is None:
        args.task = "mnist-mlp/fc1:13" if args.family == "mnist" else "inceptionv1/mixed3b:curves"
    print(f"task {args.task}, submission {args.submission}, torch threads {torch.get_num_threads()}")
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            for mode in ("cold", "warm", "naive"):
                rows.append(run_isolated(args, mode, cache))
                r = rows[-1]
                print(f"  run {repeat + 1} {mode:<5} {r['seconds']:7.2f} s  {r['n'] / r['seconds']:8.1f} examples/s  "
                      f"peak RSS {r['peak_rss_mb']:6.0f} MB  recovery(zero) {r['recovery_zero']}")
    best = {m: min(r["seconds"] for r in rows if r["mode"] == m) for m in ("cold", "warm", "naive")}
    n = rows[0]["n"]
    print(f"best of {args.repeats}: warm {best['warm']:.2f} s ({n / best['warm']:.1f}/s), cold {best['cold']:.2f} s "
          f"({n / best['cold']:.1f}/s), naive {best['naive']:.2f} s ({n / best['naive']:.1f}/s)")
    print(f"naive / warm = {best['naive'] / best['warm']:.2f}x   naive / cold = {best['naive'] / best['cold']:.2f}x")


if __name__ == "__main__":
    main()
