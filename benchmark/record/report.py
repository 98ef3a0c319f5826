"""The report `score` prints for one record: every figure, on a line each (also `str(Record)`), and its legend
(`replacebench score --explain`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .format import fmt_p, fmt_p_clean, fmt_pct, fmt_seconds, recovery_cell

if TYPE_CHECKING:  # annotations only: `typed` imports this module for `str(Record)`
    from .typed import Complexity, Record


def format_score(record: Record) -> str:
    res = record.results
    split = "" if record.split == "public" else \
        f", held-out split (commitment {(record.heldout_commitment or '')[:12]}…)"
    lines = [f"{record.submission.name} on {record.task.id} (n = {record.task.n_eval}{split})"]
    for name, stats in res.recovery.items():
        mark = " (primary)" if name == res.primary.ablation else ""
        effect = f"effect {stats.effect:+.4f} [{stats.effect_low:+.4f}, {stats.effect_high:+.4f}]"
        lines.append(f"  recovery vs {name:<8} {recovery_cell(stats):<28} {effect}  p(beats) {fmt_p(stats.p_beats_ablation)}{mark}")
    for name, stats in (res.kl_recovery or {}).items():
        mark = " (primary)" if name == res.primary.ablation else ""
        lines.append(f"  KL recovery vs {name:<8} {recovery_cell(stats):<25} "
                     f"mean KL(clean||{name}) {stats.effect:.4g}{mark}")
    lines.append(f"  p(R >= 1) {fmt_p_clean(res.p_at_least_clean)}   mean KL(clean||replaced) {res.mean_kl_clean_replaced:.5f}")
    for key, acc in res.accuracy.items():
        mc = res.mcnemar_replaced_vs_clean[key]
        lines.append("  " + key + ": " + ", ".join(f"{c} {fmt_pct(v)}" for c, v in acc.items()) + f"  (McNemar vs clean p {fmt_p(mc.p_value)})")
    fid = ", ".join(f"{f.unit}: r {f.pearson_r:.3f}" if f.pearson_r is not None else f"{f.unit}: r —" for f in res.fidelity[:10])
    lines.append(f"  fidelity {fid}")
    lines += complexity_lines(record.complexity)
    if record.efficiency:
        e = record.efficiency
        lines.append(f"  cost per example: replace {fmt_seconds(e.replace_seconds_per_example)}, the original units "
                     f"{fmt_seconds(e.original_seconds_per_example)} ({e.original_macs_per_example:,} multiply-adds)")
    lines.append(f"  isolation: {record.isolation.level}")
    lines.append(f"  wall time {record.provenance.seconds['total']:.2f} s (baseline {'cached' if record.provenance.baseline_from_cache else 'computed'})")
    lines.append(LEGEND_HINT)
    return "\n".join(lines)


LEGEND_HINT = "  (what each line means: replacebench score --explain)"

#: What each line of `format_score` means, in its order (`replacebench score --explain`).
LEGEND = """\
How to read `replacebench score`'s report (README: Statistics, Complexity):

  NAME on TASK (n = N)      the submission, the task, and the number of eval examples every figure is measured on
                            (and the held-out split's commitment when scored on it).
  recovery vs zero|mean|resample
                            cross-entropy recovery R = (mean L_ablated - mean L_replaced) / (mean L_ablated -
                            mean L_clean) against each of the three ablations (zero: the units set to 0; mean:
                            their fit-set mean; resample: their value on a seeded-random fit-set example), with
                            its 95% Fieller interval [low, high]. 100% = the replacement recovers all the loss the
                            ablation costs; 0% = no better than the ablation; above 100% = lower loss than the
                            original neuron. (primary) marks the task's ablation, the figure the board ranks by.
  undefined ⚠               the ablation costs no measurable loss (its effect's interval does not lie above 0),
                            so there is nothing to recover and R is not a number.
  effect                    the ablation's effect, mean L_ablated - mean L_clean, with Hall's skewness-corrected
                            95% interval.
  p(beats)                  one-sided paired t-test that the replacement's loss is below the ablated loss.
  KL recovery vs ...        the same recovery on the output distribution: 1 - mean KL(clean||replaced) / mean
                            KL(clean||ablated); needs no labels and is far less noisy. mean KL(clean||ABL) is the
                            ablation's own KL.
  p(R >= 1)                 one-sided paired t-test of H0 mean L_replaced >= mean L_clean: a small p shows the
                            replacement's loss is below the original's (recovery above 100%).
  mean KL(clean||replaced)  how far the replaced model's output distribution is from the original's.
  top1 (topk): ...          accuracy under each condition; McNemar: exact test of replaced vs clean accuracy.
  fidelity UNIT: r          Pearson r between the replacement's and the original unit's activations (first 10
                            units); r — when either is constant.
  description length (DL)   the submission's size in bits, a code: 8 per code token (comments, docstrings, layout
                            free: the code runs rendered without them) + each name's spelling once + written digits
                            at 4 bits + 8 per byte of text, data and paths + 32 per fitted number.
  stored bits ... COPY      bits it stores (DL less its tokens) vs 8 bits per weight of the target's fan-in: at
                            least as many means it could hold the target's own weights, so it is a copy (an unranked
                            reference ceiling), not an explanation.
  cost per example          wall time of its replace calls per example vs the original units' (and their
                            multiply-adds).
  isolation                 how its code ran: namespaces (sandboxed), or none (--in-process, for debugging).
  wall time                 the scoring run's time; the baseline (clean and ablated passes) is cached after the
                            first run.
"""


def complexity_lines(c: Complexity) -> list[str]:
    """Description length and the copy test, as `score` prints them."""
    if c.description_bits is None:
        return [f"  complexity: {c.fitted_parameters} fitted parameters (description length not measured: score again)"]
    b = c.bits
    verdict = "a COPY: it can hold the target's own weights" if c.copy else "not a copy"
    if c.stored_bits is None:  # convention 1: the copy test counted numbers
        stored = f"  stored numbers {c.stored_numbers:,} vs the target's fan-in {c.target_fan_in:,}: {verdict}"
    else:
        stored = f"  stored bits {c.stored_bits:,} vs 8 × the target's fan-in {c.target_fan_in:,}: {verdict}"
    return [
        (f"  description length {c.description_bits:,} bits = {c.code_tokens:,} code tokens ({b.code:,}) + "
         f"names ({b.names:,}) + {c.literal_numbers:,} literal numbers ({b.literals:,}) + {c.data_bytes:,} data "
         f"bytes ({b.data:,}) + {c.fitted_parameters:,} fitted numbers ({b.fitted:,})"),
        stored,
    ]
