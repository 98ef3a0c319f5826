"""`replacebench diagnose SUB --task TASK`: where a replacement diverges from the units it replaces.

The submission runs exactly as `score` runs it, in a `session.ScoringSession` (its fit step and its replaced
pass, in its own namespaced children: fit on the fit set, never handed the model, its weights or any label). The replaced pass hands the harness each batch's original units and validated output, so one eval pass
serves both the scores and the report. On the task's eval set (as `score`), with o = the original
activation and r = the replacement's, per unit, example i and position p:

- activation divergence of example i: d_i = mean over units and positions of |r − o|;
- loss difference of example i: ΔL_i = L_replaced,i − L_clean,i (cross-entropy, nats; > 0: the replacement
  costs loss there);
- fidelity by class: Pearson r of r against o over the examples of that class (every position);
- fidelity by activation level: the values o are cut at their deciles (equal edges merged, so a unit that is 0 on
  most examples gets one bin for its zeros); per bin n, Pearson r, mean o, mean r and mean |r − o|;
- conv units: the mean |r − o| map over the eval set `# [h, w]`, and for the most divergent examples the
  original and replaced maps laid over the image (the same colour scale for both).
Examples are shown with per-unit values: the value itself (dense) or the maximum over positions (conv).

The pictures are the task's kind's (`REPORTS`, by `ctx.data_kind.name`): the above for images; for tokens
(modular addition) the most divergent pairs as text, and the error r − o and ΔL over the (a, b) grid, after a
second pass of the fitted submission over the fit pairs (`pairs`); for text, the loss difference and the activation
error at every position of the eval windows, and the windows where they are largest, coloured character by character
(`text_diagnosis`). The measures above are shared (`shared`).

Outputs: PNGs, beside each the arrays it shows (`<name>.npz`, listed with their shapes under "data" in
`diagnose.json`), `index.html` and `diagnose.json` in one folder, written whole or not at all. Default folder:
`<cache>/diagnose/<task-slug>/<submission>/`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..harness.context import TaskContext
from ..harness.passes import Batch, as_array
from ..harness.runner import RunOptions
from ..harness.session import ScoringSession
from ..kinds import kind_of
from ..harness.submissions import take_snapshot
from ..tasks import Task
from ..zoo import dataset_spec
from . import figures, plots
from .figures import esc
from . import pairs, text_diagnosis
from .shared import (by_class, by_decile, class_names, default_out, finish_report, fmt_r, label_text, located,
                     per_example_value, report_head, scatter_figure)


def diagnose(name_or_path: str, task: Task, out: Path | None, *, options: RunOptions, top: int = 16) -> dict[str, Any]:
    """Run the submission isolated, as `score` does, and write the divergence report; returns what `--json` prints."""
    with take_snapshot(name_or_path) as snapshot:
        dest = Path(out) if out is not None else default_out("diagnose", task.slug(), snapshot.name)
        figures.check_out_dir(dest.expanduser().absolute())  # fail before any work
        more, writer = REPORTS[kind_name(task)]
        with ScoringSession(task, snapshot, options) as session:
            ctx = session.prepare()
            baseline = session.load_baseline()
            session.load()
            session.start_replace(session.fit())
            originals: list[np.ndarray] = []
            outputs: list[np.ndarray] = []

            def keep(batch: Batch, out: np.ndarray) -> None:
                originals.append(as_array(batch.target))
                outputs.append(out.copy())

            replaced, fidelity, _ = session.replaced_pass(on_batch=keep)
            extra = more(ctx, session.room) if more is not None else None
            isolation = session.room.isolation
    o_all, r_all = np.concatenate(originals), np.concatenate(outputs)  # [n, n_units, *spatial] each
    return writer(ctx, snapshot.name, dest, o_all, r_all, baseline.loss("clean"), replaced["loss.replaced"],
                  [f.to_dict() for f in fidelity], isolation, top, options.data_dir, extra=extra)


def kind_name(task: Task) -> str:
    """The task's kind of data (`benchmark.kinds`, as `ctx.data_kind.name`), one `REPORTS` knows (else a UserError)."""
    kind = kind_of(task.dataset).name
    if kind not in REPORTS:
        raise UserError(f"diagnose has no report for {task.dataset}'s kind of data '{kind}'; it knows "
                        f"{', '.join(REPORTS)}.")
    return kind


