"""`replacebench inspect TASK`: what to know about a task's inputs and units before writing a replacement.

What is drawn depends on the task's kind of data (`ctx.data_kind.name`, `INSPECTORS`): images (below); for
tokens, the (a, b) grid of modular addition and its Fourier power (`pairs`); for text, a neuron's top contexts and
its activation by character, a head's attention patterns on real and on repeated text (`text`).

Only the harness runs here (no submission code). For images, only on the task's FIT set (`ctx.fit_set`,
`ctx.fit_indices`); the eval set is never read for any figure or picture (`context.prepare`, shared by every
command, opens the eval split only to draw the splits and to probe one example's shapes). For each unit u, with a_u the unit's
activation on fit example i (`# [n_fit]` for a dense unit, `# [n_fit, h, w]` for a conv channel):

- activation statistics over every example and position: mean, sd, quantiles, fraction active (a > 0);
- the per-example score s_i = a_i (dense) or max over positions of a_i (conv); the top-K fit examples by s;
- the activation-weighted mean input: x̄_w = Σ_i w_i x_i / Σ_i w_i with w_i = max(s_i, 0), beside the plain
  mean x̄ = Σ_i x_i / n and the difference x̄_w − x̄ (what the unit's strongest examples have more of);
- conv units: the mean activation map (1/n) Σ_i a_i `# [h, w]`, where the per-example argmax positions fall
  (a count per position, over examples with s_i > 0), and the top examples with their maps laid over them.
  A position (r, c) of an h × w map is shown at pixel ((r + ½) · H / h, (c + ½) · W / w) of the H × W image.

Outputs: PNGs, beside each the arrays it shows (`<name>.npz`, listed with their shapes under each unit's "data" in
`inspect.json`; the weighted-mean image also inline under "weighted_mean_input" when it has at most 1,024 values),
`index.html` and `inspect.json` in one folder, written whole or not at all (`figures.atomic_dir`).
Default folder: `<cache>/inspect/<task-slug>/` (`$REPLACEBENCH_CACHE`, else `~/.cache/replacebench`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..harness.context import TaskContext, prepare
from ..harness.passes import as_array, batches
from ..tasks import Task
from ..zoo import dataset_spec
from . import figures, pairs, plots, text
from .figures import esc
from .shared import STATS_HEAD, Moments, class_names, default_out, finish_report, label_text, located, stats_row


def fit_pass(ctx: TaskContext) -> tuple[np.ndarray, dict[str, dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the fit set. Returns the target units `# [n_fit, n_units, *spatial]`, each allowed input's
    shape per example and moments, the image sum Σ_i x_i `# [C, H, W]`, per unit Σ_i w_i x_i
    `# [n_units, C, H, W]`, and per unit Σ_i w_i `# [n_units]`, with w_i = max(s_i, 0) (module docstring)."""
    task = ctx.task
    moments = {n: Moments() for n in task.inputs}
    shapes: dict[str, list[int]] = {}
    targets = []
    image_sum = None
    weighted = None
    weights = np.zeros(len(task.units))  # Σ_i w_i per unit
    for batch in batches(ctx, "fit", task.inputs):
        act = as_array(batch.target)  # [b, n_units, *spatial]
        targets.append(act)
        x = as_array(batch.x).astype(np.float64)  # [b, C, H, W]
        for name, value in batch.inputs.items():
            value = x if name == "image" else as_array(value)
            shapes[name] = list(value.shape[1:])
            moments[name].update(value)
        score = act.reshape(len(act), len(task.units), -1).max(axis=2)  # [b, n_units]
        w = np.clip(score, 0, None).astype(np.float64)
        image_sum = x.sum(0) if image_sum is None else image_sum + x.sum(0)
        part = np.einsum("bu,bchw->uchw", w, x)
        weighted = part if weighted is None else weighted + part
        weights += w.sum(0)
    info = {n: {"shape": shapes[n], **moments[n].result()} for n in task.inputs}
    assert image_sum is not None and weighted is not None, "the fit set is empty"
    return np.concatenate(targets), info, image_sum, weighted, weights


def inspect_task(task: Task, out: Path | None, *, data_dir: str | None = None, imagenet_dir: str | None = None,
                 device: str | None = None, top: int = 16, fit_size: int | None = None) -> dict[str, Any]:
    """Write the inspection report for `task` into `out` (default `default_out`); returns what `--json` prints.
    What it shows is its kind's (`INSPECTORS`, by `ctx.data_kind.name`): images here, the (a, b) grid for tokens."""
    ctx = prepare(task, device=device, data_dir=data_dir, imagenet_dir=imagenet_dir, fit_size=fit_size)
    dest = Path(out) if out is not None else default_out("inspect", task.slug())
    kind = ctx.data_kind.name
    if kind not in INSPECTORS:
        raise UserError(f"inspect has no pictures for {task.dataset}'s kind of data '{kind}'; it knows "
                        f"{', '.join(INSPECTORS)}.")
    return INSPECTORS[kind](ctx, dest, top=top, data_dir=data_dir)


