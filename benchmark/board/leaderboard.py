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
from ..record.format import UNDEFINED, fmt_p, fmt_p_clean, fmt_pct, fmt_points, fmt_seconds, recovery_cell
from ..record.io import read_sidecar
from ..record.layout import find_records
from ..record.typed import Complexity, Record
from ..tasks import all_tasks
from ..untrusted import one_line
from .verify import load_checked

__all__ = ["UNDEFINED", "fmt_p", "fmt_pct", "fmt_points", "fmt_seconds", "recovery_cell"]  # the board's formats, too

MARKDOWN_SPECIAL = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
                    "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}


def md(text: Any) -> str:
    """Text from a record, safe inside a Markdown table cell: one line, no markup, no HTML, no control, format or
    separator characters (`untrusted.one_line`)."""
    out = one_line(" ".join(str(text).split()))
    return "".join(MARKDOWN_SPECIAL.get(ch, ch) for ch in out)


def submission_state(record: Record, hashes: dict[Path, str | None] | None = None) -> str:
    """'' for an isolated record of the submission as it is now; else the marks a reader must see.

    `hashes` memoises each folder's current hash across the records of one rendering (None: unreadable).
    """
    marks = []
    if record.isolation.level != "namespaces":
        marks.append("not isolated")
    if is_stale(record, {} if hashes is None else hashes):
        marks.append("stale")
    return ", ".join(marks)


def is_stale(record: Record, hashes: dict[Path, str | None]) -> bool:
    """Whether `submissions/<name>` exists and its content hash now differs from the record's (an unreadable folder
    counts as changed). `hashes` memoises each folder's current hash (None: unreadable) across many records."""
    from ..harness.submissions import folder_hash

    folder = paths.submissions_dir() / str(record.submission.name)
    if not folder.is_dir():
        return False
    if folder not in hashes:
        try:
            hashes[folder] = folder_hash(folder)
        except UserError:
            hashes[folder] = None
    return hashes[folder] != record.submission.content_hash


def efficiency_cells(record: Record) -> list[str]:
    """'replace / original' wall time per example, and the original units' multiply-adds per example."""
    e = record.efficiency
    if not e:
        return ["—", "—"]
    times = f"{fmt_seconds(e.replace_seconds_per_example)} / {fmt_seconds(e.original_seconds_per_example)}"
    return [times, f"{e.original_macs_per_example:,}"]


OTHER_MEANS_R = 0.5


def beats_by_other_means(record: Record) -> bool:
    """Whether the entry beats the neuron without computing it: its primary recovery is significantly above 1 (the
    95% CI's low end > 1), and either the mean activation fidelity r over its units is below OTHER_MEANS_R (0.5) or
    its primary KL recovery is significantly below 0 (the CI's high end < 0: its output distribution is further
    from the clean model's than the ablated model's is).

    Lowering the loss below the neuron's with output that does not track the unit, or that moves the output
    distribution more than removing the unit does, means it found the answer elsewhere (e.g. by looking up public
    labels: `tests/hostile/label-lookup` has r 0.67 but KL recovery −716%). Such an entry is shown, never ranked.
    """
    primary = record.results.primary
    if not (primary.defined and primary.recovery_low is not None and primary.recovery_low > 1):
        return False
    r = record.results.mean_fidelity_r
    kl = record.results.primary_kl
    kl_below_zero = kl is not None and bool(kl.defined) and kl.recovery_high is not None and kl.recovery_high < 0
    return (r is not None and r < OTHER_MEANS_R) or kl_below_zero


SPLITS_ALPHA = 0.05  # family-wise over the board's tasks with a held-out split (Bonferroni)


