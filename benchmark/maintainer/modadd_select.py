"""Target units of modadd-p113, chosen on the fit pairs alone: `replacebench select modadd-p113 [--write]`.

Every target is a set of units of `mlp_hook_post`, the 512 ReLU neurons n at the last position (the one the
answer is read from). Everything below is computed on the fit split (`train`: the 3,830 pairs the model learned
from), in float64; the eval pairs (`test`) are never read here, so they cannot sway the choice. For a fit pair
(a, b) with answer y, clean logits ℓ and neuron activations n (`# [n_pairs, 512]`):

1. **Frequency.** For k = 1..56 and w = 2πk/113, the design X_k `# [n_pairs, 9]` has the columns
   1, cos wa, sin wa, cos wb, sin wb, cos wa·cos wb, cos wa·sin wb, sin wa·cos wb, sin wa·sin wb,
   and R²_u(k) = 1 − ‖n_u − X_k β‖² / ‖n_u − mean(n_u)‖², β the least-squares fit. Neuron u's frequency is
   k*_u = argmax_k R²_u(k) (the smallest k on a tie). It joins the cluster of k*_u when R²_u(k*_u) ≥ R2_MIN.
   A neuron without variance on the fit pairs (dead: zero on all of them, or constant) has no R² and joins none.
   The key frequencies are the k whose cluster is not empty.
2. **Ablation effect.** d_u = mean_i [CE(ℓ_i − n_iu · W_out[u] W_U, y_i) − CE(ℓ_i, y_i)] nats: zeroing n_u moves
   `hook_resid_post` by −n_u W_out[u], and the logits, linear in it, by −n_u W_out[u] W_U, so this is the zero
   ablation the harness runs (tested against `model.run`), for every neuron from one forward pass. A set G of
   neurons zeroed together moves the logits by −n_G W_out[G] W_U. The eval figures of these ablations (and so each
   task's power) are not computed here: `replacebench show TASK` gives them from the task's baseline.
3. **Tasks**, in this order: one group task per key frequency (`:freqK`, its cluster); the TOP_N neurons with the
   largest d_u (`:<unit>`); one seeded-random group of RANDOM_N live neurons (non-zero on some fit pair) not
   among those, drawn by `np.random.default_rng(SEED).choice(candidates, RANDOM_N, replace=False)` from the
   sorted candidates (`:random50`); the whole MLP (`:all`).

   Why a random group, not random single neurons: this network is redundant neuron by neuron. Only 6 of 512
   neurons raise the fit loss by 1e-5 nats or more when zeroed alone; a random one moves it by 1e-9 to 2e-7 nats,
   the size of float32 rounding of losses near 1e-6 (2,656 of the 8,939 eval losses are exactly 0 in float32). Its
   recovery would be a ratio of rounding noise, and the gate refused one such neuron on the eval set (t = 2.1).
   Zeroed together, 50 random live neurons cost +0.015 nats on the fit pairs (t = 6) and +0.018 on the eval
   pairs (t = 10): a measurable control.

Besides the task file, `--write` writes `tasks/modadd-p113.neurons.json`: every neuron's k*, R², d_u and
liveness, rounded, so the clusters can be checked without rerunning this.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..atomic import atomic_write_bytes
from ..download import sha256_file
from ..models.modadd import P, ModAddTransformer
from ..models.registry import load_model
from ..tasks import task_file_head
from ..zoo import MODADD_SELECT, open_split

MODEL = "modadd-p113"
LAYER = "mlp_hook_post"
CHECKPOINT = f"checkpoints/{MODEL}.safetensors"
FIT_SPLIT, FIT_SIZE = "train", 3830
EVAL_SPLIT, EVAL_SIZE = "test", 8939  # written into the task file only; never opened here
BATCH_SIZE = 1000
INPUTS = ("tokens", "hook_embed", "hook_resid_pre", "attn_hook_pattern", "attn_hook_z", "hook_resid_mid")
FREQUENCIES = range(1, P // 2 + 1)  # k = 1..56: k and P − k are the same frequency
R2_MIN = 0.85
TOP_N, RANDOM_N, SEED = 3, 50, 0
FAMILY = MODADD_SELECT


@dataclass(frozen=True)
class Neuron:
    """One neuron's figures on the fit pairs."""

    unit: int
    frequency: int  # k*, 0 when the neuron has no variance (no R²)
    r2: float  # R²(k*), nan when the neuron has no variance
    effect: float  # d_u: mean zero-ablation increase of the cross-entropy, nats
    live: bool  # non-zero on some fit pair

    @property
    def cluster(self) -> int:
        """The key-frequency cluster the neuron belongs to (0: none)."""
        return self.frequency if self.r2 >= R2_MIN else 0


