"""Clean top-1 accuracy of each reference model on its task's public eval set vs the held-out split.

    python benchmarks/heldout_accuracy.py [--secret FILE] [--secrets N]

For each model it takes one task, prepares the public and the held-out context, and prints top-1 =
mean(argmax logits == label) on both, with the transform's magnitudes: for the secret in FILE (default: the demo
secret "replacebench demo secret, not for a board"), and the range over N secrets (that one, then
sha256("replacebench demo secret k") in hex for k = 1 … N−1).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.harness.context import TaskContext, prepare  # noqa: E402
from benchmark.data.heldout import TRANSFORMS, commitment, read_secret  # noqa: E402
from benchmark.tasks import all_tasks  # noqa: E402

DEMO_SECRET = b"replacebench demo secret, not for a board"
TASKS = ("digits-mlp/fc1:17", "mnist-mlp/fc1:13", "mnist-cnn/conv2:61")


def top1(ctx: TaskContext) -> float:
    """Share of eval examples whose arg-max class is the label."""
    correct = 0
    labels = torch.as_tensor(ctx.eval_labels)
    position = 0
    with torch.no_grad():
        for _, images in ctx.eval_set.batches(ctx.eval_indices, ctx.task.batch_size):
            logits = ctx.model.class_logits(ctx.model(ctx.to_input(images)))
            correct += int((logits.argmax(1).cpu() == labels[position:position + len(images)]).sum())
            position += len(images)
    return correct / len(ctx.eval_indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secret", type=Path, default=None)
    parser.add_argument("--secrets", type=int, default=5)
    args = parser.parse_args()
    secret = read_secret(args.secret) if args.secret else DEMO_SECRET
    others = [hashlib.sha256(f"replacebench demo secret {k}".encode()).hexdigest().encode() for k in range(1, args.secrets)]
    tasks = all_tasks()
    print(f"secret commitment {commitment(secret)[:16]}…")
    print(f"| model | eval set | transform | clean top-1 | held-out top-1 | over {args.secrets} secrets |")
    print("|---|---|---|---|---|---|")
    for task_id in TASKS:
        task = tasks[task_id]
        public = prepare(task)
        accuracies = [top1(prepare(task, heldout_secret=s)) for s in (secret, *others)]
        t = TRANSFORMS[task.dataset]
        spec = f"±{t.max_shift_px:g} px" + (f", ±{t.max_rotation_deg:g}°" if t.max_rotation_deg else "")
        print(f"| {task.model} | {task.dataset} {task.eval_split} (n = {len(public.eval_indices)}) | {spec} | "
              f"{100 * top1(public):.1f}% | {100 * accuracies[0]:.1f}% | "
              f"{100 * min(accuracies):.1f}–{100 * max(accuracies):.1f}% |", flush=True)


if __name__ == "__main__":
    main()
