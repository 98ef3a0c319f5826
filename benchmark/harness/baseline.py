"""Clean and ablated results of a task: computed once, cached on disk.

They depend only on the task, the checkpoint and the data, so the cache key
covers the task hash (its version included), the checkpoint sha256, the data
hash, the device type and this module's format version.

Per eval batch, the layers before the target run once; then the layers after it
run for each condition on a modified copy of the target activation:
- clean: unchanged;
- zero: the units set to 0;
- mean: the units set to their mean over the fit set (per position);
- resample: the units set to their values on a seeded-random fit-set example.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..atomic import atomic_path, atomic_write_bytes
from .context import TaskContext
from .passes import batches, fit_set_arrays, logits_from, with_units

FORMAT_VERSION = 4  # 2: the npz behind an HMAC line; 3: adds kl.<ablation>; 4: adds scale.<cond>
CONDITIONS = ("clean", "zero", "mean", "resample")


@dataclass
class Baseline:
    """Per-example results of the clean model and each ablation on the eval set."""

    arrays: dict[str, np.ndarray]  # loss.<cond> [n], top<k>.<cond> [n], logp_clean [n, C], kl.<ablation> [n],
    # scale.<cond> [n] (the logit scale, `DataKind.logit_scale`: verify's noise floor), mean_activation,
    # resample_partner [n]
    cache_path: Path | None = None
    from_cache: bool = False

    def loss(self, condition: str) -> np.ndarray:
        return self.arrays[f"loss.{condition}"]

    def kl(self, ablation: str) -> np.ndarray:
        """KL(clean ‖ ablated) per example `# [n]`."""
        return self.arrays[f"kl.{ablation}"]

    def correct(self, condition: str, k: int) -> np.ndarray:
        return self.arrays[f"top{k}.{condition}"]

    def scale(self, condition: str) -> np.ndarray:
        """The logit scale M per example `# [n]` (`DataKind.logit_scale`) of a condition."""
        return self.arrays[f"scale.{condition}"]


def cache_key(ctx: TaskContext) -> str:
    """sha256 of the JSON of everything the baseline depends on; a held-out split adds its commitment (so public
    and held-out baselines never share a file: the data hash differs too)."""
    payload = {
        "format": FORMAT_VERSION,
        "task": ctx.task.content_hash(),
        "checkpoint": ctx.checkpoint_sha256,
        "data": ctx.data_hash,
        "device": ctx.device.type,
    }
    if ctx.heldout_commitment is not None:  # public keys stay as they were
        payload["heldout_commitment"] = ctx.heldout_commitment
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_file(ctx: TaskContext) -> Path:
    """`<slug>-<key24>.npz.hmac`, or `<slug>-heldout-<commitment12>-<key24>.npz.hmac` for a held-out split."""
    split = f"-heldout-{ctx.heldout_commitment[:12]}" if ctx.heldout_commitment else ""
    return paths.cache_dir("baselines") / f"{ctx.task.slug()}{split}-{cache_key(ctx)[:24]}.npz.hmac"


def fit_target_activations(ctx: TaskContext, progress: bool = False) -> torch.Tensor:
    """The task's units on the fit set `# [n_fit, n_units, ...]` (CPU), running only the layers up to the target."""
    return torch.from_numpy(fit_set_arrays(ctx, (), progress)[1])


