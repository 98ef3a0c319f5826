"""The text kind's `diagnose` (`ctx.data_kind.name == "text"`, chosen by `diagnosis.REPORTS`): where in the text a
replacement diverges most.

The submission runs as `score` runs it (`diagnosis.diagnose`): the scored pass over the eval windows hands over each
window's original units o and the replacement's validated output r (`# [n, T, n_units]` for neurons,
`# [n, T, n_heads, e]` for heads) and the per-window losses. Then the harness alone (no submission: r as it came
back) runs the eval windows once more, splicing r in, for the loss at every position. With x_i the window's
characters and y_it = x_i,t+1 the character predicted at position t:

- loss difference per position: ΔL_it = CE_replaced,it − CE_clean,it, CE_it = −log softmax(ℓ_it)[y_it] (nats; > 0:
  the replacement costs loss there). Its mean over t is the window's ΔL_i of the scored pass (`per_position_check`:
  max_i |mean_t ΔL_it − ΔL_i|, float32 logits);
- activation error per position: e_it = mean over the units (and a head's e values) of |r − o| at window i,
  position t; and the signed error averaged over windows, ē_t = (1/n) Σ_i (r − o)_it `# [T, n_units(, e)]`.

Shown: the map of ΔL_it over every eval window (row, eval order) and position (column), its mean over windows by
position, the same map of e_it; the top windows by ΔL_i with each predicted character y_it coloured by ΔL_it, and the
top windows by mean_t e_it with each character x_it coloured by e_it (one colour scale per list); per unit (of a task
with more than `text.MAX_SHOWN`, the `MAX_SHOWN` of largest mean |r − o|) the fidelity by decile and the scatter of
r against o, as for every kind (`shared`).

Arrays (`.npz` beside each PNG, listed in diagnose.json): `loss_map` (`loss_difference`, `loss_clean`,
`loss_replaced` `# [n, T]`, `eval_position`, `dataset_index`), `loss_by_position` (`mean_loss_difference`,
`mean_abs_loss_difference` `# [T]`), `error_map` (`mean_abs_error # [n, T]`, `mean_error # [T, n_units(, e)]`,
`mean_abs_by_position # [T]`), and per unit `unit<u>_scatter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.shakespeare import decode
from ..harness.context import TaskContext
from ..harness.passes import batches, logits_from, with_units
from . import figures, plots, textshow
from .figures import esc
from .shared import by_decile, finish_report, fmt_r, located, report_head, scatter_figure
from .text import MAX_SHOWN, raw_table

READ_DIAGNOSE = ("eval windows, as score; then the harness alone runs them once more with the replacement's outputs "
                 "spliced in, for the loss at every position; the submission got the allowed inputs only (no labels, "
                 "no model)")
MAP_COLUMN_PX = 4  # display pixels per position on the maps


# -- the numbers ------------------------------------------------------------------------------------------------
def position_losses(ctx: TaskContext, r_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CE_clean,it and CE_replaced,it `# [n, T]` (float64) over the eval windows, with `r_all # [n, *target_shape]`
    (the scored pass's outputs, eval order) spliced in (module docstring)."""
    clean, replaced = [], []
    for batch in batches(ctx, "eval"):
        values = torch.from_numpy(np.ascontiguousarray(r_all[batch.start : batch.start + len(batch)]))
        spliced = with_units(ctx, batch.activation, values.to(batch.activation.device))
        for out, activation in ((clean, batch.activation), (replaced, spliced)):
            out.append(per_position_ce(logits_from(ctx, activation, batch.carry), batch.labels))
    return np.concatenate(clean), np.concatenate(replaced)


