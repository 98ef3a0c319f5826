"""What a run over many tasks prints: one compact line per result, and one closing table.

The table has a row per task in the order they were asked for: its primary recovery with the 95% CI, or
`FAILED: <the error's first line>`, or `skipped` (after `--fail-fast` stopped the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..record.format import recovery_cell
from ..record.typed import Record
from ..untrusted import one_line as printable


@dataclass
class TaskOutcome:
    """How one task of a run ended: its record (and where it was written), or its failure in one line."""

    task: str
    record: Record | None = None
    path: Path | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it lies under it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def one_line(error: BaseException | str) -> str:
    """An error's message, on one line (its first, made safe to print: `untrusted.one_line`)."""
    text = str(error).strip()
    return printable(text.split("\n")[0]) if text else type(error).__name__


def primary_cell(record: Record) -> str:
    """'97.3% [95.1, 99.2] vs zero': the primary recovery with its 95% CI, and the ablation it is measured against."""
    res = record.results
    ablation = res.primary.ablation
    return f"{recovery_cell(res.recovery[ablation])} vs {ablation}"


def compact_line(record: Record, path: Path | None, label: str = "run") -> str:
    """One result on one line: task, primary recovery [95% CI], description length, wall time, where it went."""
    bits = record.complexity.description_bits
    parts = [record.task.id, primary_cell(record)]
    if bits is not None:
        parts.append(f"{bits:,} bits" + (" (a copy)" if record.complexity.copy else ""))
    parts.append(f"{record.provenance.seconds['total']:.1f} s")
    if path is not None:
        parts.append(f"{label}: {shown_path(path)}")
    return "  ".join(parts)


def summary_table(submission: str, outcomes: list[TaskOutcome], skipped: list[str]) -> str:
    """The closing table: a row per task (recovery [95% CI], FAILED: …, or skipped) under a one-line headline."""
    failed = sum(o.failed for o in outcomes)
    total = len(outcomes) + len(skipped)
    head = f"{submission}: {total - failed - len(skipped)} of {total} task(s) scored"
    if failed:
        head += f", {failed} failed"
    if skipped:
        head += f", {len(skipped)} skipped (--fail-fast)"
    rows = [(o.task, f"FAILED: {o.error}" if o.failed or o.record is None else primary_cell(o.record)) for o in outcomes]
    rows += [(task, "skipped") for task in skipped]
    width = max(len("task"), *(len(task) for task, _ in rows))
    lines = [head, f"{'task':<{width}}  primary recovery [95% CI]"]
    lines += [f"{task:<{width}}  {cell}" for task, cell in rows]
    return "\n".join(lines)