def write_report(ctx: TaskContext, name: str, dest: Path, o_all: np.ndarray, r_all: np.ndarray, loss_clean: np.ndarray,
                 loss_replaced: np.ndarray, fidelity: list[dict[str, Any]], isolation: dict[str, Any], top: int,
                 data_dir: str | None, extra: None = None) -> dict[str, Any]:
    """The image kind's report (module docstring); `extra` is unused (images run no pass besides the scored one)."""
    task = ctx.task
    n = len(o_all)
    conv = o_all.ndim == 4
    labels = ctx.eval_labels
    names = class_names(ctx, data_dir)
    diff = r_all - o_all
    divergence = np.abs(diff).reshape(n, -1).mean(axis=1)  # d_i [n]
    delta_loss = (loss_replaced.astype(np.float64) - loss_clean.astype(np.float64))  # ΔL_i [n]
    o_ex, r_ex = per_example_value(o_all), per_example_value(r_all)  # [n, n_units]
    worst_unit = np.abs(diff).reshape(n, len(task.units), -1).mean(axis=2).argmax(axis=1)  # [n]
    dest = dest.expanduser().absolute()
    report = report_head(ctx, name, n, isolation, loss_clean, loss_replaced, fidelity,
                         "eval set, as score; the submission got the allowed inputs only (no labels, no model)")

    def example(i: int) -> dict[str, Any]:
        return {"eval_position": int(i), "dataset_index": int(ctx.eval_indices[i]), "label": int(labels[i]),
                "class": label_text(int(labels[i]), names), "divergence": float(divergence[i]),
                "loss_clean": float(loss_clean[i]), "loss_replaced": float(loss_replaced[i]),
                "loss_difference": float(delta_loss[i]),
                "units": [{"unit": int(u), "original": float(o_ex[i, j]), "replaced": float(r_ex[i, j])}
                          for j, u in enumerate(task.units)]}

    def caption(i: int) -> str:
        j = int(worst_unit[i])
        prefix = f"u{task.units[j]}:" if len(task.units) > 1 else ""
        return f"{prefix}{o_ex[i, j]:.2g}>{r_ex[i, j]:.2g}"

    with figures.atomic_dir(dest) as tmp:
        files: dict[str, str] = {}
        data: dict[str, dict[str, Any]] = {}
        tile = dataset_spec(task.dataset).tile_px
        sets = {"activation": np.argsort(-divergence, kind="stable")[:top],
                "loss": np.argsort(-delta_loss, kind="stable")[:top]}
        for key, order in sets.items():
            report[f"top_by_{key}"] = [example(int(i)) for i in order]
            images = ctx.eval_set.load(ctx.eval_indices[order]).numpy()  # [k, C, H, W]
            pixels = figures.to_pixels(images, task.dataset)
            files[f"top_by_{key}"] = figures.save_png(figures.grid(list(pixels), [caption(int(i)) for i in order], tile=tile),
                                                      tmp / f"top_by_{key}.png")
            shown = {"eval_position": order, "dataset_index": ctx.eval_indices[order], "label": labels[order],
                     "divergence": divergence[order], "loss_clean": loss_clean[order],
                     "loss_replaced": loss_replaced[order], "loss_difference": delta_loss[order],
                     "units": np.asarray(task.units), "original": o_ex[order], "replaced": r_ex[order],
                     "caption_unit": np.asarray(task.units)[worst_unit[order]], "images": images.astype(np.float32)}
            data[f"top_by_{key}"] = figures.save_npz(tmp / f"top_by_{key}.npz", shown)
            if conv:
                tiles, caps, vmaxes = [], [], []
                for k, i in enumerate(order):
                    j = int(worst_unit[i])
                    vmax = float(max(o_all[i, j].max(), r_all[i, j].max(), 1e-12))
                    vmaxes.append(vmax)
                    tiles += [figures.overlay(pixels[k], o_all[i, j], vmax), figures.overlay(pixels[k], r_all[i, j], vmax)]
                    caps += [f"orig {o_ex[i, j]:.2g}", f"repl {r_ex[i, j]:.2g}"]
                grid = figures.grid(tiles, caps, tile=tile)
                files[f"top_by_{key}_maps"] = figures.save_png(
                    plots.with_bar(grid, plots.overlay_bar(1.0, "fraction of pair max")),
                    tmp / f"top_by_{key}_maps.png")
                j_of = worst_unit[order]
                data[f"top_by_{key}_maps"] = figures.save_npz(tmp / f"top_by_{key}_maps.npz", {
                    "eval_position": order, "dataset_index": ctx.eval_indices[order],
                    "unit": np.asarray(task.units)[j_of], "original": o_all[order, j_of], "replaced": r_all[order, j_of],
                    "vmax": np.array(vmaxes)})  # the images: top_by_{key}.npz, same order
        report["by_class"], report["by_decile"] = {}, {}
        for j, u in enumerate(task.units):
            o, r = o_all[:, j], r_all[:, j]
            report["by_class"][str(u)] = by_class(o.reshape(n, -1), r.reshape(n, -1), labels, names)
            report["by_decile"][str(u)] = by_decile(o, r)
            files[f"scatter_{u}"], data[f"scatter_{u}"] = scatter_figure(tmp, u, o, r, conv)
            if conv:
                mean_abs = np.abs(r - o).mean(axis=0)  # [h, w]
                report.setdefault("diff_map", {})[str(u)] = [[round(float(v), 6) for v in row] for row in mean_abs]
                shape = ctx.eval_set.load(ctx.eval_indices[:1]).shape[2:]
                big = (max(int(shape[0]), 160), max(int(shape[1]), 160))
                h, w = mean_abs.shape
                files[f"diff_map_{u}"] = figures.save_png(plots.figure([plots.Panel(
                    figures.upsample(figures.heat_rgb(mean_abs), big), h, w,
                    f"mean |r - o|, {h}x{w} positions of {int(shape[0]) / h:g}x{int(shape[1]) / w:g} px",
                    plots.heat_bar(float(mean_abs.max()), "mean |replaced - original|"), "map row", "map column")]),
                    tmp / f"unit{u}_diff_map.png")
                data[f"diff_map_{u}"] = figures.save_npz(tmp / f"unit{u}_diff_map.npz", {
                    "mean_abs_diff": mean_abs, "row_px": (np.arange(h) + 0.5) * int(shape[0]) / h,
                    "col_px": (np.arange(w) + 0.5) * int(shape[1]) / w, "n_eval": n})
        report.update(located(dest, files, data))
        finish_report(report, dest, tmp, "diagnose.json", lambda r: render_page(r, files, conv))
    return report