def per_position_ce(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """−log softmax(ℓ_it)[y_it] `# [b, T]` (float64) from `logits # [b, T, V]` and `labels # [b, T]`."""
    b, t, v = logits.shape
    ce = F.cross_entropy(logits.float().reshape(b * t, v), labels.reshape(b * t), reduction="none")
    return ce.double().reshape(b, t).cpu().numpy()


def activation_errors(o_all: np.ndarray, r_all: np.ndarray, chunk: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """e_it `# [n, T]`, ē_t `# [T, ...]` (module docstring) and each unit's mean |r − o| `# [n_units]` (units on
    axis 2 of `# [n, T, n_units, ...]`), `chunk` windows at a time (float64 sums)."""
    n, t = o_all.shape[:2]
    e = np.empty((n, t))
    signed = np.zeros(o_all.shape[1:])
    per_unit = np.zeros(o_all.shape[2])
    for s in range(0, n, chunk):
        d = r_all[s : s + chunk].astype(np.float64) - o_all[s : s + chunk]  # [c, T, n_units, ...]
        e[s : s + chunk] = np.abs(d).reshape(len(d), t, -1).mean(axis=2)
        signed += d.sum(axis=0)
        per_unit += np.abs(d).reshape(len(d), t, d.shape[2], -1).sum(axis=(0, 1, 3))
    return e, signed / n, per_unit / (n * t * int(np.prod(o_all.shape[3:], dtype=np.int64)))


# -- the pictures -----------------------------------------------------------------------------------------------
def position_map(values: np.ndarray, title: str, bar_label: str, *, signed: bool, row_label: str) -> plots.Panel:
    """A map `# [rows, T]` (rows: windows, columns: positions), `MAP_COLUMN_PX` px a position and at least 1 px a
    row (small maps are enlarged to at least 96 px high)."""
    rows, t = values.shape
    m = float(np.abs(values).max())
    rgb = plots.signed_rgb(values, m) if signed else plots.heat_rgb(values, m)
    bar = plots.signed_bar(m, bar_label) if signed else plots.heat_bar(m, bar_label)
    height = rows * max(1, -(-96 // rows))
    return plots.Panel(figures.upsample(rgb, (height, t * MAP_COLUMN_PX)), rows, t, title, bar, row_label, "position t")


def window_html(ids: np.ndarray, values: np.ndarray, scale: float, signed: bool) -> str:
    """A window's characters `# [T + 1]` (x_i0..x_i,T−1 then y_i,T−1) coloured by `values # [T + 1]` (NaN: white),
    line breaks kept."""
    return textshow.coloured_text(ids, values, scale, signed=signed, breaks=True)


def top_windows_html(order: np.ndarray, ids: np.ndarray, per_char: np.ndarray, signed: bool,
                     caption: list[str]) -> str:
    """The windows `order` as coloured text, one colour scale (the largest |value| among them); `per_char
    # [n, T + 1]` aligned with `ids # [n, T + 1]`."""
    shown = per_char[order]
    scale = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 0.0
    rows = [[esc(c), window_html(ids[i], per_char[i], scale, signed)] for c, i in zip(caption, order)]
    return raw_table(["window", "text"], rows, left=2)


# -- the report -------------------------------------------------------------------------------------------------
def write_diagnosis(ctx: TaskContext, name: str, dest: Path, o_all: np.ndarray, r_all: np.ndarray,
                    loss_clean: np.ndarray, loss_replaced: np.ndarray, fidelity: list[dict[str, Any]],
                    isolation: dict[str, Any], top: int, data_dir: str | None, extra: None = None) -> dict[str, Any]:
    """The text kind's diagnose report (module docstring): `o_all`, `r_all` `# [n, *target_shape]` and the losses
    `# [n]` from the scored pass; `extra` is unused."""
    task = ctx.task
    n, t = o_all.shape[:2]
    ce_clean, ce_replaced = position_losses(ctx, r_all)
    dl = ce_replaced - ce_clean  # ΔL_it [n, T]
    delta = loss_replaced.astype(np.float64) - loss_clean.astype(np.float64)  # ΔL_i [n]
    e, e_mean, per_unit = activation_errors(o_all, r_all)
    tokens = ctx.eval_set.load(ctx.eval_indices).numpy()  # [n, T]
    ids = np.concatenate([tokens, ctx.eval_labels[:, -1:]], axis=1)  # [n, T + 1]: x_i0..x_i,T−1, y_i,T−1
    nan = np.full((n, 1), np.nan)
    dest = dest.expanduser().absolute()
    report = report_head(ctx, name, n, isolation, loss_clean, loss_replaced, fidelity, READ_DIAGNOSE)
    report["per_position_check"] = float(np.abs(dl.mean(axis=1) - delta).max())
    report["positions"] = int(t)
    report["loss_by_position"] = {"mean": dl.mean(axis=0).tolist(), "worst_position": int(dl.mean(axis=0).argmax())}
    shown = np.sort(np.argsort(-per_unit, kind="stable")[:MAX_SHOWN])
    report["shown_units"] = [int(task.units[j]) for j in shown]

    def window(i: int, values: np.ndarray) -> dict[str, Any]:
        return {"eval_position": int(i), "dataset_index": int(ctx.eval_indices[i]), "loss_clean": float(loss_clean[i]),
                "loss_replaced": float(loss_replaced[i]), "loss_difference": float(delta[i]),
                "mean_abs_error": float(e[i].mean()), "worst_position": int(values[i].argmax()),
                "text": decode(ids[i])}

    by_loss = np.argsort(-delta, kind="stable")[:top]
    by_error = np.argsort(-e.mean(axis=1), kind="stable")[:top]
    report["top_by_loss"] = [window(int(i), dl) for i in by_loss]
    report["top_by_activation"] = [window(int(i), e) for i in by_error]
    html = {"loss": top_windows_html(by_loss, ids, np.concatenate([nan, dl], axis=1), True,
                                     [f"{ctx.eval_indices[i]}: ΔL {delta[i]:+.4f}" for i in by_loss]),
            "activation": top_windows_html(by_error, ids, np.concatenate([e, nan], axis=1), False,
                                           [f"{ctx.eval_indices[i]}: |r−o| {e[i].mean():.4g}" for i in by_error])}
    with figures.atomic_dir(dest) as tmp:
        files: dict[str, str] = {}
        data: dict[str, dict[str, Any]] = {}
        files["loss_map"] = figures.save_png(plots.figure([position_map(
            dl, f"L_replaced - L_clean per position, {n} eval windows", "nats", signed=True, row_label="eval window")]),
            tmp / "loss_map.png")
        data["loss_map"] = figures.save_npz(tmp / "loss_map.npz", {
            "loss_difference": dl, "loss_clean": ce_clean, "loss_replaced": ce_replaced,
            "eval_position": np.arange(n), "dataset_index": ctx.eval_indices})
        files["loss_by_position"] = figures.save_png(plots.figure([position_map(
            dl.mean(axis=0)[None], f"mean over the {n} windows", "nats", signed=True, row_label="mean")]),
            tmp / "loss_by_position.png")
        data["loss_by_position"] = figures.save_npz(tmp / "loss_by_position.npz", {
            "mean_loss_difference": dl.mean(axis=0), "mean_abs_loss_difference": np.abs(dl).mean(axis=0)})
        files["error_map"] = figures.save_png(plots.figure([position_map(
            e, f"mean |replaced - original| per position, {n} eval windows", "mean |r - o|", signed=False,
            row_label="eval window")]), tmp / "error_map.png")
        data["error_map"] = figures.save_npz(tmp / "error_map.npz", {
            "mean_abs_error": e, "mean_error": e_mean, "mean_abs_by_position": e.mean(axis=0)})
        report["by_decile"] = {}
        for j in shown:
            u = int(task.units[j])
            o, r = o_all[:, :, j], r_all[:, :, j]  # [n, T] or [n, T, e]
            report["by_decile"][str(u)] = by_decile(o, r)
            files[f"scatter_{u}"], data[f"scatter_{u}"] = scatter_figure(tmp, u, o, r, False)
        report.update(located(dest, files, data))
        finish_report(report, dest, tmp, "diagnose.json", lambda r: diagnose_page(r, files, html))
    return report


def diagnose_page(report: dict[str, Any], files: dict[str, str], html: dict[str, str]) -> str:
    npz = {k: Path(v["path"]).name for k, v in report["data"].items()}
    fig = lambda key, alt, caption: figures.figure_html(files[key], alt, caption, npz[key])  # noqa: E731
    fid_rows = [[str(f["unit"]), fmt_r(f.get("pearson_r")), fmt_r(f.get("r2"))] for f in report["fidelity"][:50]]
    more = len(report["fidelity"]) - len(fid_rows)
    body = [f"<h1>diagnose {esc(report['submission'])} on {esc(report['task'])}</h1>",
            f"<p>n = {report['n_eval']} eval windows of {report['positions']} positions (as <code>score</code>); "
            f"isolation: {esc(report['isolation'].get('level'))}. Mean loss clean {report['mean_loss']['clean']:.4f}, "
            f"replaced {report['mean_loss']['replaced']:.4f} nats per character. The loss at every position comes "
            "from a second pass of the harness alone with the replacement's outputs spliced in (its mean over a "
            f"window agrees with the scored pass within {report['per_position_check']:.1e}).</p>",
            "<p>Each figure's numbers are in the <code>.npz</code> beside it (<code>numpy.load</code>), listed with "
            "their arrays' shapes in <a href=\"diagnose.json\">diagnose.json</a>.</p>",
            "<h2>Fidelity</h2>", figures.table(["unit", "Pearson r", "R²"], fid_rows),
            f"<p>({more} more in diagnose.json)</p>" if more > 0 else "",
            "<h2>Where the loss moves</h2>",
            fig("loss_map", "loss map", "L_replaced − L_clean at every position t (predicting the character after "
                "it) of every eval window (red: the replacement costs loss there)"),
            fig("loss_by_position", "loss by position", "Its mean over the windows, by position; worst position "
                f"{report['loss_by_position']['worst_position']}"),
            "<h3>Windows where the replacement costs most loss</h3><p>Each predicted character coloured by "
            "L_replaced − L_clean in predicting it (red: more loss, blue: less; hover for the value; the window's "
            "first character is only read). One colour scale for the list.</p>", html["loss"],
            "<h2>Where the activation diverges</h2>",
            fig("error_map", "error map", "mean |replaced − original| over the units at every position of every eval "
                "window"),
            "<h3>Windows where the activation diverges most</h3><p>Each character coloured by mean |replaced − "
            "original| at its position (the window's last target is not read).</p>", html["activation"]]
    for u in report["shown_units"]:
        deciles = [[f"[{d['low']:.3g}, {d['high']:.3g}]", str(d["n"]), fmt_r(d["r"]), f"{d['mean_original']:.3g}",
                    f"{d['mean_replaced']:.3g}", f"{d['mean_abs_diff']:.3g}"] for d in report["by_decile"][str(u)]]
        body += [f"<h2>Unit {u}</h2>",
                 fig(f"scatter_{u}", "scatter", "replaced against original, every eval window and position (at most "
                     f"{figures.SCATTER_POINTS:,}, evenly subsampled; grey: identity)"),
                 "<h3>By level of the original activation (deciles)</h3>",
                 figures.table(["original in", "n", "r", "mean original", "mean replaced", "mean |diff|"], deciles)]
    return figures.page(f"diagnose {report['submission']} on {report['task']}", "\n".join(body))
