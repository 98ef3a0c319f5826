"""The text kind's `inspect` (`ctx.data_kind.name == "text"`, chosen by `inspection.INSPECTORS`): a character
model's neurons by the text they fire on, its heads by where they attend.

Only the harness runs here (no submission code), on the task's FIT set (windows of the training text; the eval
windows are not read). A fit window i is `x_i # [T]` character ids (T = 128); a neuron's activation at its position
t is a_it (it reads x_i0..x_it: the character at t is the *current* one, x_i,t−1 the *previous* one).

Which units are shown: every unit of a task with at most `MAX_SHOWN` units; else the `MAX_SHOWN` of largest variance
over every fit position (`unit_variance.npz`: every unit's variance, and which are shown).

A neuron u:
- statistics of a_it over every fit window and position;
- top contexts: per window its peak s_i = max_t a_it at t_i = argmax_t a_it; the top-K windows by s_i, each shown
  as the `BEFORE` characters before t_i, the firing character x_i,t_i (highlighted: `<mark>`) and `AFTER` after,
  every character coloured by its activation (`unit<u>_top.npz`: `fit_position`, `dataset_index`, `position`,
  `activation`, `char`, and `context`, `context_activation` `# [K, BEFORE + 1 + AFTER]`, −1 / NaN past the window);
- by character: the mean activation at the positions whose current character is c,
  m_cur(c) = Σ_it a_it [x_it = c] / Σ_it [x_it = c], and whose previous character is c,
  m_prev(c) = Σ_i Σ_{t ≥ 1} a_it [x_i,t−1 = c] / Σ_i Σ_{t ≥ 1} [x_i,t−1 = c] (NaN where c never occurs; a table of
  the 65 characters, `unit<u>_by_char.npz`);
- current × previous: M(p, c) = the mean of a_it over positions t ≥ 1 with x_i,t−1 = p and x_it = c, for the `COMMON`
  most frequent characters of the fit set (a map, rows p, columns c; NaN, grey, where the pair never occurs;
  `unit<u>_pairs.npz`: `chars`, `mean`, `count`).

A head h of layer l (a unit of `blocks_l_attn_hook_z`): its attention pattern A_qk (row h of
`blocks_l_attn_hook_pattern # [H, T, T]`, read from the model) on
- real text: the first fit window (all T positions in the npz, the first `PATTERN_SHOWN` drawn);
- repeated random text: `REPEAT` characters drawn uniformly (seed: the task's) and the same `REPEAT` again.
Beside them two stripes read off those patterns: the attention to the previous character, (1/(n−1)) Σ_{q ≥ 1}
A_q,q−1 (on each), and the induction stripe on the repeated text, (1/S) Σ_{q=S}^{2S−1} A_q,q−S+1 (S = `REPEAT`:
from the second copy's character to the one after its first occurrence). Beside them the standard head scores
(`models.head_scores`: previous-token over every fit window, induction and duplicate-token on its own repeated
sequences), and statistics of the head's e values over the fit set.

Outputs as for every kind: PNGs, beside each the arrays it shows (`<name>.npz`, listed with their shapes under each
unit's "data" in `inspect.json`), `index.html` and `inspect.json`, written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.shakespeare import VOCAB, decode
from ..harness.context import TaskContext
from ..harness.passes import as_array, batches
from ..models.head_scores import head_scores
from . import figures, plots, textshow
from .figures import esc
from .shared import STATS_HEAD, Moments, finish_report, located, stats_row

MAX_SHOWN = 8  # units shown of a task with more
BEFORE, AFTER = 40, 8  # characters shown before and after a top context's firing character
COMMON = 20  # characters on the current × previous map
PATTERN_SHOWN = 48  # positions of the real window's pattern drawn
REPEAT = 24  # length S of the random sequence repeated once
READ_INSPECT = ("fit set only (windows of the training text): activations, top contexts and character tables; a head's "
                "pattern on the first fit window and on a seeded random sequence repeated (the model alone)")


# -- the fit pass -----------------------------------------------------------------------------------------------
@dataclass
class FitText:
    """What one pass over the fit set keeps."""

    tokens: np.ndarray  # [n_fit, T] int64
    kept: np.ndarray  # [n_fit, n_kept, T, ...] float32: the kept units, unit axis first
    variance: np.ndarray  # [n_units] each unit's variance over every fit position (and component)
    inputs: dict[str, dict[str, Any]]  # each allowed input's shape per example and moments


def fit_pass(ctx: TaskContext, keep: Sequence[int]) -> FitText:
    """One pass over the fit set: the windows, the activations of the units at positions `keep` of `task.units`,
    every unit's variance Var = E[a²] − E[a]² (float64 sums) and the inputs' moments."""
    task = ctx.task
    moments = {n: Moments() for n in task.inputs}
    shapes: dict[str, list[int]] = {}
    tokens, kept = [], []
    s = ss = np.zeros(len(task.units))
    count = 0
    for batch in batches(ctx, "fit", task.inputs):
        units = ctx.units_first(as_array(batch.target))  # [b, n_units, T, ...]
        flat = units.reshape(len(units), len(task.units), -1).astype(np.float64)  # [b, n_units, m]
        s, ss, count = s + flat.sum((0, 2)), ss + np.square(flat).sum((0, 2)), count + flat.shape[0] * flat.shape[2]
        kept.append(units[:, list(keep)])
        tokens.append(as_array(batch.x))
        for name, value in batch.inputs.items():
            array = as_array(value)
            shapes[name] = list(array.shape[1:])
            moments[name].update(array)
    mean = s / count
    return FitText(np.concatenate(tokens), np.concatenate(kept), np.maximum(ss / count - mean**2, 0.0),
                   {n: {"shape": shapes[n], **moments[n].result()} for n in task.inputs})


def shown_pass(ctx: TaskContext) -> tuple[FitText, np.ndarray]:
    """The fit pass keeping the shown units (module docstring), and their positions in `task.units` `# [n_shown]`:
    all of them, or, for more than `MAX_SHOWN`, the `MAX_SHOWN` of largest variance (a second pass keeps those)."""
    n = len(ctx.task.units)
    if n <= MAX_SHOWN:
        return fit_pass(ctx, range(n)), np.arange(n)
    first = fit_pass(ctx, [])
    shown = np.sort(np.argsort(-first.variance, kind="stable")[:MAX_SHOWN])
    return fit_pass(ctx, shown.tolist()), shown


# -- neurons ----------------------------------------------------------------------------------------------------
def top_contexts(a: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window the peak s_i = max_t a_it and where it is, t_i; returns the top windows by s (stable order)
    `# [k]`, their t_i `# [k]` and s_i `# [k]`, from `a # [n, T]`."""
    peak, where = a.max(axis=1), a.argmax(axis=1)
    order = np.argsort(-peak, kind="stable")[:top]
    return order, where[order], peak[order]