def compute_baseline(ctx: TaskContext, progress: bool = False) -> Baseline:
    """Run the clean model and the three ablations over the eval set."""
    task = ctx.task
    fit_target = fit_target_activations(ctx, progress)  # [n_fit, n_units, ...]
    mean_activation = fit_target.mean(dim=0)  # [n_units, ...]
    # one draw over the whole eval set; a shard (cluster.py) takes its own slice of it
    total = ctx.eval_total if ctx.eval_total is not None else len(ctx.eval_indices)
    partner = np.random.default_rng(task.seed + 2).integers(0, len(fit_target), size=total)
    partner = partner[ctx.eval_offset : ctx.eval_offset + len(ctx.eval_indices)]
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches(ctx, "eval", progress=progress, desc=f"baseline {task.id}"):
        b, position = len(batch), batch.start
        replacements = {
            "zero": torch.zeros((b, *ctx.target_shape), device=ctx.device),
            "mean": mean_activation.to(ctx.device).expand(b, *ctx.target_shape),
            "resample": fit_target[torch.as_tensor(partner[position : position + b])].to(ctx.device),
        }
        for condition in CONDITIONS:
            modified = batch.activation if condition == "clean" else with_units(ctx, batch.activation, replacements[condition])
            class_logits = logits_from(ctx, modified, batch.carry)
            for key, value in ctx.data_kind.per_example_outputs(class_logits, batch.labels, task.topk).items():
                parts.setdefault(f"{key}.{condition}", []).append(value)
            parts.setdefault(f"scale.{condition}", []).append(ctx.data_kind.logit_scale(class_logits))
            logp = ctx.data_kind.log_probs(class_logits)  # [b, classes]
            if condition == "clean":
                logp_clean = logp
                parts.setdefault("logp_clean", []).append(logp)
            else:  # KL(clean ‖ ablated) per example, the denominator of KL recovery
                parts.setdefault(f"kl.{condition}", []).append(ctx.data_kind.per_example_kl(logp_clean, logp))
    arrays = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    arrays["mean_activation"] = mean_activation.numpy()
    arrays["resample_partner"] = partner
    arrays["eval_indices"] = ctx.eval_indices
    return Baseline(arrays=arrays)


def mac_key() -> bytes:
    """The cache's secret key (`baselines/.key`, mode 0600), made on first use."""
    path = paths.cache_dir("baselines") / ".key"
    if not path.exists():
        with atomic_path(path, mode=0o600) as tmp:
            tmp.write_bytes(secrets.token_bytes(32))
    return path.read_bytes()


def mac(payload: bytes) -> str:
    """HMAC-SHA256 of a cache file's bytes under the cache's key."""
    return hmac.new(mac_key(), payload, hashlib.sha256).hexdigest()


MAC_PREFIX = b"replacebench-hmac-sha256 "


def _read_verified(path: Path) -> bytes | None:
    """The cached npz bytes if the HMAC in the file's first line matches them; None (with a warning) if not.

    File layout: MAC_PREFIX + hex HMAC + newline + npz bytes, written in one atomic rename.
    """
    try:
        head, _, payload = path.read_bytes().partition(b"\n")
    except OSError:
        return None
    if head.startswith(MAC_PREFIX) and hmac.compare_digest(head[len(MAC_PREFIX):].decode("ascii", "replace"), mac(payload)):
        return payload
    print(f"replacebench: warning: baseline cache {path.name} failed its integrity check; recomputing it.", file=sys.stderr)
    return None


def load_or_compute(ctx: TaskContext, progress: bool = False, use_cache: bool = True) -> Baseline:
    """The task's baseline from the cache (only if its HMAC verifies), or computed and then cached (atomically).

    A submission never runs where it could reach the cache: children see no cache folder, and the baseline
    exists before any submission code is imported. The HMAC catches a cache changed by anything else.
    """
    path = cache_file(ctx)
    if use_cache and path.exists():
        payload = _read_verified(path)
        try:
            if payload is not None:
                with np.load(io.BytesIO(payload)) as data:
                    arrays = {key: data[key] for key in data.files}
                if np.array_equal(arrays.get("eval_indices"), ctx.eval_indices):
                    return Baseline(arrays=arrays, cache_path=path, from_cache=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is recomputed
    baseline = compute_baseline(ctx, progress)
    if use_cache:
        buffer = io.BytesIO()
        np.savez(buffer, **baseline.arrays)
        payload = buffer.getvalue()
        atomic_write_bytes(path, MAC_PREFIX + mac(payload).encode() + b"\n" + payload)
        baseline.cache_path = path
    return baseline