def splits_differ(public: Record | None, heldout: Record | None, tests: int = 1) -> bool:
    """Whether an entry's public and held-out primary recoveries differ significantly: both defined and
    `stats.split_difference_p` < SPLITS_ALPHA / tests (`tests`: the board's tasks with a held-out split, so an honest
    entry is flagged on some task of the board with probability ≤ 5%). A submission that tells the splits apart and
    behaves differently on one (e.g. looks public images up) shows here even when neither split alone looks odd."""
    if public is None or heldout is None or public.submission.content_hash != heldout.submission.content_hash:
        return False
    a, b = public.results.primary, heldout.results.primary
    figures = [(f.recovery, f.recovery_low, f.recovery_high) for f in (a, b) if f.defined]
    if len(figures) != 2 or any(v is None for f in figures for v in f):
        return False
    return stats.split_difference_p(figures[0], figures[1], a.level) < SPLITS_ALPHA / max(1, tests)


def split_tests(heldout_by_task: dict[str, dict[str, Record]]) -> int:
    """How many of the board's tasks have a held-out record (the Bonferroni count of `splits_differ`)."""
    return sum(1 for records in heldout_by_task.values() if records)


def is_copy(record: Record) -> bool:
    """Whether the record is a copy (`complexity.copy`): it stores at least as many numbers as the target's fan-in,
    so it could hold the target's own weights. A copy is a reference ceiling, never ranked and never on a frontier."""
    return bool(record.complexity.copy)


def rankable(record: Record) -> bool:
    """A standard-protocol public record with a defined primary recovery that is not a copy (`is_copy`) and does
    not beat the neuron by other means (the others are shown, never ranked)."""
    primary = record.results.primary
    return bool(primary.defined) and primary.recovery is not None and bool(record.task.standard_protocol) \
        and record.split == "public" and not is_copy(record) and not beats_by_other_means(record)


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


def frontier_entries(records: list[Record], excluded: set[str] = frozenset()) -> set[str]:
    """The task's frontier of primary recovery against description length, over the ranked entries (`rankable`, so
    no copy: a copy explains nothing, whatever it scores) with a measured description length."""
    points = {}
    for record in records:
        primary, c = record.results.primary, record.complexity
        if rankable(record) and c.description_bits is not None and record.submission.name not in excluded:
            points[record.submission.name] = (primary.recovery, c.description_bits)
    return pareto_frontier(points)


def numbers_cell(c: Complexity) -> str:
    """'2 + 77' (fitted + literal numbers), or the fitted count alone for a record without the measure; with
    convention 2, the stored bits after them: '2 + 77 (1,304 bits)'."""
    if c.literal_numbers is None:
        return str(c.fitted_parameters)
    stored = "" if c.stored_bits is None else f" ({c.stored_bits:,} bits)"
    return f"{c.fitted_parameters} + {c.literal_numbers}{stored}"


def dl_cell(c: Complexity) -> str:
    """The description length in bits, with thousands separators ('—' for a record without the measure)."""
    return "—" if c.description_bits is None else f"{c.description_bits:,}"


ALPHA = 0.05


def interval_ranks(intervals: dict[str, tuple[float, float]]) -> dict[str, int]:
    """Ranks that respect the intervals: rank = 1 + the number of entries whose CI lies wholly above this one's.

    Entries whose CIs overlap share a rank, unless a third entry lies wholly above one of them but not the other.
    """
    return {name: 1 + sum(other_low > high for other_low, _ in intervals.values()) for name, (_, high) in intervals.items()}


def board_ranks(records: list[Record], excluded: set[str] = frozenset()) -> dict[str, int]:
    """Interval ranks (`interval_ranks`) of the rankable records whose names are not in `excluded`."""
    return interval_ranks({r.submission.name: (r.results.primary.recovery_low, r.results.primary.recovery_high)
                           for r in records if rankable(r) and r.submission.name not in excluded})


def beats_mean(record: Record) -> bool:
    """Whether the replacement's loss is significantly below the mean ablation's (one-sided paired t-test)."""
    p = record.results.recovery["mean"].p_beats_ablation
    return p is not None and p < ALPHA