def context_of(ids: np.ndarray, a: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Characters [t − BEFORE, t + AFTER] of one window `ids # [T]` and their activations `a # [T]`, each
    `# [BEFORE + 1 + AFTER]`, padded with −1 / NaN outside the window (the firing character is at index BEFORE)."""
    width = BEFORE + 1 + AFTER
    chars, values = np.full(width, -1, dtype=np.int64), np.full(width, np.nan, dtype=np.float32)
    lo, hi = max(0, t - BEFORE), min(len(ids), t + AFTER + 1)
    chars[lo - t + BEFORE : hi - t + BEFORE] = ids[lo:hi]
    values[lo - t + BEFORE : hi - t + BEFORE] = a[lo:hi]
    return chars, values


def by_character(tokens: np.ndarray, a: np.ndarray) -> dict[str, np.ndarray]:
    """m_cur and m_prev `# [65]` with their counts (module docstring), from `tokens # [n, T]` and `a # [n, T]`."""
    v = len(VOCAB)
    out: dict[str, np.ndarray] = {}
    for key, ids, values in (("current", tokens, a), ("previous", tokens[:, :-1], a[:, 1:])):
        count = np.bincount(ids.ravel(), minlength=v)
        total = np.bincount(ids.ravel(), weights=values.ravel().astype(np.float64), minlength=v)
        out[f"count_{key}"] = count
        out[f"mean_{key}"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def common_characters(tokens: np.ndarray, k: int = COMMON) -> np.ndarray:
    """The `k` most frequent characters of the windows `# [k]` (ties: the lower id first)."""
    return np.argsort(-np.bincount(tokens.ravel(), minlength=len(VOCAB)), kind="stable")[:k]


def by_pair(tokens: np.ndarray, a: np.ndarray, chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """M(p, c) and its count `# [k, k]` over the characters `chars` (rows: previous p, columns: current c)."""
    v = len(VOCAB)
    pair = tokens[:, :-1].ravel() * v + tokens[:, 1:].ravel()  # previous · V + current, positions t ≥ 1
    count = np.bincount(pair, minlength=v * v).reshape(v, v)
    total = np.bincount(pair, weights=a[:, 1:].ravel().astype(np.float64), minlength=v * v).reshape(v, v)
    count, total = count[np.ix_(chars, chars)], total[np.ix_(chars, chars)]
    return np.where(count > 0, total / np.maximum(count, 1), np.nan), count


def neuron_report(ctx: TaskContext, fit: FitText, j: int, unit: int, top: int, tmp: Path
                  ) -> tuple[dict[str, Any], dict[str, str], dict[str, dict[str, Any]]]:
    """One neuron's entry for inspect.json, its PNGs and its npz descriptions (module docstring); `j`: its
    position in `fit.kept`."""
    a = fit.kept[:, j]  # [n, T]
    order, where, peak = top_contexts(a, top)
    contexts = [context_of(fit.tokens[i], a[i], int(t)) for i, t in zip(order, where)]
    files: dict[str, str] = {}
    data: dict[str, dict[str, Any]] = {}
    data["top"] = figures.save_npz(tmp / f"unit{unit}_top.npz", {
        "fit_position": order, "dataset_index": ctx.fit_indices[order], "position": where, "activation": peak,
        "char": fit.tokens[order, where], "context": np.stack([c for c, _ in contexts]).reshape(len(order), -1),
        "context_activation": np.stack([v for _, v in contexts]).reshape(len(order), -1), "before": BEFORE})
    chars = by_character(fit.tokens, a)
    data["by_char"] = figures.save_npz(tmp / f"unit{unit}_by_char.npz", {"char": np.arange(len(VOCAB)),
                                                                          "text": np.array(list(VOCAB)), **chars})
    common = common_characters(fit.tokens)
    mean, count = by_pair(fit.tokens, a, common)
    files["pairs"] = figures.save_png(plots.figure([textshow.char_map(
        mean, common, common, f"unit {unit}: mean activation by previous and current character", "mean activation",
        row_label="previous character", col_label="current character", signed=bool(np.nanmin(mean) < 0))]),
        tmp / f"unit{unit}_pairs.png")
    data["pairs"] = figures.save_npz(tmp / f"unit{unit}_pairs.npz", {"chars": common, "mean": mean, "count": count})
    entry = {
        "unit": int(unit), "activation": figures.quantile_summary(a),
        "top_contexts": [context_json(ctx, fit, i, int(t), float(s), c, v)
                         for i, t, s, (c, v) in zip(order, where, peak, contexts)],
        "by_character": [{"char": VOCAB[c], "count": int(chars["count_current"][c]),
                          "mean": nan_none(chars["mean_current"][c]),
                          "count_previous": int(chars["count_previous"][c]),
                          "mean_previous": nan_none(chars["mean_previous"][c])} for c in range(len(VOCAB))],
    }
    return entry, files, data


def context_json(ctx: TaskContext, fit: FitText, i: int, t: int, peak: float, chars: np.ndarray,
                 values: np.ndarray) -> dict[str, Any]:
    """One top context for inspect.json: where it is, its peak, the characters before and after the firing one, and
    the context's HTML (for the page; popped before the JSON is written)."""
    ids = chars[chars >= 0]
    mark = BEFORE - int((chars[:BEFORE] < 0).sum())
    vmax = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    return {"fit_position": int(i), "dataset_index": int(ctx.fit_indices[i]), "position": t, "activation": peak,
            "char": VOCAB[int(fit.tokens[i, t])], "before": "".join(VOCAB[c] for c in ids[:mark]),
            "after": "".join(VOCAB[c] for c in ids[mark + 1 :]),
            "html": textshow.coloured_text(ids, values[chars >= 0], vmax, mark=mark)}


def nan_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# -- heads ------------------------------------------------------------------------------------------------------
def head_patterns(ctx: TaskContext, ids: np.ndarray) -> np.ndarray:
    """Every head's attention pattern on one sequence `ids # [n]`: `# [H, n, n]` (rows: queries, columns: keys),
    the layer's `attn_hook_pattern` read from the model."""
    name = ctx.task.layer.replace("attn_hook_z", "attn_hook_pattern")
    with torch.no_grad():
        pattern = ctx.model.run(ctx.to_input(torch.as_tensor(ids)[None]), until=name, carry={})  # [1, H, n, n]
    return as_array(pattern)[0]


def repeated_sequence(seed: int, length: int = REPEAT) -> np.ndarray:
    """`length` characters drawn uniformly from the 65 (numpy's default_rng(seed)), then the same again `# [2·length]`."""
    once = np.random.default_rng(seed).integers(0, len(VOCAB), length)
    return np.concatenate([once, once])


def stripe(pattern: np.ndarray, offset: int, first: int) -> float:
    """The mean of A_q,q−offset over queries q ≥ `first` of a pattern `# [n, n]`: offset 1 is the attention to the
    previous character; offset S − 1 from q = S, on a sequence repeated after S, the induction stripe."""
    q = np.arange(first, len(pattern))
    return float(pattern[q, q - offset].mean())


def standard_scores(ctx: TaskContext, fit: FitText, layer: int, head: int) -> dict[str, float]:
    """The head's standard scores (`models.head_scores`: previous-token on the fit windows, induction and
    duplicate-token on its own repeated random sequences)."""
    scores = head_scores(ctx.model, windows=torch.as_tensor(fit.tokens))  # type: ignore[arg-type]
    return {"previous_token": float(scores.previous_token[layer, head]), "induction": float(scores.induction[layer, head]),
            "duplicate_token": float(scores.duplicate_token[layer, head]), "repeat": scores.repeat_length,
            "random_sequences": scores.n_repeats, "seed": scores.seed}


def pattern_figure(tmp: Path, stem: str, pattern: np.ndarray, ids: np.ndarray, title: str) -> str:
    """A pattern `# [n, n]` as a heat map on [0, 1], the characters on both axes (rows: queries, columns: keys)."""
    panel = textshow.char_map(pattern, ids, ids, title, "attention", row_label="query (attends from)",
                              col_label="key (attends to)", signed=False, vmax=1.0)
    return figures.save_png(plots.figure([panel]), tmp / f"{stem}.png")


def head_report(ctx: TaskContext, fit: FitText, j: int, head: int, tmp: Path
                ) -> tuple[dict[str, Any], dict[str, str], dict[str, dict[str, Any]]]:
    """One head's entry for inspect.json, its PNGs and its npz descriptions (module docstring)."""
    layer = int(ctx.task.layer.split("_")[1])
    real_ids = fit.tokens[0]
    real = head_patterns(ctx, real_ids)[head]  # [T, T]
    rep_ids = repeated_sequence(ctx.task.seed)
    rep = head_patterns(ctx, rep_ids)[head]  # [2S, 2S]
    files: dict[str, str] = {}
    data: dict[str, dict[str, Any]] = {}
    k = min(PATTERN_SHOWN, len(real_ids))
    files["pattern_real"] = pattern_figure(tmp, f"unit{head}_pattern_real", real[:k, :k], real_ids[:k],
                                           f"head {layer}.{head} on fit window {ctx.fit_indices[0]} (first {k})")
    data["pattern_real"] = figures.save_npz(tmp / f"unit{head}_pattern_real.npz", {
        "pattern": real, "tokens": real_ids, "shown": k, "dataset_index": ctx.fit_indices[0]})
    files["pattern_repeated"] = pattern_figure(tmp, f"unit{head}_pattern_repeated", rep, rep_ids,
                                               f"head {layer}.{head} on {REPEAT} random characters, twice")
    data["pattern_repeated"] = figures.save_npz(tmp / f"unit{head}_pattern_repeated.npz", {
        "pattern": rep, "tokens": rep_ids, "repeat": REPEAT, "seed": ctx.task.seed})
    entry = {
        "unit": int(head), "layer": layer, "head": int(head), "activation": figures.quantile_summary(fit.kept[:, j]),
        "real": {"fit_position": 0, "dataset_index": int(ctx.fit_indices[0]), "text": decode(real_ids),
                 "previous_token_attention": stripe(real, 1, 1)},
        "repeated": {"seed": ctx.task.seed, "repeat": REPEAT, "text": decode(rep_ids),
                     "previous_token_attention": stripe(rep, 1, 1), "induction_stripe": stripe(rep, REPEAT - 1, REPEAT)},
        "standard_scores": standard_scores(ctx, fit, layer, head),
    }
    return entry, files, data


# -- the report -------------------------------------------------------------------------------------------------
def inspect_text(ctx: TaskContext, dest: Path, *, top: int = 16, data_dir: str | None = None) -> dict[str, Any]:
    """The text kind's inspection report (module docstring); returns what `--json` prints."""
    task = ctx.task
    fit, shown = shown_pass(ctx)
    heads = fit.kept.ndim == 4  # [n, n_shown, T, e]: heads of attn_hook_z
    report: dict[str, Any] = {
        "task": task.id, "model": task.model, "layer": task.layer, "units": list(task.units), "dataset": task.dataset,
        "fit_split": task.fit_split, "n_fit": int(len(fit.tokens)), "read": READ_INSPECT, "inputs": fit.inputs,
        "target_shape": list(ctx.target_shape), "unit_kind": "attention head" if heads else "neuron at every position",
        "shown_units": [int(task.units[j]) for j in shown],
    }
    dest = dest.expanduser().absolute()
    with figures.atomic_dir(dest) as tmp:
        report["data"] = located(dest, {}, {"unit_variance": figures.save_npz(tmp / "unit_variance.npz", {
            "unit": np.asarray(task.units), "variance": fit.variance,
            "shown": np.isin(np.arange(len(task.units)), shown)})})["data"]  # no figure: the page lists the shown
        unit_reports, sections = [], []
        for k, j in enumerate(shown):
            unit = int(task.units[j])
            entry, files, data = (head_report(ctx, fit, k, unit, tmp) if heads
                                  else neuron_report(ctx, fit, k, unit, top, tmp))
            entry.update(located(dest, files, data))
            sections.append(head_section(entry, files) if heads else neuron_section(entry, files))
            for c in entry.get("top_contexts", []):
                c.pop("html")
            unit_reports.append(entry)
        report["unit_reports"] = unit_reports
        finish_report(report, dest, tmp, "inspect.json", lambda r: inspect_page(r, sections))
    return report


def fig_html(entry: dict[str, Any], files: dict[str, str], key: str, alt: str, caption: str) -> str:
    return figures.figure_html(files[key], alt, caption, Path(entry["data"][key]["path"]).name)


def raw_table(head: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An HTML table whose cells are HTML already (escaped where they hold text)."""
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    out = ["<table><tr>" + "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(head)) + "</tr>"]
    out += ["<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"


def fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def neuron_section(entry: dict[str, Any], files: dict[str, str]) -> str:
    """A neuron's part of the page: statistics, top contexts, the character table and the pair map."""
    top = [[c["html"], f"{c['activation']:.4g}", esc(f"{c['dataset_index']}:{c['position']}")]
           for c in entry["top_contexts"]]
    order = sorted(entry["by_character"], key=lambda r: (r["mean"] is None, -(r["mean"] or 0.0)))
    chars = [[textshow.html_name(VOCAB.index(r["char"])), esc(r["count"]), esc(fmt(r["mean"])),
              esc(r["count_previous"]), esc(fmt(r["mean_previous"]))] for r in order]
    npz = Path(entry["data"]["top"]["path"]).name
    return "\n".join([
        f"<h2>Neuron {entry['unit']}</h2>", figures.table(STATS_HEAD, [stats_row("every fit position", entry["activation"])]),
        f"<h3>Top contexts</h3><p>Per fit window its peak activation; the {BEFORE} characters before the peak, the "
        f"firing character (outlined) and {AFTER} after, each coloured by the neuron's activation there (white: 0 or "
        f"less, orange: the context's peak; hover for the value). <a href=\"{esc(npz)}\">data (.npz)</a></p>",
        raw_table(["context", "activation", "window:position"], top),
        fig_html(entry, files, "pairs", "current x previous", f"Mean activation where the previous character is p "
                 f"(row) and the current one c (column), the {COMMON} most frequent characters of the fit set "
                 "(grey: pair absent; · a space, / a newline)"),
        f"<h3>By character</h3><p>Mean activation at positions whose current character is c, and whose previous "
        f"character is c; highest current mean first. <a href=\"{esc(Path(entry['data']['by_char']['path']).name)}\">"
        "data (.npz)</a></p>",
        raw_table(["c", "n (current)", "mean (current)", "n (previous)", "mean (previous)"], chars)])


def head_section(entry: dict[str, Any], files: dict[str, str]) -> str:
    """A head's part of the page: statistics, the two patterns, the stripes and the standard scores."""
    real, rep, std = entry["real"], entry["repeated"], entry["standard_scores"]
    scores = (f"the standard scores (<code>models.head_scores</code>): previous-token {std['previous_token']:.4g} "
              f"(every fit window), induction {std['induction']:.4g} and duplicate-token {std['duplicate_token']:.4g} "
              f"({std['random_sequences']} random sequences of {std['repeat']} characters, twice)")
    return "\n".join([
        f"<h2>Head {entry['layer']}.{entry['head']}</h2>",
        figures.table(STATS_HEAD, [stats_row("every value over the fit set", entry["activation"])]),
        f"<p>On these sequences: attention to the previous character {real['previous_token_attention']:.4g} (real "
        f"text), {rep['previous_token_attention']:.4g} (repeated); induction stripe (to the character after the "
        f"earlier occurrence) {rep['induction_stripe']:.4g}; {scores}.</p>",
        fig_html(entry, files, "pattern_real", "pattern on real text", "Attention pattern on a window of the training "
                 "text (rows: the query's character, columns: the key's; · a space, / a newline)"),
        fig_html(entry, files, "pattern_repeated", "pattern on repeated text", f"Attention pattern on {REPEAT} random "
                 "characters twice: an induction head lights the stripe one right of the diagonal offset by "
                 f"{REPEAT}, a previous-token head the sub-diagonal")])


def inspect_page(report: dict[str, Any], sections: list[str]) -> str:
    rows = [[name, "×".join(map(str, v["shape"])), f"{v['min']:.4g}", f"{v['max']:.4g}", f"{v['mean']:.4g}",
             f"{v['sd']:.4g}"] for name, v in report["inputs"].items()]
    shown = report["shown_units"]
    note = "" if len(shown) == len(report["units"]) else (
        f" Shown: the {len(shown)} of largest variance over the fit set ({', '.join(map(str, shown))}); every unit's "
        "variance is in unit_variance.npz.")
    body = [f"<h1>inspect {esc(report['task'])}</h1>",
            f"<p>Model {esc(report['model'])}, layer <code>{esc(report['layer'])}</code>, {len(report['units'])} "
            f"unit(s) ({esc(report['unit_kind'])}); per-example target shape "
            f"{esc('×'.join(map(str, report['target_shape'])))}.{esc(note)} Everything here is from the <b>fit set</b> "
            f"({esc(report['dataset'])} {esc(report['fit_split'])}, n = {report['n_fit']} windows); the eval set is "
            "not read.</p>",
            "<p>Each figure's numbers are in the <code>.npz</code> beside it (<code>numpy.load</code>), listed with "
            "their arrays' shapes in <a href=\"inspect.json\">inspect.json</a>.</p>",
            "<h2>Inputs a replacement may read</h2>",
            figures.table(["input", "shape per example", "min", "max", "mean", "sd"], rows), *sections]
    return figures.page(f"inspect {report['task']}", "\n".join(body))