#: Each kind's report (`benchmark.kinds`: `ctx.data_kind.name`): what more it runs while the fitted submission is
#: loaded, called as (ctx, room), or None, and the writer, handed what that returned as `extra`.
REPORTS: dict[str, tuple[Callable[[TaskContext, Any], Any] | None, Callable[..., dict[str, Any]]]] = {
    "image": (None, write_report), "tokens": (pairs.replace_fit_pairs, pairs.write_diagnosis),
    "text": (None, text_diagnosis.write_diagnosis)}


def example_rows(examples: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(e["dataset_index"]), e["class"], f"{e['divergence']:.4g}", f"{e['loss_difference']:+.4f}",
             "; ".join(f"{u['unit']}: {u['original']:.3g} → {u['replaced']:.3g}" for u in e["units"][:5])
             + (" …" if len(e["units"]) > 5 else "")] for e in examples]


def render_page(report: dict[str, Any], files: dict[str, str], conv: bool) -> str:
    npz = {k: Path(v["path"]).name for k, v in report["data"].items()}
    head = ["eval index", "class", "mean |r − o|", "ΔL (nats)", "original → replaced per unit"]
    fid_rows = [[str(f["unit"]), fmt_r(f.get("pearson_r")), fmt_r(f.get("r2"))] for f in report["fidelity"]]
    body = [f"<h1>diagnose {esc(report['submission'])} on {esc(report['task'])}</h1>",
            f"<p>n = {report['n_eval']} eval examples (as <code>score</code>); isolation: "
            f"{esc(report['isolation'].get('level'))}. Mean loss clean {report['mean_loss']['clean']:.4f}, replaced "
            f"{report['mean_loss']['replaced']:.4f} nats.</p>",
            "<p>Each figure's numbers are in the <code>.npz</code> beside it (<code>numpy.load</code>), listed with "
            "their arrays' shapes in <a href=\"diagnose.json\">diagnose.json</a>.</p>",
            "<h2>Fidelity</h2>", figures.table(["unit", "Pearson r", "R²"], fid_rows)]
    for key, title in (("activation", "by activation: largest mean |replaced − original|"),
                       ("loss", "by loss: largest L_replaced − L_clean")):
        body += [f"<h2>Most divergent examples, {esc(title)}</h2>",
                 figures.figure_html(files["top_by_" + key], "examples", "caption: the unit that differs most there, "
                                     "original &gt; replaced" + (" (maximum over positions)" if conv else ""),
                                     npz["top_by_" + key])]
        if conv:
            body.append(figures.figure_html(files["top_by_" + key + "_maps"], "maps", "Pairs: the original map and "
                                            "the replacement's, over the image, on one colour scale per pair",
                                            npz["top_by_" + key + "_maps"]))
        body.append(figures.table(head, example_rows(report[f"top_by_{key}"]), left=2))
    for u in report["units"]:
        body.append(f"<h2>Unit {u}</h2>")
        body.append(figures.figure_html(files[f"scatter_{u}"], "scatter", "replaced against original, every example "
                                        f"and position (at most {figures.SCATTER_POINTS:,}, evenly subsampled; grey: "
                                        "identity)", npz[f"scatter_{u}"]))
        if conv:
            body.append(figures.figure_html(files[f"diff_map_{u}"], "difference map", "mean |replaced − original| per "
                                            "position over the eval set", npz[f"diff_map_{u}"]))
        deciles = [[f"[{d['low']:.3g}, {d['high']:.3g}]", str(d["n"]), fmt_r(d["r"]), f"{d['mean_original']:.3g}",
                    f"{d['mean_replaced']:.3g}", f"{d['mean_abs_diff']:.3g}"] for d in report["by_decile"][str(u)]]
        body += ["<h3>By level of the original activation (deciles)</h3>",
                 figures.table(["original in", "n", "r", "mean original", "mean replaced", "mean |diff|"], deciles)]
        classes = report["by_class"][str(u)]
        shown = classes[:20]
        note = f" (the {len(shown)} worst of {len(classes)}; all are in diagnose.json)" if len(classes) > 20 else ""
        body += [f"<h3>By class, worst r first{esc(note)}</h3>",
                 figures.table(["class", "n", "r", "mean |diff|"],
                               [[c["class"], str(c["n"]), fmt_r(c["r"]), f"{c['mean_abs_diff']:.3g}"] for c in shown])]
    return figures.page(f"diagnose {report['submission']} on {report['task']}", "\n".join(body))