def sort_key(record: Record) -> tuple:
    primary = record.results.primary
    ranked = rankable(record)
    return (not ranked, -(primary.recovery if ranked else 0.0), record.submission.name)


def heldout_cell(public: Record | None, heldout: Record | None) -> str:
    """The held-out record's primary recovery with its CI ('—' when none), marked when it scored another version."""
    if heldout is None:
        return "—"
    cell = recovery_cell(heldout.results.primary)
    if public is not None and public.submission.content_hash != heldout.submission.content_hash:
        cell += " (other version)"
    return cell


def standard_record(records: list[Record]) -> Record:
    """The record whose task figures head a task's section: the first standard-protocol one (the standard n)."""
    return next((r for r in records if r.task.standard_protocol), records[0])


REFERENCE = "reference (copy)"
REFERENCE_NOTE = ("not ranked, never on the frontier: it can hold the target's own weights, so its recovery is a ceiling, "
                  "not an explanation.")


def task_table(records: list[Record], hashes: dict[Path, str | None],
               heldout: dict[str, Record] | None = None, split_count: int = 1) -> list[str]:
    """One task's tables. `records`: its public records; `heldout`: its held-out records by submission name (shown in
    their own column; one without a public record gets its own row, marked `held-out only`, never ranked).
    An entry flagged `beats by other means` on either split is not ranked and not on the frontier.

    An entry whose public and held-out recoveries differ significantly (`splits_differ`, Bonferroni over
    `split_count` tasks) is marked `public ≠ held-out`.

    Copies (`is_copy`) are not in the ranked table: they follow it in a table of their own, labelled
    `reference (copy)`, their # cell `ref`.
    """
    heldout = heldout or {}
    public_names = {r.submission.name for r in records}
    rows = list(records) + [r for name, r in sorted(heldout.items()) if name not in public_names]
    first = rows[0].task
    topk = first.topk
    head = ["#", "submission", "kind", f"recovery ({first.primary_ablation}) [95% CI]", "held-out recovery [95% CI]",
            f"KL recovery ({first.primary_ablation}) [95% CI]", "zero", "mean", "resample",
            "p(beats abl.)", "p(R≥1)", *[f"top-{k} repl. / clean" for k in topk], "KL(clean‖repl.)", "fidelity r",
            "numbers (fitted + literal; stored bits)", "DL (bits)", "frontier", "time/example: replace / original", "original MACs",
            "n"]
    header = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    other_means = {r.submission.name for r in rows if beats_by_other_means(r)} | \
        {name for name, r in heldout.items() if beats_by_other_means(r)}
    frontier = frontier_entries(records, other_means)
    ranks = board_ranks(records, other_means)

    def line(record: Record) -> str:
        res = record.results
        rec = res.recovery
        rs = res.fidelity_rs
        c = record.complexity
        sub = record.submission.name
        only = record.split == "held-out"
        marks = [m for m in ("held-out only" if only else "",
                             "beats by other means" if sub in other_means else "",
                             "public ≠ held-out" if splits_differ(None if only else record, heldout.get(sub),
                                                                   split_count) else "",
                             "copy" if c.copy else "", "" if beats_mean(record) else "≤ mean",
                             "" if record.task.standard_protocol else "non-standard",
                             submission_state(record, hashes)) if m]
        name = md(sub) + (f" ({', '.join(marks)})" if marks else "")
        row = [
            "ref" if is_copy(record) else str(ranks.get(sub, "—")), name, md(record.submission.kind),
            "—" if only else recovery_cell(res.primary), heldout_cell(None if only else record, heldout.get(sub)),
            "—" if not res.kl_recovery else recovery_cell(res.primary_kl),
            *[fmt_pct(rec[a].recovery) if rec[a].defined else UNDEFINED for a in ("zero", "mean", "resample")],
            fmt_p(res.primary.p_beats_ablation), fmt_p_clean(res.p_at_least_clean),
            *[f"{fmt_pct(res.accuracy[f'top{k}']['replaced'])} / {fmt_pct(res.accuracy[f'top{k}']['clean'])}" for k in topk],
            f"{res.mean_kl_clean_replaced:.4f}", f"{sum(rs) / len(rs):.3f}" if rs else "—",
            numbers_cell(c), dl_cell(c),
            "◆" if sub in frontier else "", *efficiency_cells(record), str(record.task.n_eval),
        ]
        return "| " + " | ".join(row) + " |"

    order = sorted(rows, key=lambda r: (r.submission.name not in ranks, *sort_key(r)))
    entries = [r for r in order if not is_copy(r)]
    copies = sorted((r for r in order if is_copy(r)), key=lambda r: r.submission.name)
    lines = header + [line(r) for r in entries] if entries else ["No entry but copies yet."]
    if copies:
        lines += ["", f"**{REFERENCE.capitalize()}**: {REFERENCE_NOTE}", "", *header, *(line(r) for r in copies)]
    return lines


