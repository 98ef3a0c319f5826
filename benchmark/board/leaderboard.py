"""Render `leaderboard/README.md` from result records: per task, entries ranked by primary recovery."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths, stats
from ..errors import UserError
from ..tasks import all_tasks
from .records import find_records, read_sidecar
from .verify import load_checked

UNDEFINED = "undefined ⚠"
MARKDOWN_SPECIAL = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
                    "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}


def md(text: Any) -> str:
    """Text from a record, safe inside a Markdown table cell: one line, no markup, no HTML."""
    out = " ".join(str(text).split())
    return "".join(MARKDOWN_SPECIAL.get(ch, ch) for ch in out)


def submission_state(record: dict[str, Any], hashes: dict[Path, str | None] | None = None) -> str:
    """'' for an isolated record of the submission as it is now; else the marks a reader must see.

    `hashes` memoises each folder's current hash across the records of one rendering (None: unreadable).
    """
    marks = []
    if record.get("isolation", {}).get("level") != "namespaces":
        marks.append("not isolated")
    if is_stale(record, {} if hashes is None else hashes):
        marks.append("stale")
    return ", ".join(marks)


def is_stale(record: dict[str, Any], hashes: dict[Path, str | None]) -> bool:
    """Whether `submissions/<name>` exists and its content hash now differs from the record's (an unreadable folder
    counts as changed). `hashes` memoises each folder's current hash (None: unreadable) across many records."""
    from ..harness.submissions import folder_hash

    folder = paths.submissions_dir() / str(record["submission"]["name"])
    if not folder.is_dir():
        return False
    if folder not in hashes:
        try:
            hashes[folder] = folder_hash(folder)
        except UserError:
            hashes[folder] = None
    return hashes[folder] != record["submission"]["content_hash"]


def fmt_pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal ('—' for none); -0.0 prints as 0.0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value + 0.0:.1f}%".replace("-0.0%", "0.0%")


def fmt_points(fraction: float) -> str:
    """A recovery difference in percentage points, to two significant digits: 0.64 → '64', 0.031 → '3.1'."""
    points = 100 * fraction
    return f"{points:,.0f}" if points >= 10 else f"{points:.2g}"


def fmt_seconds(seconds: float) -> str:
    """A short duration to two significant digits: '850 ns', '3.1 µs', '120 µs', '2.4 ms', '1.3 s'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            value = seconds / scale
            return f"{value:.2g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds / 1e-9:.2g} ns"


def efficiency_cells(record: dict[str, Any]) -> list[str]:
    """'replace / original' wall time per example, and the original units' multiply-adds per example."""
    e = record.get("efficiency")
    if not e:
        return ["—", "—"]
    times = f"{fmt_seconds(e['replace_seconds_per_example'])} / {fmt_seconds(e['original_seconds_per_example'])}"
    return [times, f"{e['original_macs_per_example']:,}"]


def fmt_p(value: float | None) -> str:
    if value is None:
        return "—"
    return "<1e-4" if value < 1e-4 else f"{value:.3g}"


def recovery_cell(stats: dict[str, Any]) -> str:
    """'97.3% [95.1, 99.2]', or the undefined mark when the ablation effect is not significant."""
    if not stats.get("defined") or stats.get("recovery") is None:
        return UNDEFINED
    low, high = (fmt_pct(stats[k]).rstrip("%") for k in ("recovery_low", "recovery_high"))
    return f"{fmt_pct(stats['recovery'])} [{low}, {high}]"


OTHER_MEANS_R = 0.5


def mean_fidelity_r(record: dict[str, Any]) -> float | None:
    """The mean over units of the activation fidelity's Pearson r (units without an r left out; None if none has one)."""
    rs = [f["pearson_r"] for f in record["results"]["fidelity"] if f.get("pearson_r") is not None]
    return sum(rs) / len(rs) if rs else None


