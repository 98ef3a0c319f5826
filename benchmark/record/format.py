"""A record's figures as text: percentages, p-values, durations, and a recovery with its 95% CI.

Every text the board, the site, `score`'s report and `compare` print a figure with comes from here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `typed` imports `report` (which imports this) for `str(Record)`
    from .typed import RecoveryFigures

UNDEFINED = "undefined ⚠"


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


def fmt_p(value: float | None) -> str:
    if value is None:
        return "—"
    return "<1e-4" if value < 1e-4 else f"{value:.3g}"


def fmt_p_clean(value: float | None) -> str:
    """p(R ≥ 1): "= clean" where it is undefined (the replaced losses equal the clean ones within float32 noise,
    `stats.p_at_least_clean`)."""
    return "= clean" if value is None else fmt_p(value)


def recovery_cell(figures: RecoveryFigures) -> str:
    """'97.3% [95.1, 99.2]', or the undefined mark when the ablation effect is not significant."""
    if not figures.defined or figures.recovery is None:
        return UNDEFINED
    low, high = (fmt_pct(v).rstrip("%") for v in (figures.recovery_low, figures.recovery_high))
    return f"{fmt_pct(figures.recovery)} [{low}, {high}]"
