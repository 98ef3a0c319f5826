"""Targets in shakespeare-char, chosen on the fit windows alone: `replacebench select shakespeare-char [--write]`.

Everything is computed on the task's fit set: FIT_SIZE windows of the `train` split, the seeded draw
`seeded_subset(labels, FIT_SIZE, SEED + 1, balanced=False)` that scoring uses (`harness.context`). The `val`
windows (the eval set) are never read here, so they cannot sway the choice. Losses are the text kind's: the mean
next-character cross-entropy over a window's 128 positions, averaged over windows (nats per character).

1. **Neurons** (`blocks_l_mlp_hook_post`, l = 0, 1; 512 GELU neurons each, at every position). The ablation is
   the tasks' primary one, the mean: neuron u set to its fit-set mean at each position, m_tu = mean_i n_itu.
   - A first-order estimate ranks all 1,024 neurons at the cost of one backward pass (attribution patching):
     â_u = mean_i Σ_t (m_tu − n_itu) · ∂L_i/∂n_itu.
   - The CANDIDATES neurons of each layer with the largest â are then ablated exactly, one at a time:
     d_u = mean_i L_i(n_u := m_u) − mean_i L_i.
   - Power: a neuron qualifies when the per-window effect d_i = L_i(ablated) − L_i has t = mean(d) / (sd(d)/√n)
     ≥ POWER_MARGIN on the fit windows. It ships when that also holds on the eval windows (confirmation, as in
     `maintainer/select.py`: the eval data decides only whether a candidate ships, never the order of candidates).
   - Tasks: the first TOP_N confirmed of each layer in decreasing d_u (`:<unit>`), and one seeded-random live
     neuron per layer (live: GELU output above LIVE_THRESHOLD at ≥ LIVE_FRACTION of fit positions): the first
     confirmed in the order `np.random.default_rng(SEED).permutation` gives the sorted live neurons not among the
     candidates (`:<unit>`, described as random).
2. **Heads** (`blocks_l_attn_hook_z`, each head's output before W_O, one unit of e = 32 values at every position):
   the head with the largest previous-token score on the fit windows (`models.head_scores`) and the layer-1 head with the largest
   induction score, each as `:head<h>`.
3. **One whole MLP layer**: all 512 neurons of `blocks_0_mlp_hook_post` (`:all`).

Inputs: a task may read the tokens, the embeddings, the residual stream at every earlier point, and the attention
patterns of earlier heads (a head task does not get its own layer's patterns: they are most of what it computes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import paths
from ..atomic import atomic_write_bytes
from ..data.base import seeded_subset
from .select import POWER_MARGIN
from ..download import sha256_file
from ..models.head_scores import head_scores  # noqa
from ..models.registry import load_model
from ..models.shakespeare import N_LAYERS, ShakespeareChar
from ..tasks import task_file_head
from ..zoo import SHAKESPEARE_SELECT, open_split

MODEL = FAMILY = SHAKESPEARE_SELECT
DATASET = "tinyshakespeare"
CHECKPOINT = f"checkpoints/{MODEL}.safetensors"
FIT_SPLIT, FIT_SIZE = "train", 2000
EVAL_SPLIT, EVAL_SIZE = "val", 864  # written into the task file only; never opened here
SEED, BATCH_SIZE = 0, 96
TOP_N, CANDIDATES = 2, 8
LIVE_THRESHOLD, LIVE_FRACTION = 0.1, 0.01
INDUCTION_MIN = 0.1  # an induction score below this is not an induction head (a head that does it scores ~1)
CHUNK = 100  # fit windows per forward pass here


def post_name(layer: int) -> str:
    return f"blocks_{layer}_mlp_hook_post"


def allowed_inputs(layer: str) -> tuple[str, ...]:
    """The named inputs of a task at `layer` (module docstring): tokens, embeddings, every earlier residual point,
    and earlier heads' patterns (for a head, the patterns of earlier layers only)."""
    names = ShakespeareChar.stage_names
    at = names.index(layer)
    head_layer = int(layer.split("_")[1]) if layer.endswith("attn_hook_z") else None
    picked = ["tokens"]
    for name in names[:at]:
        if name == "hook_embed" or "hook_resid" in name:
            picked.append(name)
        elif name.endswith("attn_hook_pattern") and (head_layer is None or int(name.split("_")[1]) < head_layer):
            picked.append(name)
    return tuple(picked)


