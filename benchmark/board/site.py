"""`replacebench leaderboard --html DIR`: the board as a static site that works offline.

Pages: `index.html` (every task, and a cross-task summary per submission), `tasks/<task-slug>.html` (the ranked
table, a forest plot of the primary recovery CIs and recovery against description length, both inline SVG) and
`submissions/<name>.html` (description, authors, date, commit, provenance, and its entry on every task).

The data, ranks, frontier and marks are the Markdown board's own (`leaderboard.py`): the same checked records
(`verify.load_checked`), `board_ranks`, `frontier_entries`, `sort_key`, `rankable`, `submission_state`. Copies
(`is_copy`) are a reference ceiling: greyed rows below a `reference (copy)` label with # `ref`, a grey ring with an
italic name in both plots, and left out of every count, rank and "top entry" of the index. Every
page is one file with inline CSS and SVG, no script, and a Content-Security-Policy that forbids loading anything
from elsewhere. All text from records passes through `html.escape`. The folder is written whole or not at all
(`figures.atomic_dir`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from ..analysis import figures
from ..analysis.figures import esc
from ..record.format import UNDEFINED, fmt_p, fmt_p_clean, fmt_pct, recovery_cell
from ..record.typed import Record
from ..tasks import all_tasks
from .leaderboard import (
    REFERENCE,
    REFERENCE_NOTE,
    Board,
    beats_mean,
    board_ranks,
    dl_cell,
    frontier_entries,
    is_copy,
    load_board,
    numbers_cell,
    power_note,
    rankable,
    sort_key,
    split_tests,
    splits_differ,
    standard_record,
    submission_state,
)


def slug(task_id: str) -> str:
    """The task's file-name slug, as `Task.slug`: `mnist-cnn/conv2:7` → `mnist-cnn__conv2-7`."""
    return task_id.replace("/", "__").replace(":", "-")


def task_href(task_id: str, prefix: str = "") -> str:
    return f"{prefix}tasks/{esc(slug(task_id))}.html"


def sub_href(name: str, prefix: str = "") -> str:
    return f"{prefix}submissions/{esc(name)}.html"


def nav(prefix: str) -> str:
    return f'<p class="muted"><a href="{prefix}index.html">replacebench leaderboard</a></p>'


def marks(record: Record, hashes: dict[Path, str | None]) -> list[str]:
    """The board's marks after a name: copy, ≤ mean, non-standard, not isolated, stale."""
    return [m for m in ("copy" if record.complexity.copy else "", "" if beats_mean(record) else "≤ mean",
                        "" if record.task.standard_protocol else "non-standard",
                        submission_state(record, hashes)) if m]


#: a reference (copy) row: greyed, apart from the ranked entries
REF_TR = '<tr style="background:#f3f4f6;color:#57606a">'


def rank_cell(record: Record, ranks: dict[str, int]) -> str:
    """The # cell: the entry's rank, `ref` for a copy (a reference, never ranked), `—` for another unranked entry."""
    return "ref" if is_copy(record) else str(ranks.get(record.submission.name, "—"))


def reference_order(records: list[Record]) -> list[Record]:
    """The entries in the board's order (`sort_key`), then the copies (references) by name."""
    return sorted((r for r in records if not is_copy(r)), key=sort_key) + \
        sorted((r for r in records if is_copy(r)), key=lambda r: r.submission.name)


def header_row(cells: list[str], left: tuple[int, ...]) -> str:
    """A table's header row; the columns in `left` are left-aligned."""
    return "<tr>" + "".join(("<th class='l'>" if i in left else "<th>") + esc(h) + "</th>" for i, h in enumerate(cells)) + "</tr>"


def has_recovery(record: Record) -> bool:
    """Whether the primary recovery is defined (a number, with its CI)."""
    return bool(record.results.primary.defined) and record.results.primary.recovery is not None


# -- SVG -------------------------------------------------------------------------------------------------------------

