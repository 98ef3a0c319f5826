"""The tokens kind's pictures for `inspect` and `diagnose` (`ctx.data_kind.name == "tokens"`, chosen by
`inspection.INSPECTORS` and `diagnosis.REPORTS`): modular addition's (a, b) grid and its Fourier power.

Every input `a b =` (a, b in 0..p−1, p = 113) is public and the model reads nothing else, so the p × p grid of pairs
is the whole of a neuron's function. `inspect` runs the model (no submission, no label) on all p² = 12,769 pairs; its
statistics and top examples are the fit set's, as for images. A grid is `# [p, p]`, row a, column b (pair number
i = p·a + b; `fourier`). Every grid's npz has `split # [p, p]` int8: 1 where the pair is in the task's fit set, 2 in
its eval set, 0 in neither (only with --fit-size or --eval-size); the JSON has the same under "grid" as p strings of
p characters ("membership": row a, character b: f, e or .).

A unit is shown by one value per pair: its activation, or, for a unit with axes of its own (a head of
`attn_hook_z # [H, 32]`), its component of largest variance over the grid (flat index under "component"; null
for a plain unit).

inspect, per unit, with g(a, b) the unit's activation on pair (a, b):
- statistics over the fit set (every component) and over the grid (the value shown); the top-K fit pairs by it;
- the grid g (`unit<u>_grid`: `activation`, `split`);
- its 2-D Fourier power P (|DFT2|², constant term removed; `fourier` defines the terms of frequency k), with the
  dominant frequency k* and its share of the power s_k* (`unit<u>_fourier`: `power`, `terms` of k*), and every
  frequency's share s_k, k = 1..(p−1)/2 (`unit<u>_spectrum`: `k`, `share`, `frequency_power`).

diagnose runs the fitted submission on the eval pairs (the scored pass, as `score`) and then once more on the fit
pairs (`replace_fit_pairs`, same room, same validated outputs), and shows, besides what it shows for every kind
(fidelity, the most divergent pairs, by answer and by decile, the scatter; `shared`):
- per unit, the error e(a, b) = r(a, b) − g(a, b), the replacement's output minus the unit's activation, on the eval
  pairs beside the fit pairs (the other set grey), on one colour scale (`unit<u>_error_grid`: `error`, `original`,
  `replaced`, `split`; NaN on pairs in neither set), and the dominant frequency of g and, where the two sets cover
  the grid, of r;
- the per-example loss difference ΔL(a, b) = L_replaced − L_clean (cross-entropy of the answer, nats) the same way
  (`loss_grid`: `loss_difference`, `loss_clean`, `loss_replaced`, `split`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.modadd import P
from ..harness.context import TaskContext
from ..harness.passes import ReplaceCalls, as_array, batches, logits_from, units_on, with_units
from ..sandbox.room import IsolatedSubmission
from . import figures, fourier, plots
from .figures import esc
from .shared import (STATS_HEAD, Moments, by_class, by_decile, finish_report, fmt_r, located, per_example_value, report_head,
                     scatter_figure, stats_row)

FIT, EVAL = 1, 2  # `split` codes; 0: neither
MASKED = (170, 170, 170)  # a pair outside a panel's set
CELL_PX = 3  # display pixels per grid cell
READ_INSPECT = ("fit set (inputs and answers) for the statistics and top pairs; the model alone on the whole grid of "
                "(a, b) for the grid and Fourier figures (every input is public; no eval answer is read)")
READ_DIAGNOSE = ("eval pairs, as score, then the fit pairs, replaced once more by the same fitted submission; the "
                 "submission got the allowed inputs only (no labels, no model)")


# -- the grid ---------------------------------------------------------------------------------------------------
def grid_units(ctx: TaskContext) -> np.ndarray:
    """The target units on every pair `# [p², n_units, ...]` float32, pair i at row i (the model only)."""
    tokens = torch.as_tensor(fourier.grid_tokens(P))  # [p², 3]
    size = ctx.task.batch_size
    return np.concatenate([as_array(units_on(ctx, tokens[s : s + size])) for s in range(0, len(tokens), size)])


def flat(units: np.ndarray) -> np.ndarray:
    """`# [n, n_units, ...]` → `# [n, n_units, m]`, m the number of components of a unit (1 for a plain unit)."""
    return units.reshape(units.shape[0], units.shape[1], -1)


def shown_components(grid: np.ndarray) -> np.ndarray:
    """Per unit, the component shown `# [n_units]`: the one of largest variance over the grid (0 for a plain unit)."""
    return flat(grid).astype(np.float64).var(axis=0).argmax(axis=1)


def set_pairs(ctx: TaskContext) -> tuple[np.ndarray, np.ndarray]:
    """The pair numbers of the fit set `# [n_fit]` and of the eval set `# [n_eval]`, in their sets' order."""
    fit = fourier.pair_numbers(ctx.fit_set.load(ctx.fit_indices).numpy(), P)
    ev = fourier.pair_numbers(ctx.eval_set.load(ctx.eval_indices).numpy(), P)
    return fit, ev