@dataclass
class Selection:
    n_windows: int
    estimate: dict[int, np.ndarray]  # layer → â # [512]
    exact: dict[int, dict[int, float]]  # layer → unit → d_u (nats), the candidates and the random picks
    live: dict[int, np.ndarray]  # layer → fraction of fit positions with GELU output > LIVE_THRESHOLD # [512]
    top: dict[int, list[int]]
    random: dict[int, int]
    previous_token_head: tuple[int, int]  # (layer, head)
    induction_head: tuple[int, int]
    t_fit: dict[int, dict[int, float]] = field(default_factory=dict)  # layer → unit → t of d on the fit windows
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # head scores # [L, H]
    whole_layer_effect: float = 0.0


def fit_windows(data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs `# [FIT_SIZE, 128]`, targets `# [FIT_SIZE, 128]`) of the fit set: the only windows read here."""
    fit = open_split(DATASET, FIT_SPLIT, data_dir)
    labels = fit.labels()
    indices = seeded_subset(labels, FIT_SIZE, SEED + 1, balanced=False)
    return fit.load(indices), torch.as_tensor(labels[indices])


def window_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-window mean next-character cross-entropy `# [b]` from `logits # [b, T, V]`, `targets # [b, T]`."""
    b, t, v = logits.shape
    return F.cross_entropy(logits.reshape(b * t, v), targets.reshape(b * t), reduction="none").reshape(b, t).mean(1)


@torch.no_grad()
def _posts(model: ShakespeareChar, x: torch.Tensor) -> dict[int, torch.Tensor]:
    carry: dict[str, torch.Tensor] = {}
    out, previous = {}, None
    for layer in range(N_LAYERS):
        act = model.run(x if previous is None else out[layer - 1], after=previous, until=post_name(layer), carry=carry)
        out[layer], previous = act, post_name(layer)
    return out


def t_value(d: np.ndarray) -> float:
    """t = mean(d) / (sd(d) / √n) of per-window effects `# [n]`."""
    return float(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))


def mean_losses(model: ShakespeareChar, inputs: torch.Tensor, targets: torch.Tensor, layer: int | None = None,
                units: list[int] | None = None, means: dict[int, torch.Tensor] | None = None) -> np.ndarray:
    """Per-window losses `# [n]` (float64), with `units` of `layer` set to their per-position means (None: clean)."""
    losses = []
    with torch.no_grad():
        for start in range(0, len(inputs), CHUNK):
            x, y = inputs[start : start + CHUNK], targets[start : start + CHUNK]
            carry: dict[str, torch.Tensor] = {}
            if layer is None:
                logits = model.run(x, carry=carry)
            else:
                act = model.run(x, until=post_name(layer), carry=carry).clone()  # [b, T, 512]
                assert means is not None and units is not None
                act[..., units] = means[layer][:, units]
                logits = model.run(act, after=post_name(layer), carry=carry)
            losses.append(window_loss(logits, y).double().numpy())
    return np.concatenate(losses)