def power_note(record: Record, path: Path) -> str:
    """What the eval set can resolve: the smallest recovery difference detected at 80% power (`stats`)."""
    arrays = read_sidecar(path, record)
    mde = stats.detectable_recovery_difference(arrays["loss.clean"].astype(np.float64),
                                               arrays[f"loss.{record.task.primary_ablation}"].astype(np.float64))
    if mde is None:
        return "The primary ablation does not raise the mean loss: nothing to recover."
    return f"Detectable recovery difference (80% power): {fmt_points(mde)} points."


NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a submission's name, as `submissions.parse_meta` requires
Board = dict[str, list[Record]]


def load_board(results_dir: Path, warn: Callable[[str], None], shown_on: str = "board"
               ) -> tuple[Board, dict[str, dict[str, Record]], dict[int, Path]]:
    """Every public record that passes its checks (`verify.load_checked`, and a valid submission name), by task id;
    the held-out ones, by task id and submission; and each record's file (by `id(record)`). A record left off
    gets one `warn` line naming it (`shown_on`: what it is left off)."""
    by_task: Board = defaultdict(list)
    heldout: dict[str, dict[str, Record]] = defaultdict(dict)
    where: dict[int, Path] = {}
    for path in find_records(results_dir):
        record, problems = load_checked(path)
        if record is not None and not NAME.fullmatch(str(record.submission.name)):
            record, problems = None, ["its submission name is not a valid name (it would name a page)"]
        if record is None:
            warn(f"left {path} off the {shown_on}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            continue
        if record.split == "held-out":
            heldout[record.task.id][record.submission.name] = record
        else:
            by_task[record.task.id].append(record)
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
        "the original's (R > 1), the bar of a replacement at least as good as the neuron. \"= clean\": the replaced losses",
        "equal the clean ones within float32 noise (a copy), so the test has nothing to test and p is not defined.",
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
        "held-out split's), `public ≠ held-out` (its public and held-out primary recoveries differ: two-sided z-test of",
        f"the difference, each SE from its 95% CI, at α = {SPLITS_ALPHA} Bonferroni-corrected over the board's tasks with a",
        "held-out split; the splits move the same images, so the test is conservative; shown, still ranked).",
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
        shown = standard_record(candidates)
        t = shown.task
        out += [f"## {md(task_id)}", "", f"Layer {md(t.layer)}, units {md(t.units)}, inputs "
                f"{md(', '.join(map(str, t.inputs)))}; {md(t.dataset)} {md(t.eval_split)} (n = {md(t.n_eval)}); "
                f"primary ablation: {md(t.primary_ablation)}. {power_note(shown, where[id(shown)])}", ""]
        out += task_table(records, hashes, heldout_by_task[task_id], split_tests(heldout_by_task))
        out.append("")
    return "\n".join(out)