def beats_by_other_means(record: dict[str, Any]) -> bool:
    """Whether the entry beats the neuron without computing it: its primary recovery is significantly above 1 (the
    95% CI's low end > 1), and either the mean activation fidelity r over its units is below OTHER_MEANS_R (0.5) or
    its primary KL recovery is significantly below 0 (the CI's high end < 0: its output distribution is further
    from the clean model's than the ablated model's is).

    Lowering the loss below the neuron's with output that does not track the unit, or that moves the output
    distribution more than removing the unit does, means it found the answer elsewhere (e.g. by looking up public
    labels: `tests/hostile/label-lookup` has r 0.67 but KL recovery −716%). Such an entry is shown, never ranked.
    """
    primary = record["results"]["primary"]
    if not (primary.get("defined") and primary.get("recovery_low") is not None and primary["recovery_low"] > 1):
        return False
    r = mean_fidelity_r(record)
    kl = (record["results"].get("kl_recovery") or {}).get(primary["ablation"]) or {}
    kl_below_zero = bool(kl.get("defined")) and kl.get("recovery_high") is not None and kl["recovery_high"] < 0
    return (r is not None and r < OTHER_MEANS_R) or kl_below_zero


def is_copy(record: dict[str, Any]) -> bool:
    """Whether the record is a copy (`complexity.copy`): it stores at least as many numbers as the target's fan-in,
    so it could hold the target's own weights. A copy is a reference ceiling, never ranked and never on a frontier."""
    return bool(record["complexity"].get("copy"))


def rankable(record: dict[str, Any]) -> bool:
    """A standard-protocol public record with a defined primary recovery that is not a copy (`is_copy`) and does
    not beat the neuron by other means (the others are shown, never ranked)."""
    primary = record["results"]["primary"]
    return bool(primary.get("defined")) and primary.get("recovery") is not None and record["task"]["standard_protocol"] \
        and record.get("split", "public") == "public" and not is_copy(record) and not beats_by_other_means(record)


def pareto_frontier(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names whose (recovery, bits) no other point dominates: none has recovery ≥ and bits ≤, one of them strictly.

    Sorted by bits, then by recovery descending, a point is on the frontier when its recovery beats every
    recovery seen at fewer bits (ties in both keep both).
    """
    out: set[str] = set()
    best = -math.inf
    previous: tuple[float, float] | None = None
    for name, (recovery, bits) in sorted(points.items(), key=lambda item: (item[1][1], -item[1][0], item[0])):
        if recovery > best or (recovery, bits) == previous:
            out.add(name)
            best, previous = max(best, recovery), (recovery, bits)
    return out


def frontier_entries(records: list[dict[str, Any]], excluded: set[str] = frozenset()) -> set[str]:
    """The task's frontier of primary recovery against description length, over the ranked entries (`rankable`, so
    no copy: a copy explains nothing, whatever it scores) with a measured description length."""
    points = {}
    for record in records:
        primary, c = record["results"]["primary"], record["complexity"]
        if rankable(record) and c.get("description_bits") is not None and record["submission"]["name"] not in excluded:
            points[record["submission"]["name"]] = (primary["recovery"], c["description_bits"])
    return pareto_frontier(points)


def numbers_cell(c: dict[str, Any]) -> str:
    """'2 + 77' (fitted + literal numbers), or the fitted count alone for a record without the measure."""
    if c.get("literal_numbers") is None:
        return str(c["fitted_parameters"])
    return f"{c['fitted_parameters']} + {c['literal_numbers']}"


ALPHA = 0.05


def interval_ranks(intervals: dict[str, tuple[float, float]]) -> dict[str, int]:
    """Ranks that respect the intervals: rank = 1 + the number of entries whose CI lies wholly above this one's.

    Entries whose CIs overlap share a rank, unless a third entry lies wholly above one of them but not the other.
    """
    return {name: 1 + sum(other_low > high for other_low, _ in intervals.values()) for name, (_, high) in intervals.items()}


def board_ranks(records: list[dict[str, Any]], excluded: set[str] = frozenset()) -> dict[str, int]:
    """Interval ranks (`interval_ranks`) of the rankable records whose names are not in `excluded`."""
    return interval_ranks({r["submission"]["name"]: (r["results"]["primary"]["recovery_low"],
                                                    r["results"]["primary"]["recovery_high"])
                           for r in records if rankable(r) and r["submission"]["name"] not in excluded})


def beats_mean(record: dict[str, Any]) -> bool:
    """Whether the replacement's loss is significantly below the mean ablation's (one-sided paired t-test)."""
    p = record["results"]["recovery"]["mean"].get("p_beats_ablation")
    return p is not None and p < ALPHA


def sort_key(record: dict[str, Any]) -> tuple:
    primary = record["results"]["primary"]
    ranked = rankable(record)
    return (not ranked, -(primary["recovery"] if ranked else 0.0), record["submission"]["name"])


def heldout_cell(public: dict[str, Any] | None, heldout: dict[str, Any] | None) -> str:
    """The held-out record's primary recovery with its CI ('—' when none), marked when it scored another version."""
    if heldout is None:
        return "—"
    cell = recovery_cell(heldout["results"]["primary"])
    if public is not None and public["submission"]["content_hash"] != heldout["submission"]["content_hash"]:
        cell += " (other version)"
    return cell