def choose(model: ShakespeareChar, inputs: torch.Tensor, targets: torch.Tensor, data_dir: str | Path | None = None) -> Selection:
    """Every choice of the module docstring, from the fit windows (the eval windows confirm power only)."""
    val = open_split(DATASET, EVAL_SPLIT, data_dir)
    val_inputs, val_targets = val.inputs, torch.as_tensor(val.labels())
    sums = {l: torch.zeros(128, 512, dtype=torch.float64) for l in range(N_LAYERS)}
    live_counts = {l: torch.zeros(512, dtype=torch.float64) for l in range(N_LAYERS)}
    for start in range(0, len(inputs), CHUNK):
        for layer, act in _posts(model, inputs[start : start + CHUNK]).items():
            sums[layer] += act.double().sum(0)
            live_counts[layer] += (act > LIVE_THRESHOLD).double().sum((0, 1))
    means = {l: (s / len(inputs)).float() for l, s in sums.items()}  # [T, 512]
    live = {l: (c / (len(inputs) * 128)).numpy() for l, c in live_counts.items()}

    estimate = {l: np.zeros(512) for l in range(N_LAYERS)}
    for start in range(0, len(inputs), CHUNK):
        x, y = inputs[start : start + CHUNK], targets[start : start + CHUNK]
        with torch.enable_grad():
            carry: dict[str, torch.Tensor] = {}
            post0 = model.run(x, until=post_name(0), carry=carry).detach().requires_grad_(True)
            post1 = model.run(post0, after=post_name(0), until=post_name(1), carry=carry)
            post1.retain_grad()
            logits = model.run(post1, after=post_name(1), carry=carry)
            window_loss(logits, y).sum().backward()
        for layer, act in ((0, post0), (1, post1)):
            assert act.grad is not None
            estimate[layer] += ((means[layer] - act.detach()) * act.grad).double().sum((0, 1)).numpy()
    estimate = {l: e / len(inputs) for l, e in estimate.items()}

    clean, val_clean = mean_losses(model, inputs, targets), mean_losses(model, val_inputs, val_targets)
    exact: dict[int, dict[int, float]] = {}
    t_fit: dict[int, dict[int, float]] = {}
    top: dict[int, list[int]] = {}
    random: dict[int, int] = {}
    rng = np.random.default_rng(SEED)

    def measure(layer: int, unit: int) -> bool:
        """d_u and t on the fit windows; whether the unit qualifies and is confirmed on the eval windows."""
        d = mean_losses(model, inputs, targets, layer, [unit], means) - clean
        exact[layer][unit], t_fit[layer][unit] = float(d.mean()), t_value(d)
        if t_fit[layer][unit] < POWER_MARGIN:
            return False
        return t_value(mean_losses(model, val_inputs, val_targets, layer, [unit], means) - val_clean) >= POWER_MARGIN

    for layer in range(N_LAYERS):
        exact[layer], t_fit[layer] = {}, {}
        candidates = [int(u) for u in np.argsort(-estimate[layer], kind="stable")[:CANDIDATES]]
        for unit in candidates:
            exact[layer][unit] = float((mean_losses(model, inputs, targets, layer, [unit], means) - clean).mean())
        top[layer] = [u for u in sorted(candidates, key=lambda u: -exact[layer][u]) if measure(layer, u)][:TOP_N]
        pool = [u for u in np.flatnonzero(live[layer] >= LIVE_FRACTION).tolist() if u not in candidates]
        random[layer] = next(int(u) for u in rng.permutation(pool) if measure(layer, int(u)))
    whole = float((mean_losses(model, inputs, targets, 0, list(range(512)), means) - clean).mean())

    scores = head_scores(model, windows=inputs)
    prev, induction = scores.best("previous_token"), scores.best("induction", N_LAYERS - 1)
    return Selection(len(inputs), estimate, exact, live, top, random, prev, induction, t_fit,
                     {"previous_token": scores.previous_token, "induction": scores.induction}, whole)