def inspect_images(ctx: TaskContext, dest: Path, *, top: int = 16, data_dir: str | None = None) -> dict[str, Any]:
    """The image kind's report (module docstring): top examples as images, weighted means, conv maps."""
    task = ctx.task
    names = class_names(ctx, data_dir)
    acts, input_info, image_sum, weighted, weights = fit_pass(ctx)  # acts: [n_fit, n_units, *spatial]
    n = len(acts)
    image_shape = image_sum.shape  # (C, H, W)
    mean_image = image_sum / n  # [C, H, W]
    conv = acts.ndim == 4
    labels = ctx.fit_set.labels()[ctx.fit_indices]
    display = dataset_spec(task.dataset)
    if "image" in input_info:
        input_info["image"]["scaling"] = display.scaling
    report: dict[str, Any] = {
        "task": task.id, "model": task.model, "layer": task.layer, "units": list(task.units),
        "dataset": task.dataset, "fit_split": task.fit_split, "n_fit": int(n), "read": "fit set only",
        "image": {"shape": list(image_shape), "scaling": display.scaling, "range": list(display.value_range)},
        "inputs": input_info, "target_shape": list(acts.shape[1:]),
        "unit_kind": "conv channel (per-example score: max over positions)" if conv else "dense unit",
    }
    with figures.atomic_dir(dest) as tmp:
        unit_reports = []
        sections = []
        for j, unit in enumerate(task.units):
            a = acts[:, j]  # [n] or [n, h, w]
            score = a.reshape(n, -1).max(axis=1) if conv else a  # [n]
            order = np.argsort(-score, kind="stable")[:top]
            images = ctx.fit_set.load(ctx.fit_indices[order]).numpy()  # [k, C, H, W]
            pixels = figures.to_pixels(images, task.dataset)
            captions = [f"{score[i]:.3g} y={labels[i]}" for i in order]
            files: dict[str, str] = {}
            data: dict[str, dict[str, Any]] = {}
            files["top"] = figures.save_png(figures.grid(list(pixels), captions, tile=display.tile_px), tmp / f"unit{unit}_top.png")
            top_arrays = {"fit_position": order, "dataset_index": ctx.fit_indices[order], "label": labels[order],
                          "score": score[order], "images": images.astype(np.float32)}
            data["top"] = figures.save_npz(tmp / f"unit{unit}_top.npz", top_arrays)
            w_sum = float(weights[j])
            w_mean = weighted[j] / w_sum if w_sum > 0 else mean_image  # [C, H, W]
            files["weighted_mean"], data["weighted_mean"] = weighted_mean_figure(tmp, unit, w_mean, mean_image, w_sum,
                                                                                 task.dataset)
            entry: dict[str, Any] = {
                "unit": int(unit), "activation": figures.quantile_summary(a),
                "top_examples": [
                    {"fit_position": int(i), "dataset_index": int(ctx.fit_indices[i]), "label": int(labels[i]),
                     "class": label_text(int(labels[i]), names), "score": float(score[i])} for i in order],
                "top_classes": top_classes(labels, score, names),
                "weighted_mean_weight": float(w_sum),
                "weighted_mean_input": weighted_mean_json(w_mean, task.dataset, str(dest / data["weighted_mean"]["file"])),
            }
            if conv:
                h, w = a.shape[1:]
                entry["per_example_max"] = figures.quantile_summary(score)
                flat = a.reshape(n, -1).argmax(axis=1)
                pos = np.stack(np.unravel_index(flat, (h, w)), axis=1)  # [n, 2] (row, col)
                counts = np.zeros((h, w))
                live = score > 0
                np.add.at(counts, (pos[live, 0], pos[live, 1]), 1)
                mean_map = a.mean(0)
                big = (max(image_shape[1], 160), max(image_shape[2], 160))
                centres = {"row_px": (np.arange(h) + 0.5) * image_shape[1] / h,
                           "col_px": (np.arange(w) + 0.5) * image_shape[2] / w}
                cell = f"{h}x{w} positions of {image_shape[1] / h:g}x{image_shape[2] / w:g} px"
                files["mean_map"] = figures.save_png(plots.figure([plots.Panel(
                    figures.upsample(figures.heat_rgb(mean_map), big), h, w, f"mean map, {cell}",
                    plots.heat_bar(float(mean_map.max()), "mean activation"), "map row", "map column")]),
                    tmp / f"unit{unit}_mean_map.png")
                data["mean_map"] = figures.save_npz(tmp / f"unit{unit}_mean_map.npz",
                                                    {"mean_map": mean_map, **centres, "n_fit": n})
                files["argmax_map"] = figures.save_png(plots.figure([plots.Panel(
                    figures.upsample(figures.heat_rgb(counts), big), h, w, f"argmax count, {cell}",
                    plots.heat_bar(float(counts.max()), "examples with their max here"), "map row", "map column")]),
                    tmp / f"unit{unit}_argmax_map.png")
                data["argmax_map"] = figures.save_npz(tmp / f"unit{unit}_argmax_map.npz", {
                    "counts": counts.astype(np.int64), "argmax": pos, "score": score, "counted": live, **centres})
                vmax = float(score[order[0]]) if len(order) else None
                overlays = [figures.overlay(pixels[k], a[i], vmax) for k, i in enumerate(order)]
                files["top_overlay"] = figures.save_png(
                    plots.with_bar(figures.grid(overlays, captions, tile=display.tile_px),
                                   plots.overlay_bar(vmax or 0.0, "activation")),
                    tmp / f"unit{unit}_top_overlay.png")
                data["top_overlay"] = figures.save_npz(tmp / f"unit{unit}_top_overlay.npz", {
                    **{k: v for k, v in top_arrays.items() if k != "images"}, "activation": a[order], "argmax": pos[order], "vmax": vmax or 0.0, **centres})
                for k, i in enumerate(order):
                    r, c = (int(v) for v in pos[i])
                    entry["top_examples"][k]["argmax"] = [r, c]
                    entry["top_examples"][k]["argmax_pixel"] = [(r + 0.5) * image_shape[1] / h, (c + 0.5) * image_shape[2] / w]
                entry["argmax_counts"] = counts.astype(int).tolist()
                entry["mean_map"] = [[round(float(v), 6) for v in row] for row in mean_map]
            entry.update(located(dest, files, data))
            unit_reports.append(entry)
            sections.append(unit_section(entry, files, conv))
        report["unit_reports"] = unit_reports
        finish_report(report, dest, tmp, "inspect.json", lambda r: render_page(r, sections))
    return report