REFERENCE = "reference (copy)"
REFERENCE_NOTE = ("not ranked, never on the frontier: it can hold the target's own weights, so its recovery is a ceiling, "
                  "not an explanation.")


def task_table(records: list[dict[str, Any]], hashes: dict[Path, str | None],
               heldout: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One task's tables. `records`: its public records; `heldout`: its held-out records by submission name (shown in
    their own column; one without a public record gets its own row, marked `held-out only`, never ranked).
    An entry flagged `beats by other means` on either split is not ranked and not on the frontier.

    Copies (`is_copy`) are not in the ranked table: they follow it in a table of their own, labelled
    `reference (copy)`, their # cell `ref`.
    """
    heldout = heldout or {}
    public_names = {r["submission"]["name"] for r in records}
    rows = list(records) + [r for name, r in sorted(heldout.items()) if name not in public_names]
    first = rows[0]["task"]
    topk = first.get("topk", [1])
    head = ["#", "submission", "kind", f"recovery ({first['primary_ablation']}) [95% CI]", "held-out recovery [95% CI]",
            f"KL recovery ({first['primary_ablation']}) [95% CI]", "zero", "mean", "resample",
            "p(beats abl.)", "p(R≥1)", *[f"top-{k} repl. / clean" for k in topk], "KL(clean‖repl.)", "fidelity r",
            "numbers (fitted + literal)", "DL (bits)", "frontier", "time/example: replace / original", "original MACs",
            "n"]
    header = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    other_means = {r["submission"]["name"] for r in rows if beats_by_other_means(r)} | \
        {name for name, r in heldout.items() if beats_by_other_means(r)}
    frontier = frontier_entries(records, other_means)
    ranks = board_ranks(records, other_means)

    def line(record: dict[str, Any]) -> str:
        res = record["results"]
        rec = res["recovery"]
        rs = [f["pearson_r"] for f in res["fidelity"] if f.get("pearson_r") is not None]
        c = record["complexity"]
        sub = record["submission"]["name"]
        only = record.get("split", "public") == "held-out"
        marks = [m for m in ("held-out only" if only else "",
                             "beats by other means" if sub in other_means else "",
                             "copy" if c.get("copy") else "", "" if beats_mean(record) else "≤ mean",
                             "" if record["task"]["standard_protocol"] else "non-standard",
                             submission_state(record, hashes)) if m]
        name = md(record["submission"]["name"]) + (f" ({', '.join(marks)})" if marks else "")
        row = [
            "ref" if is_copy(record) else str(ranks.get(sub, "—")), name, md(record["submission"]["kind"]),
            "—" if only else recovery_cell(res["primary"]), heldout_cell(None if only else record, heldout.get(sub)),
            "—" if not res.get("kl_recovery") else recovery_cell(res["kl_recovery"][res["primary"]["ablation"]]),
            *[fmt_pct(rec[a]["recovery"]) if rec[a]["defined"] else UNDEFINED for a in ("zero", "mean", "resample")],
            fmt_p(res["primary"]["p_beats_ablation"]), fmt_p(res["p_at_least_clean"]),
            *[f"{fmt_pct(res['accuracy'][f'top{k}']['replaced'])} / {fmt_pct(res['accuracy'][f'top{k}']['clean'])}" for k in topk],
            f"{res['mean_kl_clean_replaced']:.4f}", f"{sum(rs) / len(rs):.3f}" if rs else "—",
            numbers_cell(c), "—" if c.get("description_bits") is None else f"{c['description_bits']:,}",
            "◆" if sub in frontier else "", *efficiency_cells(record), str(record["task"]["n_eval"]),
        ]
        return "| " + " | ".join(row) + " |"

    order = sorted(rows, key=lambda r: (r["submission"]["name"] not in ranks, *sort_key(r)))
    entries = [r for r in order if not is_copy(r)]
    copies = sorted((r for r in order if is_copy(r)), key=lambda r: r["submission"]["name"])
    lines = header + [line(r) for r in entries] if entries else ["No entry but copies yet."]
    if copies:
        lines += ["", f"**{REFERENCE.capitalize()}**: {REFERENCE_NOTE}", "", *header, *(line(r) for r in copies)]
    return lines


def power_note(record: dict[str, Any], path: Path) -> str:
    """What the eval set can resolve: the smallest recovery difference detected at 80% power (`stats`)."""
    arrays = read_sidecar(path, record)
    mde = stats.detectable_recovery_difference(arrays["loss.clean"].astype(np.float64),
                                               arrays[f"loss.{record['task']['primary_ablation']}"].astype(np.float64))
    if mde is None:
        return "The primary ablation does not raise the mean loss: nothing to recover."
    return f"Detectable recovery difference (80% power): {fmt_points(mde)} points."


NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a submission's name, as `submissions.parse_meta` requires
Board = dict[str, list[dict[str, Any]]]


def load_board(results_dir: Path, warn: Callable[[str], None], shown_on: str = "board"
               ) -> tuple[Board, dict[str, dict[str, dict[str, Any]]], dict[int, Path]]:
    """Every public record that passes its checks (`verify.load_checked`, and a valid submission name), by task id;
    the held-out ones, by task id and submission; and each record's file (by `id(record)`). A record left off
    gets one `warn` line naming it (`shown_on`: what it is left off)."""
    by_task: Board = defaultdict(list)
    heldout: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    where: dict[int, Path] = {}
    for path in find_records(results_dir):
        record, problems = load_checked(path)
        if record is not None and not NAME.fullmatch(str(record["submission"]["name"])):
            record, problems = None, ["its submission name is not a valid name (it would name a page)"]
        if record is None:
            warn(f"left {path} off the {shown_on}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            continue
        if record.get("split", "public") == "held-out":
            heldout[record["task"]["id"]][record["submission"]["name"]] = record
        else:
            by_task[record["task"]["id"]].append(record)
        where[id(record)] = path
    return by_task, heldout, where


def render(results_dir: Path, warn: Callable[[str], None] = lambda message: None) -> str:
    """The leaderboard as Markdown, from every record that passes its checks (`verify.load_checked`).

    A record that fails one is left off, and `warn` gets one line naming it.
    """
    by_task, heldout_by_task, where = load_board(results_dir, warn)
    hashes: dict[Path, str | None] = {}  # each submission folder hashed once per rendering
    order = {tid: i for i, tid in enumerate(all_tasks())}
    out = [
        "# replacebench leaderboard",
        "",
        "Generated by `replacebench leaderboard` from the records in `leaderboard/results/`; do not edit by hand.",
        "",
        "Recovery = (mean L_ablated − mean L_replaced) / (mean L_ablated − mean L_clean), per-example cross-entropy on",
        "the task's eval set; 95% Fieller intervals (closed form: no resampling, so no digit depends on a seed). "
        f"`{UNDEFINED}` means the ablation's effect on the loss (mean L_ablated − mean L_clean) is not significantly above 0:",
        "its 95% skewness-corrected interval (Hall 1992) or its t-statistic does not clear 0, so there is no measurable loss",
        "to recover and recovery is not defined (README: Statistics).",
        "KL recovery = 1 − mean KL(clean‖replaced) / mean KL(clean‖ablated): the same, on the output distribution, with no",
        "labels; far less noisy than cross-entropy (same intervals and gate). zero/mean/resample: CE recovery per ablation.",
        "p(beats abl.): one-sided paired t-test that the replacement's loss is below the ablated loss.",
        "p(R≥1): one-sided paired t-test, H0: mean L_replaced ≥ mean L_clean; a small p shows the replacement's loss is below",
        "the original's (R > 1), the bar of a replacement at least as good as the neuron.",
        "numbers: those `fit` returned + the numbers written in the submission's files. DL (description length): 8 bits per",
        "code token (comments, docstrings and names' spelling are free) + each written number at 4 bits per digit + 8 bits",
        "per other data byte + 32 bits per fitted number (README: Complexity). ◆: on the task's frontier, where no other",
        "entry recovers as much with a shorter description (copies, undefined recoveries and non-standard runs excluded).",
        "time/example: wall time of the submission's replace calls per example (measured by the harness, transfers",
        "included) / the original layer's from the nearest input, × the units' share of its channels; original MACs: the",
        "multiply-adds that compute the units' whole map from the nearest input (README: Efficiency).",
        "Each task's heading gives the smallest recovery difference its eval set detects at 80% power (README: Statistics).",
        "#: entries are ranked by primary recovery, and entries whose 95% CIs overlap share a rank (rank = 1 + the number",
        "of entries whose CI lies wholly above); an undefined recovery or a non-standard run is shown but not ranked (—).",
        "Copies are never ranked: each task's copies follow its ranked table in a table of their own, labelled",
        f"{REFERENCE} (# `ref`), as a ceiling to compare with; they take no rank from the other entries.",
        "Marks after a name: `≤ mean` (its loss is not significantly below the mean ablation's: one-sided paired t-test,",
        "p ≥ 0.05), `copy` (it stores at least as many numbers as the target's fan-in from its inputs, so it",
        "could hold the target's own weights), `not isolated` (scored with --in-process), `stale` (its folder changed",
        "since scoring), `non-standard` (eval or fit size overridden), `beats by other means` (primary recovery's 95% CI",
        f"lies wholly above 100% on the public or the held-out split, while the mean fidelity r over its units is below {OTHER_MEANS_R}",
        "or its KL recovery's CI lies wholly below 0: it lowers the loss below the neuron's without computing the neuron,",
        "e.g. by looking up public labels; never ranked), `held-out only` (no public record; the row's figures are the",
        "held-out split's).",
        "held-out recovery: primary recovery on the held-out split, the eval images moved by secret-seeded shifts and",
        "rotations that only the board's maintainer can reproduce (README: Held-out split); `verify` re-scores it only",
        "with the secret. Each record was checked against its per-example arrays.",
        "",
    ]
    if not by_task and not heldout_by_task:
        out.append("No results yet: run `replacebench score SUBMISSION --task TASK`.")
    for task_id in sorted(set(by_task) | set(heldout_by_task), key=lambda t: (order.get(t, len(order)), t)):
        records = by_task[task_id]
        candidates = records or list(heldout_by_task[task_id].values())
        shown = next((r for r in candidates if r["task"]["standard_protocol"]), candidates[0])  # the standard n
        t = shown["task"]
        out += [f"## {md(task_id)}", "", f"Layer {md(t['layer'])}, units {md(t['units'])}, inputs "
                f"{md(', '.join(map(str, t['inputs'])))}; {md(t['dataset'])} {md(t['eval_split'])} (n = {md(t['n_eval'])}); "
                f"primary ablation: {md(t['primary_ablation'])}. {power_note(shown, where[id(shown)])}", ""]
        out += task_table(records, hashes, heldout_by_task[task_id])
        out.append("")
    return "\n".join(out)