def render(selection: Selection) -> str:
    """The task file."""
    s = selection
    lines = [
        f"# Tasks for {MODEL}. Generated by `replacebench select {FAMILY} --write`; do not edit by hand.",
        f"# Chosen on the {s.n_windows} fit windows of 'train' alone (benchmark/maintainer/shakespeare_select.py). "
        "Primary ablation: the mean (per position, over the fit set).",
        f"# Neurons: the top {TOP_N} of each layer by exact mean-ablation loss increase among the {CANDIDATES} ranked "
        f"first by attribution, and one seeded-random live neuron per layer (np.random.default_rng({SEED})).",
        "# Heads: the highest previous-token score, and the layer-1 head with the highest induction score "
        "(models/head_scores.py). Whole layer: blocks_0_mlp_hook_post.",
        "",
        *task_file_head(MODEL, CHECKPOINT, sha256_file(paths.PROJECT_ROOT / CHECKPOINT), dataset=DATASET,
                        eval_split=EVAL_SPLIT, eval_size=EVAL_SIZE, fit_split=FIT_SPLIT, fit_size=FIT_SIZE, seed=SEED,
                        batch_size=BATCH_SIZE, topk=()),
    ]
    lines = [line.replace('ablation = "zero"', 'ablation = "mean"') for line in lines]

    def strings(values: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    def task(layer: str, suffix: str, units: list[int], description: str) -> None:
        lines.extend(["", "[[task]]", f'id = "{MODEL}/{layer}:{suffix}"', f'layer = "{layer}"',
                      "units = [" + ", ".join(map(str, units)) + "]", f"inputs = {strings(allowed_inputs(layer))}",
                      f'description = "{description}"'])

    for layer in range(N_LAYERS):
        for rank, unit in enumerate(s.top[layer], start=1):
            task(post_name(layer), str(unit), [unit],
                 f"Layer-{layer} neuron, ablation rank {rank} of 512: mean-ablation loss increase "
                 f"{s.exact[layer][unit]:+.4g} nats/char on the fit windows (t = {s.t_fit[layer][unit]:.1f}); live at "
                 f"{100 * s.live[layer][unit]:.1f}% of positions.")
    for layer in range(N_LAYERS):
        unit = s.random[layer]
        task(post_name(layer), str(unit), [unit],
             f"A seeded-random live layer-{layer} neuron: mean-ablation loss increase {s.exact[layer][unit]:+.4g} "
             f"nats/char on the fit windows (t = {s.t_fit[layer][unit]:.1f}); live at "
             f"{100 * s.live[layer][unit]:.1f}% of positions.")
    sc = s.scores
    for (layer, head), what in ((s.previous_token_head, "previous-token"), (s.induction_head, "induction")):
        scores = (f"previous-token score {sc['previous_token'][layer, head]:.3f}, induction score "
                  f"{sc['induction'][layer, head]:.3f} (models/head_scores.py)")
        if what == "induction" and sc["induction"][layer, head] < INDUCTION_MIN:
            title = (f"The layer-1 head with the highest induction score, {layer}.{head}, which is not an induction head "
                     f"(no head of this checkpoint scores {INDUCTION_MIN} or more)")
        else:
            title = f"The {what} head {layer}.{head}"
        task(f"blocks_{layer}_attn_hook_z", f"head{head}", [head],
             f"{title}: {scores}; replaced as one unit, its 32 values at every position.")
    task(post_name(0), "all", list(range(512)),
         f"The whole layer-0 MLP: all 512 neurons; mean-ablated, they raise the fit loss by "
         f"{s.whole_layer_effect:+.4g} nats/char.")
    return "\n".join(lines) + "\n"


def select_shakespeare(data_dir: str | Path | None = None, write: bool = False) -> tuple[str, Path]:
    """The task file text and path (written when `write`)."""
    model, _ = load_model(MODEL, CHECKPOINT)
    selection = choose(model, *fit_windows(data_dir), data_dir=data_dir)  # type: ignore[arg-type]
    text = render(selection)
    path = paths.tasks_dir() / f"{FAMILY}.toml"
    if write:
        atomic_write_bytes(path, text.encode())
    return text, path
