"""Every shipped entry's description length and stored bits: the committed records (convention 1) against the
current convention (`benchmark/harness/description.py`), without re-scoring anything.

For each submission folder, over its committed public records: the old description length and stored numbers as
recorded, and the new description length and stored bits (the folder measured now, plus 32 bits per fitted number
the record reports); the copy verdict old → new against each record's target fan-in.

    python benchmarks/description_table.py [--results leaderboard/results] [--submissions submissions]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from benchmark.harness.description import BITS_PER_FITTED, measure
from benchmark.harness.submissions import read_folder

ROOT = Path(__file__).resolve().parent.parent


def span(values: list[int]) -> str:
    """'7' or '7–12' (min–max), with thousands separators; '—' for none (records of convention 2 store no
    element count)."""
    if not values:
        return "—"
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "leaderboard" / "results")
    parser.add_argument("--submissions", type=Path, default=ROOT / "submissions")
    args = parser.parse_args()
    records: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(args.results.rglob("*.json")):
        if path.name.endswith(".heldout.json"):
            continue
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("complexity"), dict):
            records[path.stem].append(data["complexity"])
    header = (f"{'submission':<18} {'n':>3} {'folder bits old→new':>22} {'DL old':>16} {'DL new':>18} "
              f"{'stored numbers old':>19} {'stored bits new':>18} {'copies old→new':>14}")
    print(header)
    print("-" * len(header))
    for folder in sorted(p for p in args.submissions.iterdir() if (p / "replacement.py").exists()):
        d = measure(read_folder(folder))
        recs = [c for c in records.get(folder.name, []) if c.get("description_bits") is not None]
        if not recs:
            print(f"{folder.name:<18} {0:>3} {'—':>10} → {d.total_bits(0):>9,}   (no committed record)")
            continue
        old_folder = [c["description_bits"] - BITS_PER_FITTED * c["fitted_parameters"] for c in recs]
        new_dl = [d.total_bits(c["fitted_parameters"]) for c in recs]
        old_copies = sum(bool(c["copy"]) for c in recs)
        new_copies = sum(d.is_copy(c["fitted_parameters"], c["target_fan_in"]) for c in recs)
        print(f"{folder.name:<18} {len(recs):>3} {span(old_folder):>10} → {d.total_bits(0):>9,} "
              f"{span([c['description_bits'] for c in recs]):>16} {span(new_dl):>18} "
              f"{span([c['stored_numbers'] for c in recs if c.get('stored_numbers') is not None]):>19} "
              f"{span([d.stored_bits(c['fitted_parameters']) for c in recs]):>18} {old_copies:>6} → {new_copies:<6}")
    print("\nfolder bits: the description length before fitted numbers. DL and stored figures span the "
          "submission's public records (fitted numbers differ by task).")


if __name__ == "__main__":
    main()