#: Each kind's inspection report (`benchmark.kinds`: `ctx.data_kind.name`), called as (ctx, dest, top=, data_dir=).
INSPECTORS = {"image": inspect_images, "tokens": pairs.inspect_pairs, "text": text.inspect_text}

#: The weighted-mean image goes into inspect.json itself when it has at most this many values (MNIST's 784 do).
INLINE_VALUES = 1024


def weighted_mean_figure(tmp: Path, unit: int, w_mean: np.ndarray, mean_image: np.ndarray, w_sum: float,
                         dataset: str) -> tuple[str, dict[str, Any]]:
    """The weighted mean, the plain mean and their difference as three ticked panels, and the npz behind them:
    `weighted_mean`, `plain_mean` `# [C, H, W]` (model-ready), the same in pixels (`*_pixels`, x · scale + offset,
    unclipped), `difference` `# [H, W]` (weighted − plain, averaged over channels, model-ready units; the third
    panel) and `weight_sum` (Σ w_i; 0 means the unit never fired, and the weighted mean is the plain mean)."""
    spec = dataset_spec(dataset)
    c, h, w = w_mean.shape
    size = (160, 160) if dataset != "imagenet" else (224, 224)
    shown = figures.to_pixels(np.stack([w_mean, mean_image]), dataset)  # [2, H, W, 3]
    diff = (w_mean - mean_image).mean(0)  # [H, W]
    grey = plots.grey_bar("pixel value") if c == 1 else None
    panels = [plots.Panel(figures.upsample(shown[0], size, smooth=h > 64), h, w, "activation-weighted mean", grey),
              plots.Panel(figures.upsample(shown[1], size, smooth=h > 64), h, w, "plain mean", grey),
              plots.Panel(figures.upsample(figures.signed_rgb(diff), size, smooth=h > 64), h, w, "weighted - plain",
                          plots.signed_bar(float(np.abs(diff).max()), "difference (model-ready units)"))]
    png = figures.save_png(plots.figure(panels), tmp / f"unit{unit}_weighted_mean.png")
    arrays = {"weighted_mean": w_mean, "weighted_mean_pixels": w_mean * spec.pixel_scale + spec.pixel_offset,
              "plain_mean": mean_image, "plain_mean_pixels": mean_image * spec.pixel_scale + spec.pixel_offset,
              "difference": diff, "weight_sum": w_sum}
    return png, figures.save_npz(tmp / f"unit{unit}_weighted_mean.npz", arrays)