def membership(fit: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """`split # [p, p]` int8: FIT, EVAL or 0 per pair (module docstring)."""
    split = np.zeros(P * P, dtype=np.int8)
    split[fit], split[ev] = FIT, EVAL
    return split.reshape(P, P)


def grid_json(split: np.ndarray) -> dict[str, Any]:
    """What the report says about the grid and which pairs are fit and eval."""
    rows = ["".join(".fe"[int(c)] for c in row) for row in split]
    return {"p": P, "pairs": P * P, "rows": "a", "columns": "b", "pair_number": f"i = {P}·a + b",
            "n_fit_pairs": int((split == FIT).sum()), "n_eval_pairs": int((split == EVAL).sum()),
            "n_neither": int((split == 0).sum()),
            "membership": rows, "membership_key": "row a, character b: f fit set, e eval set, . neither"}


def grid_panel(values: np.ndarray, title: str, bar_label: str, *, signed: bool, vmax: float | None = None,
               shown: np.ndarray | None = None) -> plots.Panel:
    """A grid `# [p, p]` as a map panel (rows a, columns b, `CELL_PX` px a cell): the signed ramp or the heat ramp
    up to `vmax` (default the largest |value| shown); pairs outside `shown` (bool `# [p, p]`) and NaNs grey."""
    keep = np.isfinite(values) if shown is None else shown & np.isfinite(values)
    v = np.where(keep, values, 0.0)
    if signed:
        m = float(np.abs(v).max()) if vmax is None else vmax
        rgb, bar = plots.signed_rgb(v, m), plots.signed_bar(m, bar_label)
    else:
        m = float(v.max()) if vmax is None else vmax
        rgb, bar = plots.heat_rgb(v, m), plots.heat_bar(m, bar_label)
    rgb[~keep] = MASKED
    size = (P * CELL_PX, P * CELL_PX)
    return plots.Panel(figures.upsample(rgb, size), P, P, title, bar, "a", "b")


def fourier_json(g: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A complete grid's Fourier summary for the JSON, and the arrays behind its figures (`fourier`)."""
    pw = fourier.power(g)
    k, share = fourier.dominant(pw)
    per_k = fourier.frequency_power(pw)
    top = np.argsort(-share[1:], kind="stable")[:5] + 1
    summary = {"dominant_frequency": k or None, "share": float(share[k]) if k else None,
               "top_frequencies": [{"k": int(j), "share": float(share[j])} for j in top if share[j] > 0],
               "owned_share": float(share.sum()), "total_power": float(pw.sum())}
    terms = np.array(fourier.frequency_terms(k, P) if k else np.zeros((0, 2)), dtype=np.int64)
    return summary, {"power": pw, "terms": terms, "frequency_power": per_k, "share": share}


# -- inspect ----------------------------------------------------------------------------------------------------
def fit_pass(ctx: TaskContext) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """One pass over the fit set: the target units `# [n_fit, n_units, ...]` and each allowed input's shape per
    example and moments (token ids as numbers)."""
    task = ctx.task
    moments = {n: Moments() for n in task.inputs}
    shapes: dict[str, list[int]] = {}
    targets = []
    for batch in batches(ctx, "fit", task.inputs):
        targets.append(as_array(batch.target))
        for name, value in batch.inputs.items():
            array = as_array(value)
            shapes[name] = list(array.shape[1:])
            moments[name].update(array)
    return np.concatenate(targets), {n: {"shape": shapes[n], **moments[n].result()} for n in task.inputs}


def inspect_pairs(ctx: TaskContext, dest: Path, *, top: int = 16, data_dir: str | None = None) -> dict[str, Any]:
    """The tokens kind's inspection report (module docstring); returns what `--json` prints."""
    task = ctx.task
    acts, input_info = fit_pass(ctx)  # [n_fit, n_units, ...]
    grid = grid_units(ctx)  # [p², n_units, ...]
    component = shown_components(grid)
    fit_pairs, eval_pairs = set_pairs(ctx)
    split = membership(fit_pairs, eval_pairs)
    labels = ctx.fit_set.labels()[ctx.fit_indices]
    n = len(acts)
    plain = acts.ndim == 2
    report: dict[str, Any] = {
        "task": task.id, "model": task.model, "layer": task.layer, "units": list(task.units),
        "dataset": task.dataset, "fit_split": task.fit_split, "n_fit": int(n), "read": READ_INSPECT,
        "grid": grid_json(split), "inputs": input_info, "target_shape": list(acts.shape[1:]),
        "unit_kind": "dense unit" if plain else "unit with axes (shown: its component of largest variance on the grid)",
        "fourier": fourier.DEFINITION,
    }
    dest = dest.expanduser().absolute()
    with figures.atomic_dir(dest) as tmp:
        unit_reports, sections = [], []
        for j, unit in enumerate(task.units):
            c = int(component[j])
            score = flat(acts)[:, j, c]  # [n_fit]
            g = flat(grid)[:, j, c].reshape(P, P).astype(np.float64)  # [p, p]
            order = np.argsort(-score, kind="stable")[:top]
            tokens = ctx.fit_set.load(ctx.fit_indices[order]).numpy()  # [k, 3]
            files: dict[str, str] = {}
            data: dict[str, dict[str, Any]] = {}
            signed = bool(g.min() < 0)
            files["grid"] = figures.save_png(plots.figure([grid_panel(
                g, f"unit {unit}: activation on all {P * P:,} pairs", "activation", signed=signed)]),
                tmp / f"unit{unit}_grid.png")
            data["grid"] = figures.save_npz(tmp / f"unit{unit}_grid.npz", {
                "activation": g.astype(np.float32), "split": split, "component": c})
            summary, arrays = fourier_json(g)
            k = summary["dominant_frequency"] or 0
            title = (f"|DFT2|^2, k* = {k} holds {100 * summary['share']:.1f}%" if k else "|DFT2|^2 (no power)")
            files["fourier"] = figures.save_png(plots.figure([plots.Panel(
                figures.upsample(plots.heat_rgb(arrays["power"]), (P * CELL_PX, P * CELL_PX)), P, P, title,
                plots.heat_bar(float(arrays["power"].max()), "power"), "frequency of a", "frequency of b")]),
                tmp / f"unit{unit}_fourier.png")
            data["fourier"] = figures.save_npz(tmp / f"unit{unit}_fourier.npz", {
                "power": arrays["power"], "dominant_frequency": k, "terms": arrays["terms"],
                "total_power": summary["total_power"]})
            files["spectrum"] = figures.save_png(plots.bars(
                arrays["share"][1:], first=1, highlight=k or None, label_x="frequency k",
                label_y="share of power"), tmp / f"unit{unit}_spectrum.png")
            data["spectrum"] = figures.save_npz(tmp / f"unit{unit}_spectrum.npz", {
                "k": np.arange(1, P // 2 + 1), "share": arrays["share"][1:],
                "frequency_power": arrays["frequency_power"][1:]})
            entry: dict[str, Any] = {
                "unit": int(unit), "component": None if plain else c,
                "activation": figures.quantile_summary(acts[:, j]), "grid_activation": figures.quantile_summary(g),
                "top_examples": [
                    {"fit_position": int(i), "dataset_index": int(ctx.fit_indices[i]), "pair": int(P * t[0] + t[1]),
                     "a": int(t[0]), "b": int(t[1]), "input": ctx.data_kind.describe(t), "answer": int(labels[i]),
                     "score": float(score[i])} for i, t in zip(order, tokens)],
                "fourier": summary,
                **located(dest, files, data),
            }
            unit_reports.append(entry)
            sections.append(inspect_section(entry, files))
        report["unit_reports"] = unit_reports
        finish_report(report, dest, tmp, "inspect.json", lambda r: inspect_page(r, sections))
    return report


def fig_html(entry: dict[str, Any], files: dict[str, str], key: str, alt: str, caption: str) -> str:
    return figures.figure_html(files[key], alt, caption, Path(entry["data"][key]["path"]).name)


def inspect_section(entry: dict[str, Any], files: dict[str, str]) -> str:
    f = entry["fourier"]
    freq = (f"dominant frequency k* = {f['dominant_frequency']} (w = 2π·{f['dominant_frequency']}/{P}), "
            f"{100 * f['share']:.1f}% of the power" if f["dominant_frequency"] else "no power (constant on the grid)")
    rows = [stats_row("fit set", entry["activation"]), stats_row(f"all {P * P:,} pairs", entry["grid_activation"])]
    top = [[e["input"], str(e["answer"]), f"{e['score']:.4g}"] for e in entry["top_examples"]]
    note = "" if entry["component"] is None else f" (component {entry['component']})"
    others = ", ".join(f"k = {t['k']}: {100 * t['share']:.1f}%" for t in f["top_frequencies"][1:])
    return "\n".join([
        f"<h2>Unit {entry['unit']}{esc(note)}</h2>", figures.table(STATS_HEAD, rows),
        f"<p>{esc(freq)}; next: {esc(others or '—')}.</p>",
        fig_html(entry, files, "grid", "grid", f"Activation on every pair (a, b), row a, column b; all {P * P:,} "
                 "pairs (which are fit and eval: <code>split</code> in the .npz)"),
        fig_html(entry, files, "fourier", "Fourier power", "2-D Fourier power |DFT2|² of the grid, constant term "
                 "removed (row: frequency of a, column: frequency of b; k and 113 − k are one frequency)"),
        fig_html(entry, files, "spectrum", "spectrum", "Share of the power in each frequency k: the terms (±k, 0), "
                 "(0, ±k), (±k, ±k); red: the dominant one"),
        "<h3>Top fit pairs</h3>", figures.table(["input", "answer", "activation"], top)])


def inspect_page(report: dict[str, Any], sections: list[str]) -> str:
    rows = [[name, "×".join(map(str, v["shape"])), f"{v['min']:.4g}", f"{v['max']:.4g}", f"{v['mean']:.4g}",
             f"{v['sd']:.4g}"] for name, v in report["inputs"].items()]
    g = report["grid"]
    body = [f"<h1>inspect {esc(report['task'])}</h1>",
            f"<p>Model {esc(report['model'])}, layer <code>{esc(report['layer'])}</code>, units "
            f"{esc(', '.join(map(str, report['units'])))} ({esc(report['unit_kind'])}). Statistics and top pairs are "
            f"from the <b>fit set</b> ({esc(report['dataset'])} {esc(report['fit_split'])}, n = {report['n_fit']}); "
            f"the grids show the model on all {g['pairs']:,} pairs (a, b), which are public: {g['n_fit_pairs']:,} fit, "
            f"{g['n_eval_pairs']:,} eval, {g['n_neither']:,} neither (<code>grid.membership</code> in inspect.json).</p>",
            f"<p>Fourier power: {esc(report['fourier'])}</p>",
            "<p>Each figure's numbers are in the <code>.npz</code> beside it (<code>numpy.load</code>), listed with "
            "their arrays' shapes in <a href=\"inspect.json\">inspect.json</a>.</p>",
            "<h2>Inputs a replacement may read</h2>",
            figures.table(["input", "shape per example", "min", "max", "mean", "sd"], rows), *sections]
    return figures.page(f"inspect {report['task']}", "\n".join(body))


# -- diagnose ---------------------------------------------------------------------------------------------------
@dataclass
class FitPairs:
    """The fitted submission on the fit pairs, in the fit set's order."""

    original: np.ndarray  # [n_fit, n_units, ...]
    replaced: np.ndarray  # [n_fit, n_units, ...], validated
    loss_clean: np.ndarray  # [n_fit]
    loss_replaced: np.ndarray  # [n_fit]


def replace_fit_pairs(ctx: TaskContext, room: IsolatedSubmission) -> FitPairs:
    """After the scored pass, in the same room: the submission's output on the fit pairs (validated, as `replace`
    is always called: `passes.ReplaceCalls`) and the loss with it spliced in, beside the clean loss."""
    assert room.replace_signature is not None
    replace = ReplaceCalls(room, ctx.target_shape)
    parts: dict[str, list[np.ndarray]] = {"original": [], "replaced": [], "loss_clean": [], "loss_replaced": []}
    for batch in batches(ctx, "fit", room.replace_signature.inputs):
        out = replace(batch.inputs, len(batch))  # [b, n_units, ...]
        parts["original"].append(as_array(batch.target))
        parts["replaced"].append(out.copy())
        spliced = with_units(ctx, batch.activation, torch.from_numpy(out))
        for key, activation in (("loss_clean", batch.activation), ("loss_replaced", spliced)):
            logits = logits_from(ctx, activation, batch.carry)
            parts[key].append(ctx.data_kind.per_example_outputs(logits, batch.labels, ())["loss"])
    return FitPairs(**{k: np.concatenate(v) for k, v in parts.items()})


def write_diagnosis(ctx: TaskContext, name: str, dest: Path, o_all: np.ndarray, r_all: np.ndarray,
                    loss_clean: np.ndarray, loss_replaced: np.ndarray, fidelity: list[dict[str, Any]],
                    isolation: dict[str, Any], top: int, data_dir: str | None, extra: FitPairs) -> dict[str, Any]:
    """The tokens kind's diagnose report (module docstring): `o_all`, `r_all` `# [n_eval, n_units, ...]` and the
    losses `# [n_eval]` from the scored pass, `extra` from `replace_fit_pairs`."""
    task = ctx.task
    n = len(o_all)
    labels = ctx.eval_labels
    fit_pairs, eval_pairs = set_pairs(ctx)
    split = membership(fit_pairs, eval_pairs)
    both = np.concatenate([eval_pairs, fit_pairs])
    component = shown_components(grid_units(ctx))
    divergence = np.abs(r_all - o_all).reshape(n, -1).mean(axis=1)  # [n]
    delta_loss = loss_replaced.astype(np.float64) - loss_clean.astype(np.float64)  # [n]
    delta_fit = extra.loss_replaced.astype(np.float64) - extra.loss_clean.astype(np.float64)  # [n_fit]
    o_ex, r_ex = per_example_value(o_all), per_example_value(r_all)  # [n, n_units]
    tokens = ctx.eval_set.load(ctx.eval_indices).numpy()  # [n, 3]
    dest = dest.expanduser().absolute()
    report = report_head(ctx, name, n, isolation, loss_clean, loss_replaced, fidelity, READ_DIAGNOSE)
    report["grid"] = grid_json(split)
    report["mean_loss_fit_pairs"] = {"clean": float(extra.loss_clean.mean()), "replaced": float(extra.loss_replaced.mean())}

    def example(i: int) -> dict[str, Any]:
        t = tokens[i]
        return {"eval_position": int(i), "dataset_index": int(ctx.eval_indices[i]), "pair": int(eval_pairs[i]),
                "a": int(t[0]), "b": int(t[1]), "input": ctx.data_kind.describe(t), "label": int(labels[i]),
                "divergence": float(divergence[i]), "loss_clean": float(loss_clean[i]),
                "loss_replaced": float(loss_replaced[i]), "loss_difference": float(delta_loss[i]),
                "units": [{"unit": int(u), "original": float(o_ex[i, j]), "replaced": float(r_ex[i, j])}
                          for j, u in enumerate(task.units)]}

    with figures.atomic_dir(dest) as tmp:
        files: dict[str, str] = {}
        data: dict[str, dict[str, Any]] = {}
        for key, score in (("activation", divergence), ("loss", delta_loss)):
            report[f"top_by_{key}"] = [example(int(i)) for i in np.argsort(-score, kind="stable")[:top]]
        dl = fourier.to_grid(np.concatenate([delta_loss, delta_fit]), both, P)  # [p, p]
        files["loss_grid"], data["loss_grid"] = split_figure(
            tmp, "loss_grid", dl, split, "L_replaced - L_clean (nats)", {
                "loss_difference": dl,
                "loss_clean": fourier.to_grid(np.concatenate([loss_clean, extra.loss_clean]), both, P),
                "loss_replaced": fourier.to_grid(np.concatenate([loss_replaced, extra.loss_replaced]), both, P)})
        report["loss_by_set"] = {"eval": mean_abs_summary(dl, split == EVAL, signed=True),
                                 "fit": mean_abs_summary(dl, split == FIT, signed=True)}
        report["by_class"], report["by_decile"], report["error_by_set"], report["fourier"] = {}, {}, {}, {}
        for j, u in enumerate(task.units):
            o, r = o_all[:, j], r_all[:, j]
            report["by_class"][str(u)] = by_class(o.reshape(n, -1), r.reshape(n, -1), labels, None)
            report["by_decile"][str(u)] = by_decile(o, r)
            files[f"scatter_{u}"], data[f"scatter_{u}"] = scatter_figure(tmp, u, o, r, False)
            c = int(component[j])
            orig = fourier.to_grid(np.concatenate([flat(o_all)[:, j, c], flat(extra.original)[:, j, c]]), both, P)
            repl = fourier.to_grid(np.concatenate([flat(r_all)[:, j, c], flat(extra.replaced)[:, j, c]]), both, P)
            error = repl - orig  # [p, p], NaN where neither
            files[f"error_grid_{u}"], data[f"error_grid_{u}"] = split_figure(
                tmp, f"unit{u}_error_grid", error, split, f"replaced - original, unit {u}",
                {"error": error, "original": orig, "replaced": repl, "component": c})
            report["error_by_set"][str(u)] = {"component": None if o_all.ndim == 2 else c,
                                              "eval": mean_abs_summary(error, split == EVAL),
                                              "fit": mean_abs_summary(error, split == FIT)}
            complete = bool(np.isfinite(orig).all())
            report["fourier"][str(u)] = {
                "original": fourier_json(orig)[0] if complete else None,
                "replaced": fourier_json(repl)[0] if complete and np.isfinite(repl).all() else None}
        report.update(located(dest, files, data))
        finish_report(report, dest, tmp, "diagnose.json", lambda r: diagnose_page(r, files))
    return report


def split_figure(tmp: Path, stem: str, values: np.ndarray, split: np.ndarray, label: str,
                 arrays: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A signed grid `# [p, p]` as two panels on one colour scale: the eval pairs (fit pairs grey) and the fit
    pairs (eval pairs grey); the npz holds `arrays` and `split`."""
    finite = values[np.isfinite(values)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    panels = [grid_panel(values, f"eval pairs ({int((split == EVAL).sum()):,})", label, signed=True, vmax=m,
                         shown=split == EVAL),
              grid_panel(values, f"fit pairs ({int((split == FIT).sum()):,}), fitted on", label, signed=True, vmax=m,
                         shown=split == FIT)]
    png = figures.save_png(plots.figure(panels), tmp / f"{stem}.png")
    return png, figures.save_npz(tmp / f"{stem}.npz", {**arrays, "split": split})


def mean_abs_summary(values: np.ndarray, where: np.ndarray, signed: bool = False) -> dict[str, Any]:
    """n, mean |v| and max |v| (and the mean, for a signed quantity such as ΔL) of a grid over the pairs `where`."""
    v = values[where & np.isfinite(values)]
    if not v.size:
        return {"n": 0}
    out = {"n": int(v.size), "mean_abs": float(np.abs(v).mean()), "max_abs": float(np.abs(v).max())}
    return {**out, "mean": float(v.mean())} if signed else out


def diagnose_page(report: dict[str, Any], files: dict[str, str]) -> str:
    npz = {k: Path(v["path"]).name for k, v in report["data"].items()}
    fig = lambda key, alt, caption: figures.figure_html(files[key], alt, caption, npz[key])  # noqa: E731
    fid_rows = [[str(f["unit"]), fmt_r(f.get("pearson_r")), fmt_r(f.get("r2"))] for f in report["fidelity"]]
    loss = report["loss_by_set"]
    body = [f"<h1>diagnose {esc(report['submission'])} on {esc(report['task'])}</h1>",
            f"<p>n = {report['n_eval']} eval pairs (as <code>score</code>), then the fit pairs; isolation: "
            f"{esc(report['isolation'].get('level'))}. Mean loss clean {report['mean_loss']['clean']:.4g}, replaced "
            f"{report['mean_loss']['replaced']:.4g} nats (eval pairs); on the fit pairs "
            f"{report['mean_loss_fit_pairs']['clean']:.4g} and {report['mean_loss_fit_pairs']['replaced']:.4g}.</p>",
            "<p>Grids: row a, column b, one cell per pair (a, b). Each figure's numbers are in the <code>.npz</code> "
            "beside it, listed with their arrays' shapes in <a href=\"diagnose.json\">diagnose.json</a>.</p>",
            "<h2>Fidelity</h2>", figures.table(["unit", "Pearson r", "R²"], fid_rows),
            "<h2>Loss difference over the grid</h2>",
            fig("loss_grid", "loss grid", f"L_replaced − L_clean per pair (red: the replacement costs loss); eval "
                f"pairs mean {loss['eval'].get('mean', 0):+.4g}, fit pairs {loss['fit'].get('mean', 0):+.4g} nats; "
                "grey: the other set")]
    head = ["input", "answer", "mean |r − o|", "ΔL (nats)", "original → replaced per unit"]
    for key, title in (("activation", "largest mean |replaced − original|"), ("loss", "largest L_replaced − L_clean")):
        rows = [[e["input"], str(e["label"]), f"{e['divergence']:.4g}", f"{e['loss_difference']:+.4g}",
                 "; ".join(f"{u['unit']}: {u['original']:.3g} → {u['replaced']:.3g}" for u in e["units"][:5])
                 + (" …" if len(e["units"]) > 5 else "")] for e in report[f"top_by_{key}"]]
        body += [f"<h2>Most divergent eval pairs, {esc(title)}</h2>", figures.table(head, rows, left=2)]
    for u in report["units"]:
        err, fq = report["error_by_set"][str(u)], report["fourier"][str(u)]
        freq = "; ".join(f"{who}: k* = {f['dominant_frequency']} ({100 * f['share']:.1f}% of its power)"
                         if f["dominant_frequency"] else f"{who}: none (constant over the grid)"
                         for who, f in fq.items() if f is not None)
        body += [f"<h2>Unit {u}</h2>",
                 f"<p>mean |replaced − original|: eval pairs {err['eval'].get('mean_abs', 0):.4g}, fit pairs "
                 f"{err['fit'].get('mean_abs', 0):.4g}. Dominant frequency over the grid: {esc(freq or '—')}.</p>",
                 fig(f"error_grid_{u}", "error grid", "replaced − original per pair (one colour scale; grey: the "
                     "other set)"),
                 fig(f"scatter_{u}", "scatter", "replaced against original, every eval pair (grey: identity)")]
        deciles = [[f"[{d['low']:.3g}, {d['high']:.3g}]", str(d["n"]), fmt_r(d["r"]), f"{d['mean_original']:.3g}",
                    f"{d['mean_replaced']:.3g}", f"{d['mean_abs_diff']:.3g}"] for d in report["by_decile"][str(u)]]
        body += ["<h3>By level of the original activation (deciles)</h3>",
                 figures.table(["original in", "n", "r", "mean original", "mean replaced", "mean |diff|"], deciles)]
        classes = report["by_class"][str(u)][:20]
        body += ["<h3>By answer, worst r first (20 shown; all in diagnose.json)</h3>",
                 figures.table(["answer", "n", "r", "mean |diff|"],
                               [[c["class"], str(c["n"]), fmt_r(c["r"]), f"{c['mean_abs_diff']:.3g}"] for c in classes])]
    return figures.page(f"diagnose {report['submission']} on {report['task']}", "\n".join(body))
