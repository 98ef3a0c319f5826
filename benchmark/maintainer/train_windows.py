"""Training a character language model on random windows of its corpus, for a `WindowRecipe` (shakespeare-char).

Bit-reproducible on a given CPU/software stack, as `train.py`: the model is built after
`torch.manual_seed(recipe.seed)`, with `torch.use_deterministic_algorithms(True)` and `recipe.threads` threads.
Step t = 0 … steps − 1 reads `batch_size` windows of W + 1 characters of the `train` split, starting at offsets
drawn uniformly from 0 … n_train − W − 1 by `torch.randint` on a generator seeded with `recipe.seed + 1`, and does

    lr_t   = lr · (t + 1) / warmup_steps                                        for t < warmup_steps
           = min_lr + (lr − min_lr) · ½ (1 + cos(π (t − warmup) / (steps − warmup)))   after
    loss_t = mean over the batch's B · W positions of CE(model(x)[b, i], x[b, i + 1])   (the fused `forward`)
    clip the gradient's global norm to `grad_clip`; AdamW(lr_t, betas, weight_decay) step (decay on matrices only)

Every `eval_every` steps (and at the end) the curve gets the validation loss: the mean next-character
cross-entropy in nats over every position of the `val` split's non-overlapping windows (`data.shakespeare`),
which is what the JSON beside the weights reports as `val_loss`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import atomic_write_bytes
from ..data.shakespeare import WINDOW, open_split, split_ids
from ..zoo import ModelSpec, WindowRecipe
from .outputs import TrainResult, deterministic, save_weights, seeded, versions


@torch.no_grad()
def validation(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 128) -> tuple[float, float]:
    """(mean next-character cross-entropy in nats, accuracy) over every position of `inputs # [n, W]`,
    `targets # [n, W]`."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start : start + batch_size], targets[start : start + batch_size]
        logits = model(x)  # [b, W, V]
        loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
    model.train(was_training)
    return loss_sum / targets.numel(), correct / targets.numel()


def lr_at(recipe: WindowRecipe, step: int) -> float:
    """The learning rate of step `step` (module docstring)."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.min_lr + (recipe.lr - recipe.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_windows(spec: ModelSpec, recipe: WindowRecipe, out: Path, data_dir: object = None,
                  progress: bool = False) -> TrainResult:
    """Train `spec`'s model with `recipe`; write `<out>/<id>.safetensors` and `<id>.json` (module docstring)."""
    train_ids = torch.from_numpy(split_ids("train", data_dir))  # [n_train]
    val = open_split("val", data_dir)
    val_inputs, val_targets = val.inputs, torch.as_tensor(val.labels())  # [n, W], [n, W]
    offsets = torch.arange(WINDOW + 1)  # [W + 1]
    curve: list[dict[str, float]] = []
    began = time.perf_counter()
    with deterministic(recipe.threads):
        model = seeded(spec.build, recipe.seed)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=recipe.betas)
        generator = torch.Generator().manual_seed(recipe.seed + 1)
        model.train()
        for step in range(recipe.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(recipe, step)
            starts = torch.randint(0, len(train_ids) - WINDOW - 1, (recipe.batch_size,), generator=generator)
            chunk = train_ids[starts[:, None] + offsets]  # [B, W + 1]
            logits = model(chunk[:, :-1])  # [B, W, V]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            if (step + 1) % recipe.eval_every == 0 or step + 1 == recipe.steps:
                val_loss, val_accuracy = validation(model, val_inputs, val_targets)
                curve.append({"step": step + 1, "train_loss": loss.item(), "val_loss": val_loss,
                              "val_accuracy": val_accuracy, "seconds": round(time.perf_counter() - began, 1)})
                if progress:
                    print(f"step {step + 1}: train loss {loss.item():.4f}, val loss {val_loss:.4f} nats/char, "
                          f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        model.eval()
        val_loss, val_accuracy = validation(model, val_inputs, val_targets)
    seconds = time.perf_counter() - began

    path = out / f"{spec.id}.safetensors"
    sha = save_weights(model, path)
    meta = {
        "model_id": spec.id,
        "weights": path.name,
        "sha256": sha,
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "steps": recipe.steps,
        "curve": curve,
        "seconds": round(seconds, 1),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "recipe": {"dataset": spec.dataset, **dataclasses.asdict(recipe)},
        "data": {"train_chars": len(train_ids), "val_windows": len(val_inputs), "window": WINDOW},
        "versions": versions(),
        "machine": platform.machine(),
    }
    atomic_write_bytes(out / f"{spec.id}.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return TrainResult(path, sha, val_accuracy, val_loss, recipe.steps, seconds)