def weighted_mean_json(w_mean: np.ndarray, dataset: str, npz: str) -> dict[str, Any]:
    """Where the weighted-mean image's numbers are: its npz (arrays `weighted_mean`, `weighted_mean_pixels`), and,
    for an image of at most `INLINE_VALUES` values, the numbers themselves `# [C][H][W]` (6 decimals)."""
    spec = dataset_spec(dataset)
    out: dict[str, Any] = {"shape": list(w_mean.shape), "npz": npz, "arrays": ["weighted_mean", "weighted_mean_pixels"]}
    if w_mean.size <= INLINE_VALUES:
        out["model_units"] = np.round(w_mean, 6).tolist()
        out["pixels"] = np.round(w_mean * spec.pixel_scale + spec.pixel_offset, 6).tolist()
    return out


def top_classes(labels: np.ndarray, score: np.ndarray, names: list[str] | None, k: int = 50) -> list[dict[str, Any]]:
    """The classes of the top-k examples by score, most frequent first, with their counts."""
    order = np.argsort(-score, kind="stable")[:k]
    values, counts = np.unique(labels[order], return_counts=True)
    ranked = sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: (-vc[1], vc[0]))[:10]
    return [{"label": int(v), "class": label_text(int(v), names), "count": int(c)} for v, c in ranked]


def unit_section(entry: dict[str, Any], files: dict[str, str], conv: bool) -> str:
    rows = [stats_row("every example" + (" and position" if conv else ""), entry["activation"])]
    if conv:
        rows.append(stats_row("per-example max", entry["per_example_max"]))
    classes = ", ".join(f"{c['class']} ×{c['count']}" for c in entry["top_classes"])
    npz = {k: Path(v["path"]).name for k, v in entry["data"].items()}
    fig = lambda key, alt, caption: figures.figure_html(files[key], alt, caption, npz.get(key))  # noqa: E731
    parts = [f"<h2>Unit {entry['unit']}</h2>", figures.table(STATS_HEAD, rows),
             f"<p>Classes of the top 50 fit examples: {esc(classes)}</p>",
             fig("top", "top examples", f"Top {len(entry['top_examples'])} fit examples by score (caption: score, label)"),
             fig("weighted_mean", "weighted mean", "Activation-weighted mean input (weights max(s, 0)), the plain "
                 "fit-set mean, and their difference (red: more ink/light in the unit's strong examples, blue: less); "
                 "axes: image row and column")]
    if conv:
        parts += [fig("top_overlay", "overlays", "The same examples with the unit's map laid over them (scaled to the "
                      "top score; the bar shows the colour over a black pixel)"),
                  fig("mean_map", "mean map", "Mean activation map over the fit set"),
                  fig("argmax_map", "argmax map", "Where each fit example's maximum falls (count per position, "
                      "examples with max &gt; 0)")]
    return "\n".join(parts)


def render_page(report: dict[str, Any], sections: list[str]) -> str:
    rows = [[name, "×".join(map(str, v["shape"])), f"{v['min']:.4g}", f"{v['max']:.4g}", f"{v['mean']:.4g}",
             f"{v['sd']:.4g}"] for name, v in report["inputs"].items()]
    body = [f"<h1>inspect {esc(report['task'])}</h1>",
            f"<p>Model {esc(report['model'])}, layer <code>{esc(report['layer'])}</code>, units "
            f"{esc(', '.join(map(str, report['units'])))} ({esc(report['unit_kind'])}); per-example target shape "
            f"{esc('×'.join(map(str, report['target_shape'])))}. Everything here is from the <b>fit set</b> "
            f"({esc(report['dataset'])} {esc(report['fit_split'])}, n = {report['n_fit']}); the eval set is not read.</p>",
            f"<p>Image: {esc('×'.join(map(str, report['image']['shape'])))} per example; {esc(report['image']['scaling'])}.</p>",
            "<p>Each figure's numbers are in the <code>.npz</code> beside it (<code>numpy.load</code>), listed with "
            "their arrays' shapes in <a href=\"inspect.json\">inspect.json</a>.</p>",
            "<h2>Inputs a replacement may read</h2>",
            figures.table(["input", "shape per example", "min", "max", "mean", "sd"], rows), *sections]
    return figures.page(f"inspect {report['task']}", "\n".join(body))
