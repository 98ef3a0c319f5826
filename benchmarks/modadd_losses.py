"""The real per-example losses behind `coverage_gate.py`'s modadd data models: `benchmarks/data/modadd_losses.npz`.

    python benchmarks/modadd_losses.py        (about 30 s; rewrites the .npz)

Two shipped `modadd-p113` tasks (`tasks/modadd-p113.toml`, chosen on the fit pairs alone by
`benchmark/maintainer/modadd_select.py`), on the eval split `test` (8,939 pairs):
- **mlp**: `modadd-p113/mlp_hook_post:all`, all 512 neurons;
- **cluster**: the largest key-frequency cluster, `modadd-p113/mlp_hook_post:freq<k>` with the most units: the
  neurons whose activation on the fit pairs is fitted with R² ≥ 0.85 by the 9 terms 1, cos(wa), sin(wa), cos(wb),
  sin(wb), cos(wa)cos(wb), cos(wa)sin(wb), sin(wa)cos(wb), sin(wa)sin(wb) of their best frequency k
  (w = 2πk/113).

For each, the harness's own baseline (`harness.baseline.load_or_compute`, no cache) gives `loss.clean` and
`loss.zero` `# [8939]` float64, stored as `<target>_clean`, `<target>_zero`; with them `cluster_task`, `cluster_k`,
`cluster_units` and the checkpoint's sha256. Committed (96 kB) so that the coverage gate needs numpy only;
`tests/test_coverage_models.py` recomputes the zero ablation from the checkpoint and checks the file against it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "data" / "modadd_losses.npz"
MLP_TASK = "modadd-p113/mlp_hook_post:all"
CLUSTER_TASKS = "modadd-p113/mlp_hook_post:freq*"


def largest_cluster():
    """The shipped key-frequency cluster task with the most units (the lower k on a tie)."""
    from benchmark.tasks import select_tasks

    return max(select_tasks(CLUSTER_TASKS), key=lambda t: (len(t.units), -int(t.id.rsplit("freq", 1)[1])))


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    started = time.perf_counter()
    cluster = largest_cluster()
    print(f"cluster: {cluster.id} ({len(cluster.units)} units)")
    arrays: dict[str, np.ndarray] = {"cluster_task": np.array(cluster.id),
                                     "cluster_k": np.array(int(cluster.id.rsplit("freq", 1)[1])),
                                     "cluster_units": np.array(cluster.units)}
    for name, task in (("mlp", get_task(MLP_TASK)), ("cluster", cluster)):
        ctx = prepare(task)
        arrays["checkpoint_sha256"] = np.array(ctx.checkpoint_sha256)
        baseline = load_or_compute(ctx, use_cache=False)
        arrays[f"{name}_clean"], arrays[f"{name}_zero"] = baseline.loss("clean"), baseline.loss("zero")
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