@dataclass(frozen=True)
class Selection:
    """The targets and the figures that chose them (all on the fit pairs)."""

    neurons: tuple[Neuron, ...]
    clusters: dict[int, tuple[int, ...]]  # key frequency k → its neurons, sorted
    top: tuple[int, ...]  # by effect, largest first
    random: tuple[int, ...]  # sorted
    group_effects: dict[str, float]  # "freqK" and "all" → the increase when those neurons are zeroed together
    n_pairs: int


def fourier_design(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """X_k `# [n, 9]` of step 1 for the pairs (a, b) `# [n]`."""
    w = 2 * math.pi * k / P
    ca, sa, cb, sb = np.cos(w * a), np.sin(w * a), np.cos(w * b), np.sin(w * b)
    return np.stack([np.ones_like(ca), ca, sa, cb, sb, ca * cb, ca * sb, sa * cb, sa * sb], axis=1)


def frequency_r2(post: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """R²_u(k) `# [56, m]` of step 1 for activations `post # [n, m]`; nan for neurons without variance.

    Computed by the normal equations, all k in one product: β = (XᵀX)⁻¹ Xᵀy, and since the constant is a column,
    R² = (βᵀXᵀy − n·ȳ²) / ‖y − ȳ‖² (the explained sum of squares over the total)."""
    y = post.astype(np.float64)  # [n, m]
    mean = y.mean(axis=0)  # [m]
    total = ((y - mean) ** 2).sum(axis=0)  # [m]
    designs = [fourier_design(a, b, k) for k in FREQUENCIES]  # 56 × [n, 9]
    xty = np.concatenate(designs, axis=1).T @ y  # [56·9, m]
    out = []
    for i, x in enumerate(designs):
        xy = xty[9 * i : 9 * (i + 1)]  # [9, m]
        explained = (np.linalg.solve(x.T @ x, xy) * xy).sum(axis=0) - len(y) * mean**2  # [m]
        out.append(np.divide(explained, total, out=np.full_like(total, np.nan), where=total > 0))
    return np.stack(out)  # [56, m]


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy: `logits # [n, P]`, `labels # [n]` → `# [n]`."""
    return torch.logsumexp(logits, dim=1) - logits.gather(1, labels[:, None]).squeeze(1)


def activations(model: ModAddTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(neurons `# [n, 512]`, clean logits `# [n, P]`) of `tokens # [n, 3]`, through `model.run` in float64."""
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        carry: dict[str, torch.Tensor] = {}
        post = model64.run(tokens, until=LAYER, carry=carry)  # [n, 512]
        logits = model64.run(post, after=LAYER, carry=dict(carry))  # [n, P]
    return post, logits


def readout(model: ModAddTransformer) -> torch.Tensor:
    """W_out W_U `# [512, P]` in float64: how each neuron moves the logits."""
    return model.W_out.detach().double() @ model.W_U.detach().double()


def ablation_effects(model: ModAddTransformer, post: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                     groups: list[list[int]] | None = None) -> np.ndarray:
    """Step 2's increase of the cross-entropy per pair: `# [n, 512]` (one column per neuron), or `# [n, G]` for
    `groups` of neurons zeroed together. A pair where the neuron is 0 keeps its logits, so its increase is 0."""
    v = readout(model)  # [512, P]
    clean = _cross_entropy(logits, labels)  # [n]
    with torch.no_grad():
        if groups is not None:
            cols = [_cross_entropy(logits - post[:, g] @ v[g], labels) - clean for g in groups]
            return torch.stack(cols, dim=1).numpy()  # [n, G]
        out = torch.zeros_like(post)  # [n, 512]
        for unit in range(post.shape[1]):
            rows = post[:, unit].nonzero().squeeze(1)  # the pairs where the neuron fires
            ablated = logits[rows] - post[rows, unit, None] * v[unit]  # [r, P]
            out[rows, unit] = _cross_entropy(ablated, labels[rows]) - clean[rows]
    return out.numpy()


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread, restored after: the 512 small per-neuron steps only lose time to threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def choose(model: ModAddTransformer, tokens: torch.Tensor, labels: torch.Tensor) -> Selection:
    """The targets of the module's procedure, from the pairs given (`tokens # [n, 3]`, `labels # [n]`): pass the
    fit pairs, and only those are read."""
    with _one_thread():
        return _choose(model, tokens, labels)


def _choose(model: ModAddTransformer, tokens: torch.Tensor, labels: torch.Tensor) -> Selection:
    post, logits = activations(model, tokens)
    a, b = tokens[:, 0].numpy(), tokens[:, 1].numpy()
    r2 = frequency_r2(post.numpy(), a, b)  # [56, 512]
    effects = ablation_effects(model, post, logits, labels).mean(axis=0)  # [512]
    live = (post != 0).any(dim=0).numpy()  # [512]
    neurons = []
    for u in range(post.shape[1]):
        has_r2 = not np.isnan(r2[:, u]).any()
        best = int(np.argmax(r2[:, u])) if has_r2 else -1
        neurons.append(Neuron(u, FREQUENCIES[best] if has_r2 else 0, float(r2[best, u]) if has_r2 else math.nan,
                              float(effects[u]), bool(live[u])))
    clusters = {k: tuple(n.unit for n in neurons if n.cluster == k) for k in FREQUENCIES}
    clusters = {k: units for k, units in clusters.items() if units}
    top = tuple(sorted(range(len(neurons)), key=lambda u: (-effects[u], u))[:TOP_N])
    candidates = [n.unit for n in neurons if n.live and n.unit not in top]
    drawn = np.random.default_rng(SEED).choice(candidates, size=min(RANDOM_N, len(candidates)), replace=False)
    groups = ({f"freq{k}": list(units) for k, units in clusters.items()}
              | {f"random{RANDOM_N}": sorted(int(u) for u in drawn), "all": list(range(post.shape[1]))})
    group_d = ablation_effects(model, post, logits, labels, list(groups.values())).mean(axis=0)  # [G]
    return Selection(tuple(neurons), clusters, top, tuple(sorted(int(u) for u in drawn)),
                     {name: float(d) for name, d in zip(groups, group_d)}, len(tokens))


def fit_pairs(data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens `# [3830, 3]`, labels `# [3830]`) of the fit split: the only pairs `select_modadd` reads."""
    fit = open_split(MODEL, FIT_SPLIT, data_dir)
    return fit.load(np.arange(len(fit))), torch.as_tensor(fit.labels())


def _nats(x: float) -> str:
    return f"{x:+.4g} nats"


def render(selection: Selection) -> str:
    """The task file."""
    by_unit = {n.unit: n for n in selection.neurons}
    key = ", ".join(f"k = {k} ({len(units)} neurons)" for k, units in selection.clusters.items())
    clustered = sum(len(units) for units in selection.clusters.values())
    live = sum(n.live for n in selection.neurons)
    lines = [
        f"# Tasks for {MODEL}. Generated by `replacebench select {FAMILY} --write`; do not edit by hand.",
        f"# Chosen on the {selection.n_pairs} fit pairs alone (benchmark/maintainer/modadd_select.py); every neuron's "
        f"frequency, R² and ablation effect: tasks/{MODEL}.neurons.json.",
        "# Frequency clusters: a neuron joins the cluster of its best k when the 9 terms 1, cos wa, sin wa, cos wb, "
        "sin wb and their 4 products (w = 2πk/113)",
        f"# fit its activation with R² ≥ {R2_MIN}. Key frequencies: {key}; {clustered} of {len(selection.neurons)} "
        f"neurons clustered, {live} live.",
        f"# Singles: the top {TOP_N} by zero-ablation loss increase. A seeded-random group of {RANDOM_N} live neurons "
        f"(np.random.default_rng({SEED})): a random single neuron's effect is at float32 rounding (module docstring).",
        "",
        *task_file_head(MODEL, CHECKPOINT, sha256_file(paths.PROJECT_ROOT / CHECKPOINT), dataset=MODEL,
                        eval_split=EVAL_SPLIT, eval_size=EVAL_SIZE, fit_split=FIT_SPLIT, fit_size=FIT_SIZE, seed=0,
                        batch_size=BATCH_SIZE, topk=(1,), inputs=INPUTS),
    ]

    def task(suffix: str, units: list[int] | tuple[int, ...], description: str) -> None:
        lines.extend(["", "[[task]]", f'id = "{MODEL}/{LAYER}:{suffix}"', f'layer = "{LAYER}"',
                      "units = [" + ", ".join(map(str, units)) + "]", f'description = "{description}"'])

    def single(unit: int) -> str:
        n = by_unit[unit]
        where = f"in the k = {n.cluster} cluster" if n.cluster else "in no cluster"
        return (f"zero-ablation loss increase {_nats(n.effect)} on the fit pairs; best frequency k = {n.frequency} "
                f"at R² = {n.r2:.3f} ({where})")

    for k, units in selection.clusters.items():
        r2 = np.array([by_unit[u].r2 for u in units])
        task(f"freq{k}", units,
             f"Key-frequency cluster k = {k} (w = 2π·{k}/113): the {len(units)} neurons whose best frequency is k "
             f"with R² ≥ {R2_MIN} on the fit pairs (median {np.median(r2):.3f}, lowest {r2.min():.3f}); zeroed "
             f"together they raise the fit loss by {_nats(selection.group_effects[f'freq{k}'])}.")
    for rank, unit in enumerate(selection.top, start=1):
        task(str(unit), [unit], f"Ablation rank {rank} of {len(selection.neurons)}: {single(unit)}.")
    clusters_hit = ", ".join(f"{sum(by_unit[u].cluster == k for u in selection.random)} in k = {k}"
                             for k in selection.clusters)
    task(f"random{RANDOM_N}", selection.random,
         f"A seeded-random group of {len(selection.random)} live neurons (np.random.default_rng({SEED}), the top "
         f"{TOP_N} excluded; {clusters_hit}); zeroed together they raise the fit loss by "
         f"{_nats(selection.group_effects[f'random{RANDOM_N}'])}.")
    task("all", list(range(len(selection.neurons))),
         f"The whole MLP: all {len(selection.neurons)} neurons ({clustered} in the {len(selection.clusters)} "
         f"frequency clusters); zeroed, they raise the fit loss by {_nats(selection.group_effects['all'])}.")
    return "\n".join(lines) + "\n"


def neuron_table(selection: Selection) -> str:
    """The per-neuron JSON, one neuron a line (rounded, so that it regenerates byte for byte)."""
    rows = [{"unit": n.unit, "frequency": n.frequency, "r2": None if math.isnan(n.r2) else round(n.r2, 4),
             "cluster": n.cluster, "effect_nats": float(f"{n.effect:.4g}"), "live": n.live} for n in selection.neurons]
    head = {"model": MODEL, "layer": LAYER, "split": FIT_SPLIT, "pairs": selection.n_pairs, "r2_min": R2_MIN,
            "key_frequencies": {str(k): len(units) for k, units in selection.clusters.items()}}
    fields = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    return "\n".join(["{", *fields, ' "neurons": [', ",\n".join(f"  {json.dumps(row)}" for row in rows), " ]", "}"]) + "\n"


def select_modadd(data_dir: str | Path | None = None, write: bool = False) -> tuple[str, Path]:
    """The task file text and path (written, with the per-neuron JSON beside it, when `write`)."""
    model, _ = load_model(MODEL, CHECKPOINT)
    selection = choose(model, *fit_pairs(data_dir))
    text = render(selection)
    path = paths.tasks_dir() / f"{FAMILY}.toml"
    if write:
        atomic_write_bytes(path, text.encode())
        atomic_write_bytes(path.with_suffix(".neurons.json"), neuron_table(selection).encode())
    return text, path
