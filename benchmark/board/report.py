"""The report `score` prints for one record: every figure, on a line each (also `str(Record)`)."""

from __future__ import annotations

from typing import Any


def format_score(record: dict[str, Any]) -> str:
    from .leaderboard import fmt_p, fmt_pct, recovery_cell

    res = record["results"]
    split = "" if record.get("split", "public") == "public" else \
        f", held-out split (commitment {record['heldout_commitment'][:12]}…)"
    lines = [f"{record['submission']['name']} on {record['task']['id']} (n = {record['task']['n_eval']}{split})"]
    for name, stats in res["recovery"].items():
        mark = " (primary)" if name == res["primary"]["ablation"] else ""
        effect = f"effect {stats['effect']:+.4f} [{stats['effect_low']:+.4f}, {stats['effect_high']:+.4f}]"
        lines.append(f"  recovery vs {name:<8} {recovery_cell(stats):<28} {effect}  p(beats) {fmt_p(stats['p_beats_ablation'])}{mark}")
    for name, stats in (res.get("kl_recovery") or {}).items():
        mark = " (primary)" if name == res["primary"]["ablation"] else ""
        lines.append(f"  KL recovery vs {name:<8} {recovery_cell(stats):<25} "
                     f"mean KL(clean||{name}) {stats['effect']:.4g}{mark}")
    lines.append(f"  p(R >= 1) {fmt_p(res['p_at_least_clean'])}   mean KL(clean||replaced) {res['mean_kl_clean_replaced']:.5f}")
    for key, acc in res["accuracy"].items():
        mc = res["mcnemar_replaced_vs_clean"][key]
        lines.append("  " + key + ": " + ", ".join(f"{c} {fmt_pct(v)}" for c, v in acc.items()) + f"  (McNemar vs clean p {fmt_p(mc['p_value'])})")
    fid = ", ".join(f"{f['unit']}: r {f['pearson_r']:.3f}" if f.get("pearson_r") is not None else f"{f['unit']}: r —" for f in res["fidelity"][:10])
    lines.append(f"  fidelity {fid}")
    lines += complexity_lines(record["complexity"])
    if record.get("efficiency"):
        from .leaderboard import fmt_seconds

        e = record["efficiency"]
        lines.append(f"  cost per example: replace {fmt_seconds(e['replace_seconds_per_example'])}, the original units "
                     f"{fmt_seconds(e['original_seconds_per_example'])} ({e['original_macs_per_example']:,} multiply-adds)")
    lines.append(f"  isolation: {record.get('isolation', {}).get('level', 'none')}")
    lines.append(f"  wall time {record['provenance']['seconds']['total']:.2f} s (baseline {'cached' if record['provenance']['baseline_from_cache'] else 'computed'})")
    return "\n".join(lines)


def complexity_lines(c: dict[str, Any]) -> list[str]:
    """Description length and the copy test, as `score` prints them."""
    if c.get("description_bits") is None:
        return [f"  complexity: {c['fitted_parameters']} fitted parameters (description length not measured: score again)"]
    b = c["bits"]
    verdict = "a COPY: it can hold the target's own weights" if c["copy"] else "not a copy"
    return [
        (f"  description length {c['description_bits']:,} bits = {c['code_tokens']:,} code tokens ({b['code']:,}) + "
         f"{c['literal_numbers']:,} literal numbers ({b['literals']:,}) + {c['data_bytes']:,} data bytes ({b['data']:,}) + "
         f"{c['fitted_parameters']:,} fitted numbers ({b['fitted']:,})"),
        f"  stored numbers {c['stored_numbers']:,} vs the target's fan-in {c['target_fan_in']:,}: {verdict}",
    ]
