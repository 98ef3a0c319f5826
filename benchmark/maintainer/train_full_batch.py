"""Full-batch training for a `FullBatchRecipe` (modadd-p113, after Nanda et al. 2023), and its grokking curve.

Bit-reproducible on a given CPU/software stack, as `train.py`: the model is built after
`torch.manual_seed(recipe.seed)` (inside `fork_rng`), with `torch.use_deterministic_algorithms(True)` and
`recipe.threads` threads. Each step t = 0, 1, … reads the whole training split, in the order `split_pairs` gives:

    lr_t = lr · min(1, (t + 1) / warmup_steps)
    loss_t = mean over the split of CE(model(tokens), answer)     (the fused `forward`: the graph it was trained with)
    AdamW(lr_t, betas, weight_decay) step

Every `recipe.curve_every` steps the curve gets (step, train loss of that step, test loss, test accuracy, seconds).
The test split is every pair not trained on. The JSON beside the weights holds the recipe, the curve, the first
step with test accuracy ≥ 99.9% (`grokked_step`) and the final test accuracy and loss.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import atomic_write_bytes
from ..data.modadd import pair_labels, pair_tokens, split_pairs
from ..zoo import FullBatchRecipe, ModelSpec
from .outputs import TrainResult, deterministic, save_weights, seeded, versions

GROKKED_ACCURACY = 0.999


@torch.no_grad()
def _test(model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on `tokens # [n, 3]`, `labels # [n]`."""
    logits = model(tokens)  # [n, p]
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def train_full_batch(spec: ModelSpec, recipe: FullBatchRecipe, out: Path, progress: bool = False) -> TrainResult:
    """Train `spec`'s model with `recipe`; write `<out>/<id>.safetensors` and `<id>.json` (module docstring)."""
    pairs = split_pairs()
    x_train, y_train = pair_tokens(pairs["train"]), pair_labels(pairs["train"])  # [n_train, 3], [n_train]
    x_test, y_test = pair_tokens(pairs["test"]), pair_labels(pairs["test"])
    curve: list[dict[str, float]] = []
    began = time.perf_counter()
    with deterministic(recipe.threads):
        model = seeded(spec.build, recipe.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                      betas=recipe.betas)
        model.train()
        for step in range(recipe.steps):
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * min(1.0, (step + 1) / recipe.warmup_steps)
            loss = F.cross_entropy(model(x_train).float(), y_train)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (step + 1) % recipe.curve_every == 0 or step + 1 == recipe.steps:
                test_loss, test_accuracy = _test(model, x_test, y_test)
                curve.append({"step": step + 1, "train_loss": loss.item(), "test_loss": test_loss,
                              "test_accuracy": test_accuracy, "seconds": round(time.perf_counter() - began, 1)})
                if progress:
                    print(f"step {step + 1}: train loss {loss.item():.3g}, test loss {test_loss:.3g}, "
                          f"test accuracy {100 * test_accuracy:.2f}%", file=sys.stderr, flush=True)
        model.eval()
        test_loss, test_accuracy = _test(model, x_test, y_test)
    seconds = time.perf_counter() - began
    grokked = next((c["step"] for c in curve if c["test_accuracy"] >= GROKKED_ACCURACY), None)

    path = out / f"{spec.id}.safetensors"
    sha = save_weights(model, path)
    meta = {
        "model_id": spec.id,
        "weights": path.name,
        "sha256": sha,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "final_train_loss": curve[-1]["train_loss"],
        "steps": recipe.steps,
        "grokked_step": grokked,
        "curve": curve,
        "seconds": round(seconds, 1),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "recipe": {"dataset": spec.dataset, **dataclasses.asdict(recipe)},
        "data": {"train": len(y_train), "test": len(y_test)},
        "versions": versions(),
        "machine": platform.machine(),
    }
    atomic_write_bytes(out / f"{spec.id}.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return TrainResult(path, sha, test_accuracy, test_loss, recipe.steps, seconds)