def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi]: a step of 1, 2 or 5 × 10^k giving about `count` ticks."""
    span = hi - lo if hi > lo else 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def forest_svg(records: list[Record], frontier: set[str]) -> str:
    """Each entry's primary recovery and 95% CI as a point on a line, one row per entry, with 0% and 100% marked.

    x = recovery in percent, linear, over [min(0, lowest low) − 5, max(100, highest high) + 5].
    """
    rows = reference_order(records)
    n_entries = sum(not is_copy(r) for r in rows)
    defined = [r for r in rows if has_recovery(r)]
    lows = [100 * r.results.primary.recovery_low for r in defined] or [0.0]
    highs = [100 * r.results.primary.recovery_high for r in defined] or [100.0]
    lo, hi = min(0.0, min(lows)) - 5, max(100.0, max(highs)) + 5
    left, right, row_h, top = 190, 30, 22, 20
    width = 760
    height = top + row_h * len(rows) + 70
    span = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * span

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="forest plot of recovery" font-family="sans-serif" font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    for t in nice_ticks(lo, hi):
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 60}" stroke="#eee"/>')
        out.append(f'<text x="{x(t):.1f}" y="{height - 44}" text-anchor="middle" fill="#555">{t:g}%</text>')
    for ref in (0.0, 100.0):
        out.append(f'<line x1="{x(ref):.1f}" y1="{top - 6}" x2="{x(ref):.1f}" y2="{height - 60}" stroke="#888" '
                   'stroke-dasharray="4 3"/>')
    if 0 < n_entries < len(rows):  # a rule between the ranked entries and the references below them
        out.append(f'<line x1="8" y1="{top + row_h * n_entries:.1f}" x2="{width - 8}" y2="{top + row_h * n_entries:.1f}" '
                   'stroke="#999"/>')
    for i, record in enumerate(rows):
        y = top + row_h * i + row_h / 2
        name = record.submission.name
        p = record.results.primary
        copy = is_copy(record)
        label = f"{name}, {REFERENCE}" if copy else name
        style = ' fill="#666" font-style="italic"' if copy else ""
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end"{style}>{esc(label)}</text>')
        if has_recovery(record):
            a, b, c = (100 * v for v in (p.recovery_low, p.recovery, p.recovery_high))
            if copy:
                line = 'stroke="#888" stroke-width="2" stroke-dasharray="5 3"'
                dot = 'r="4.5" fill="#fff" stroke="#666" stroke-width="1.5"'
            else:
                colour = "#b45309" if name in frontier else "#0550ae"
                line, dot = f'stroke="{colour}" stroke-width="2"', f'r="4" fill="{colour}"'
            out.append(f'<g><title>{esc(label)}: {esc(recovery_cell(p))}</title>'
                       f'<line x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(c):.1f}" y2="{y:.1f}" {line}/>'
                       f'<circle cx="{x(b):.1f}" cy="{y:.1f}" {dot}/></g>')
        else:
            out.append(f'<text x="{left + 4}" y="{y + 4:.1f}" fill="#9a3412">{esc(UNDEFINED)}</text>')
    out.append(f'<text x="{left + span / 2:.1f}" y="{height - 24}" text-anchor="middle" fill="#333">'
               "primary recovery, 95% CI (dashed lines: 0% and 100%)</text>")
    legend = [('<circle cx="0" cy="0" r="4" fill="#b45309"/>', "on the frontier"),
              ('<circle cx="0" cy="0" r="4" fill="#0550ae"/>', "entry"),
              ('<circle cx="0" cy="0" r="4.5" fill="#fff" stroke="#666" stroke-width="1.5"/>',
               f"{REFERENCE}: a ceiling, not ranked")]
    for i, (mark, text) in enumerate(legend):
        lx = left + [0, 140, 240][i]
        out.append(f'<g transform="translate({lx},{height - 8})">{mark}</g>'
                   f'<text x="{lx + 9}" y="{height - 4}" fill="#333">{esc(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def scatter_svg(records: list[Record], frontier: set[str]) -> str:
    """Primary recovery (y, %, with its CI) against description length (x, bits, log10 scale), per entry with both.

    Frontier entries are orange diamonds, copies (references, not ranked) grey rings with grey italic names, the
    others blue dots; the legend shows each marker.
    """
    pts = [r for r in records if r.complexity.description_bits and has_recovery(r)]
    width, height, left, bottom, top, right = 760, 380, 60, 50, 20, 150
    if not pts:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="420" height="40" font-family="sans-serif" '
                'font-size="12"><text x="4" y="24">No entry has both a defined recovery and a description length.</text></svg>')
    bits = [math.log10(r.complexity.description_bits) for r in pts]
    lows = [100 * r.results.primary.recovery_low for r in pts]
    highs = [100 * r.results.primary.recovery_high for r in pts]
    x_lo, x_hi = math.floor(min(bits) * 2) / 2 - 0.25, math.ceil(max(bits) * 2) / 2 + 0.25
    y_lo, y_hi = min(0.0, min(lows)) - 5, max(100.0, max(highs)) + 5

    def x(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (width - left - right)

    def y(v: float) -> float:
        return height - bottom - (v - y_lo) / (y_hi - y_lo) * (height - bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="recovery against description length" font-family="sans-serif" font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#999"/>']
    for e in range(math.ceil(x_lo), math.floor(x_hi) + 1):
        out.append(f'<line x1="{x(e):.1f}" y1="{top}" x2="{x(e):.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x(e):.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="#555">{10 ** e:,}</text>')
    for t in nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{width - right}" y2="{y(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="#555">{t:g}%</text>')
    for record, b, a, c in zip(pts, bits, lows, highs):
        name = record.submission.name
        r = 100 * record.results.primary.recovery
        copy = is_copy(record)
        label = f"{name}, {REFERENCE}" if copy else name
        style = 'fill="#666" font-style="italic"' if copy else 'fill="#333"'
        tip = f"{label}: {recovery_cell(record.results.primary)}, {record.complexity.description_bits:,} bits"
        if name in frontier:
            d = 6
            shape = (f'<polygon points="{x(b):.1f},{y(r) - d:.1f} {x(b) + d:.1f},{y(r):.1f} {x(b):.1f},{y(r) + d:.1f} '
                     f'{x(b) - d:.1f},{y(r):.1f}" fill="#b45309"/>')
        elif copy:
            shape = f'<circle cx="{x(b):.1f}" cy="{y(r):.1f}" r="4.5" fill="#fff" stroke="#666" stroke-width="1.5"/>'
        else:
            shape = f'<circle cx="{x(b):.1f}" cy="{y(r):.1f}" r="4.5" fill="#0550ae"/>'
        out.append(f'<g><title>{esc(tip)}</title><line x1="{x(b):.1f}" y1="{y(a):.1f}" x2="{x(b):.1f}" y2="{y(c):.1f}" '
                   f'stroke="#bbb"/>{shape}<text x="{x(b) + 8:.1f}" y="{y(r) + 4:.1f}" {style}>{esc(label)}</text></g>')
    out.append(f'<text x="{left + (width - left - right) / 2:.1f}" y="{height - 12}" text-anchor="middle" fill="#333">'
               "description length (bits, log scale)</text>")
    out.append(f'<text x="14" y="{top + (height - top - bottom) / 2:.1f}" fill="#333" '
               f'transform="rotate(-90 14 {top + (height - top - bottom) / 2:.1f})" text-anchor="middle">recovery</text>')
    legend = [('<polygon points="0,-6 6,0 0,6 -6,0" fill="#b45309"/>', ["on the frontier"]),
              ('<circle cx="0" cy="0" r="4.5" fill="#0550ae"/>', ["entry"]),
              ('<circle cx="0" cy="0" r="4.5" fill="#fff" stroke="#666" stroke-width="1.5"/>',
               [REFERENCE, "a ceiling, not ranked"])]
    for i, (mark, lines) in enumerate(legend):
        ly = top + 8 + 22 * i
        out.append(f'<g transform="translate({width - right + 19},{ly})">{mark}</g>'
                   + "".join(f'<text x="{width - right + 30}" y="{ly + 4 + 14 * j}">{esc(t)}</text>'
                             for j, t in enumerate(lines)))
    out.append("</svg>")
    return "\n".join(out)


# -- pages -----------------------------------------------------------------------------------------------------------

def task_page(task_id: str, records: list[Record], record_path: Path, hashes: dict[Path, str | None],
              heldout: dict[str, Record] | None = None, split_count: int = 1) -> str:
    """A task's page: its public entries, with each one's held-out recovery beside it (— when none)."""
    heldout = heldout or {}
    shown = standard_record(records)
    t = shown.task
    frontier = frontier_entries(records)
    ranks = board_ranks(records)
    abl = t.primary_ablation
    head = ["#", "submission", "kind", f"recovery ({abl}) [95% CI]", "held-out recovery [95% CI]",
            f"KL recovery ({abl}) [95% CI]",
            "p(beats abl.)", "p(R≥1)", "fidelity r", "numbers (fitted + literal; stored bits)", "DL (bits)", "frontier", "marks", "n"]
    rows, refs = [], []
    for record in reference_order(records):
        res, c, name = record.results, record.complexity, record.submission.name
        r = res.mean_fidelity_r
        split_marks = ["public ≠ held-out"] if splits_differ(record, heldout.get(name), split_count) else []
        (refs if is_copy(record) else rows).append((REF_TR if is_copy(record) else "<tr>") + "".join([
            f"<td>{esc(rank_cell(record, ranks))}</td>",
            f'<td class="l"><a href="{sub_href(name, "../")}">{esc(name)}</a></td>',
            f'<td class="l">{esc(record.submission.kind)}</td>',
            f"<td>{esc(recovery_cell(res.primary))}</td>",
            f"<td>{esc(recovery_cell(heldout[name].results.primary) if name in heldout else '—')}</td>",
            f"<td>{esc('—' if not res.kl_recovery else recovery_cell(res.primary_kl))}</td>",
            f"<td>{esc(fmt_p(res.primary.p_beats_ablation))}</td>", f"<td>{esc(fmt_p_clean(res.p_at_least_clean))}</td>",
            f"<td>{esc('—' if r is None else f'{r:.3f}')}</td>", f"<td>{esc(numbers_cell(c))}</td>",
            f"<td>{esc(dl_cell(c))}</td>",
            f"<td>{'◆' if name in frontier else ''}</td>", f'<td class="l">{esc(", ".join(marks(record, hashes) + split_marks))}</td>',
            f"<td>{esc(record.task.n_eval)}</td>"]) + "</tr>")
    if refs:  # the references: their own rows, below a full-width label, after the ranked entries
        rows += [f'{REF_TR}<td class="l" colspan="{len(head)}"><b>{esc(REFERENCE)}</b>: {esc(REFERENCE_NOTE)}</td></tr>',
                 *refs]
    table = "<table>" + header_row(head, (1, 2, 12)) + "\n" + "\n".join(rows) + "</table>"
    body = [nav("../"), f"<h1>{esc(task_id)}</h1>",
            f"<p>Layer <code>{esc(t.layer)}</code>, units {esc(', '.join(map(str, t.units)))}, inputs "
            f"{esc(', '.join(map(str, t.inputs)))}; {esc(t.dataset)} {esc(t.eval_split)} (n = {esc(t.n_eval)}); "
            f"primary ablation: {esc(abl)}. {esc(power_note(shown, record_path))}</p>",
            "<p class=\"muted\">Ranked by primary recovery; entries whose 95% CIs overlap share a rank; undefined or "
            "non-standard runs are shown but not ranked (—). Copies are a reference ceiling (# ref), listed below the "
            "ranked entries: never ranked, and no rank counts them. ◆: no other entry recovers as much with a shorter "
            "description (copies excluded). Marks as on the Markdown board (README: Records, the board and verify).</p>",
            table, "<h2>Recovery with its 95% CI</h2>", forest_svg(records, frontier),
            "<h2>Recovery against description length</h2>", scatter_svg(records, frontier)]
    return figures.page(f"{task_id} — replacebench", "\n".join(body))


def submission_page(name: str, entries: list[tuple[str, Record]], ranks: dict[str, dict[str, int]],
                    frontiers: dict[str, set[str]], hashes: dict[Path, str | None]) -> str:
    latest = max((r for _, r in entries), key=lambda r: r.provenance.created or "")
    sub, prov = latest.submission, latest.provenance
    rows = []
    for task_id, record in sorted(entries, key=lambda e: e[0]):
        res, c, p = record.results, record.complexity, record.provenance
        rows.append((REF_TR if is_copy(record) else "<tr>") + "".join([
            f'<td class="l"><a href="{task_href(task_id, "../")}">{esc(task_id)}</a></td>',
            f"<td>{esc(rank_cell(record, ranks[task_id]))}</td>", f"<td>{esc(recovery_cell(res.primary))}</td>",
            f"<td>{esc('—' if not res.kl_recovery else recovery_cell(res.primary_kl))}</td>",
            f"<td>{esc(dl_cell(c))}</td>",
            f"<td>{'◆' if name in frontiers[task_id] else ''}</td>",
            f'<td class="l">{esc(", ".join(marks(record, hashes)))}</td>',
            f'<td class="l">{esc(p.created or "—")}</td>',
            f'<td class="l"><code>{esc((p.git_commit or "—")[:12])}</code>{" (dirty)" if p.git_dirty else ""}</td>',
        ]) + "</tr>")
    head = ["task", "#", "recovery [95% CI]", "KL recovery [95% CI]", "DL (bits)", "frontier", "marks", "scored", "commit"]
    table = "<table>" + header_row(head, (0, 6, 7, 8)) + "\n" + "\n".join(rows) + "</table>"
    prov_rows = [["submission hash", sub.content_hash], ["scored (latest)", prov.created],
                 ["commit", f"{prov.git_commit}" + (" (uncommitted changes)" if prov.git_dirty else "")],
                 ["package", prov.package_version],
                 ["isolation", latest.isolation.level],
                 ["intervals", prov.intervals or "—"], ["device", prov.device],
                 ["python / torch / numpy / scipy", " / ".join(str(v) for v in (prov.python, prov.torch, prov.numpy, prov.scipy))],
                 ["platform", prov.platform]]
    body = [nav("../"), f"<h1>{esc(name)}</h1>",
            f"<p><b>{esc(sub.kind)}</b> by {esc(', '.join(map(str, sub.authors or [])) or '—')}</p>",
            f"<blockquote>{esc(sub.description or '')}</blockquote>",
            "<h2>Entries</h2>", table, "<h2>Provenance (latest record)</h2>",
            figures.table(["", "value"], [[k, "—" if v is None else v] for k, v in prov_rows], left=2)]
    return figures.page(f"{name} — replacebench", "\n".join(body))


def top_entry_cells(records: list[Record]) -> tuple[str, str]:
    """The index's "top entry" and "its recovery" cells for one task, over its non-copies only.

    The top entry is the best ranked non-copy (`sort_key`; `rankable` leaves copies out); a baseline is marked as
    one, and when no submission but the baselines (and copies) has an entry, the cell says so.
    """
    ranked = [r for r in sorted(records, key=sort_key) if rankable(r)]
    if not ranked:
        return ("— (copies only)" if records and all(is_copy(r) for r in records) else "— (no ranked entry)"), "—"
    best = ranked[0]
    name, kind = best.submission.name, best.submission.kind
    if kind != "baseline":
        label = name
    elif any(r.submission.kind != "baseline" for r in records if not is_copy(r)):
        label = f"{name} (baseline)"
    else:
        label = f"{name} (baselines{' and copies' if any(is_copy(r) for r in records) else ''} only)"
    return label, recovery_cell(best.results.primary)


def reference_cell(records: list[Record]) -> str:
    """The index's reference (copy) cell: each copy's name and primary recovery, or — when the task has none."""
    copies = sorted((r for r in records if is_copy(r)), key=lambda r: r.submission.name)
    return "; ".join(f"{r.submission.name}: {recovery_cell(r.results.primary)}" for r in copies) or "—"


def index_page(board: Board, ranks: dict[str, dict[str, int]], frontiers: dict[str, set[str]],
               hashes: dict[Path, str | None], order: dict[str, int]
               ) -> tuple[str, dict[str, list[tuple[str, Record]]]]:
    """The index: the submissions across tasks and the tasks, each summary over non-copies (copies get their own
    column); also each submission's entries, by name, for its page."""
    task_rows = []
    by_sub: dict[str, list[tuple[str, Record]]] = defaultdict(list)
    beyond = 0
    for task_id in sorted(board, key=lambda t: (order.get(t, len(order)), t)):
        records = board[task_id]
        for r in records:
            by_sub[r.submission.name].append((task_id, r))
        entries = [r for r in records if not is_copy(r)]
        beyond += any(r.submission.kind != "baseline" for r in entries)
        top, its = top_entry_cells(records)
        task_rows.append("<tr>" + "".join([
            f'<td class="l"><a href="{task_href(task_id)}">{esc(task_id)}</a></td>', f"<td>{len(entries)}</td>",
            f"<td>{sum(rankable(r) for r in records)}</td>",
            f'<td class="l">{esc(top)}</td>', f"<td>{esc(its)}</td>",
            f'<td class="l" style="color:#57606a;white-space:nowrap">{esc(reference_cell(records))}</td>',
            f"<td>{esc(records[0].task.n_eval)}</td>"]) + "</tr>")
    sub_rows = []
    for name in sorted(by_sub):
        entries = by_sub[name]
        recs = [r for _, r in entries]
        defined = [r.results.primary.recovery for r in recs if rankable(r)]
        rs = [v for v in (r.results.mean_fidelity_r for r in recs) if v is not None]
        firsts = sum(ranks[t].get(name) == 1 for t, _ in entries)
        copies = sum(is_copy(r) for r in recs)
        sub_rows.append((REF_TR if copies == len(recs) else "<tr>") + "".join([
            f'<td class="l"><a href="{sub_href(name)}">{esc(name)}</a></td>',
            f'<td class="l">{esc(recs[0].submission.kind)}</td>', f"<td>{len(entries)}</td>",
            f"<td>{len(defined)}</td>", f"<td>{firsts}</td>",
            f"<td>{sum(name in frontiers[t] for t, _ in entries)}</td>",
            f"<td>{esc(fmt_pct(statistics.median(defined)) if defined else '—')}</td>",
            f"<td>{esc(f'{statistics.fmean(rs):.3f}' if rs else '—')}</td>",
            f"<td>{copies}</td>",
            f'<td class="l">{esc(", ".join(sorted({m for r in recs for m in marks(r, hashes) if m in ("stale", "not isolated")})))}</td>',
        ]) + "</tr>")

    body = ["<h1>replacebench leaderboard</h1>",
            "<p>Recovery = (mean L_ablated − mean L_replaced) / (mean L_ablated − mean L_clean), per-example "
            "cross-entropy on each task's eval set, with 95% intervals. Generated by <code>replacebench leaderboard "
            "--html</code> from the checked records; works offline.</p>"]
    if not board:
        body.append("<p>No results yet: run <code>replacebench score SUBMISSION --task TASK</code>.</p>")
    body += ["<h2>Submissions across tasks</h2>",
             "<p class=\"muted\">ranked: tasks where its primary recovery is defined, the run standard and it is no "
             "copy; #1: tasks where it shares rank 1; median recovery over the ranked tasks; r: mean activation "
             f"fidelity over its tasks; {esc(REFERENCE)}: tasks where it is a copy (it can hold the target's own "
             "weights), shown as a reference ceiling and never ranked (a row that is a copy on every task is grey).</p>",
             "<table>" + header_row(["submission", "kind", "tasks", "ranked", "#1", "on frontier", "median recovery",
                                 "mean r", REFERENCE, "marks"], (0, 1, 9)) + "\n" + "\n".join(sub_rows) + "</table>",
             "<h2>Tasks</h2>",
             f"<p>{beyond} of {len(board)} tasks have an entry beyond the baselines and copies.</p>"
             "<p class=\"muted\">entries, ranked, top entry and its recovery count non-copies only (the baselines "
             f"included); {esc(REFERENCE)}: each copy's recovery, a ceiling to compare with, not an explanation.</p>",
             "<table>" + header_row(["task", "entries", "ranked", "top entry", "its recovery [95% CI]", REFERENCE, "n"],
                                    (0, 3, 5)) + "\n" + "\n".join(task_rows) + "</table>"]
    return figures.page("replacebench leaderboard", "\n".join(body)), by_sub


def write_site(results_dir: Path, out: Path, warn: Callable[[str], None] = lambda message: None) -> Path:
    """Render the site from `results_dir` into `out` (replaced whole); returns `out`'s absolute path."""
    out = Path(out).expanduser().absolute()
    board, heldout, where = load_board(results_dir, warn, "site")
    hashes: dict[Path, str | None] = {}
    ranks = {t: board_ranks(rs) for t, rs in board.items()}
    frontiers = {t: frontier_entries(rs) for t, rs in board.items()}
    order = {tid: i for i, tid in enumerate(all_tasks())}
    with figures.atomic_dir(out) as tmp:
        index, by_sub = index_page(board, ranks, frontiers, hashes, order)
        (tmp / "index.html").write_text(index)
        (tmp / "tasks").mkdir()
        (tmp / "submissions").mkdir()
        for task_id, records in board.items():
            shown = standard_record(records)
            (tmp / "tasks" / f"{slug(task_id)}.html").write_text(
                task_page(task_id, records, where[id(shown)], hashes, heldout.get(task_id), split_tests(heldout)))
        for name, entries in by_sub.items():
            (tmp / "submissions" / f"{name}.html").write_text(submission_page(name, entries, ranks, frontiers, hashes))
    return out
