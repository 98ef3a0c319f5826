"""InceptionV1: the replaced pass against a plain forward of the same model and batches, timed in the same run.

    REPLACEBENCH_DATA=../shared/data python benchmarks/bench_inception_speed.py [--images 256] [--repeats 3]
        [--task inceptionv1/mixed3b:curves] [--submission zero] [--device cpu|cuda]

Random weights in the published format (tests/helpers_inception.py `random_state_dict`, fetched from a file://
URL into a temporary cache), on the 103 sample images repeated to `--images` eval images. Per repeat, alternating:

- plain: `model(x)` on every eval batch, the batches decoded beforehand (the floor: no decoding, no hooks);
- decode: decoding those batches alone, one after the other (what would be on the critical path unhidden);
- replaced: the harness's replaced pass (`scoring.replaced_pass`): the submission in its sandbox, spliced in,
  per-example loss/KL/top-k, with `ImageNetFolder.batches` decoding the next batch in a background thread.

Reports medians and the ratio replaced / plain (goal: ≤ 1.25).
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

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="eval images (the sample, repeated)")
    parser.add_argument("--fit-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task", default="inceptionv1/mixed3b:curves")
    parser.add_argument("--submission", default="zero")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    shared = Path(os.environ.get("REPLACEBENCH_DATA", ROOT.parent / "shared" / "data"))
    work = Path(tempfile.mkdtemp(prefix="bench-inception-"))
    os.environ["REPLACEBENCH_CACHE"] = str(work / "cache")

    from helpers_inception import install_random_weights, repeat_images

    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.harness.scoring import replaced_pass
    from benchmark.harness.submissions import take_snapshot
    from benchmark.sandbox.limits import limits_for
    from benchmark.sandbox.process import ZYGOTE
    from benchmark.sandbox.room import IsolatedSubmission
    from benchmark.tasks import get_task

    ZYGOTE.start()
    install_random_weights(work / "cache", work / "data", shared / "inceptionv1" / "old_imagenet_labels.txt")
    images = repeat_images(shared / "imagenet-sample", work / "images", args.images + args.fit_size)
    task = get_task(args.task)
    ctx = prepare(task, device=args.device, data_dir=work / "data", imagenet_dir=images, eval_size=args.images,
                  fit_size=args.fit_size)
    baseline = load_or_compute(ctx)
    model = ctx.model
    sync = torch.cuda.synchronize if ctx.device.type == "cuda" else (lambda: None)

    def decode() -> tuple[list[torch.Tensor], float]:
        start = time.perf_counter()
        batches = [ctx.to_input(x) for _, x in ctx.eval_set.batches(ctx.eval_indices, task.batch_size)]
        sync()
        return batches, time.perf_counter() - start

    def decode_serially() -> float:
        start = time.perf_counter()
        for k in range(0, len(ctx.eval_indices), task.batch_size):
            ctx.eval_set.load(ctx.eval_indices[k : k + task.batch_size])
        return time.perf_counter() - start

    batches, _ = decode()

    def plain() -> float:
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            for x in batches:
                model(x)
        sync()
        return time.perf_counter() - start

    snapshot = take_snapshot(args.submission)
    timings: dict[str, list[float]] = {"plain": [], "decode": [], "replaced": []}
    try:
        with IsolatedSubmission(snapshot, limits_for(task.dataset)) as room:
            room.load(task)
            room.start_replace(ctx.view(), None)
            plain()  # warm-up: first-call allocations, oneDNN primitive caches
            replaced_pass(ctx, room, baseline)
            for _ in range(args.repeats):
                timings["plain"].append(plain())
                timings["decode"].append(decode_serially())
                sync()
                start = time.perf_counter()
                replaced_pass(ctx, room, baseline)
                sync()
                timings["replaced"].append(time.perf_counter() - start)
    finally:
        snapshot.cleanup()
    med = {k: statistics.median(v) for k, v in timings.items()}
    n = len(ctx.eval_indices)
    figures = {
        "task": args.task, "submission": args.submission, "device": str(ctx.device), "images": n,
        "batch_size": task.batch_size, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "seconds": timings, "median_seconds": med,
        "images_per_second": {k: n / v for k, v in med.items()},
        "replaced_over_plain": med["replaced"] / med["plain"],
        "decode_over_plain": med["decode"] / med["plain"],
    }
    print(f"{args.submission} on {args.task}, {n} images in batches of {task.batch_size}, {ctx.device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}:")
    for key in ("plain", "decode", "replaced"):
        print(f"  {key:<9} {med[key]:7.2f} s  {n / med[key]:7.1f} img/s   runs: {', '.join(f'{t:.2f}' for t in timings[key])}")
    print(f"  replaced / plain = {figures['replaced_over_plain']:.3f}  (goal ≤ 1.25); "
          f"decoding alone would add {figures['decode_over_plain']:.2f}× a plain pass")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
