"""The two hand-written exemplars, scored through the real CLI: small, not copies, better than the mean, on the frontier.

- `cnn-right-edge` on `mnist-cnn/conv2:61` (the family's importance-rank-1 unit, from the image);
- `fc2-ink-geometry` on `mnist-mlp/fc2:top20` (the harder family: 20 fc2 units from the image).

Every assertion is computed from the run itself, or from the committed board's records of the same task (for the
frontier); no figure is hard-coded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.leaderboard import ALPHA, beats_mean, frontier_entries
from benchmark.records import default_results_dir, read_record
from benchmark.tasks import get_task

MAX_FITTED = 10
EXEMPLARS = [("cnn-right-edge", "mnist-cnn/conv2:61"), ("fc2-ink-geometry", "mnist-mlp/fc2:top20")]


def board_records(task_id: str, excluding: str) -> list[dict]:
    """The committed board's records for a task (zero, mean, linear, …), read only."""
    folder = Path(default_results_dir()) / get_task(task_id).slug()
    return [read_record(p) for p in sorted(folder.glob("*.json")) if p.stem != excluding]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task_id"), EXEMPLARS)
def test_exemplar_beats_the_mean_with_few_numbers_and_sits_on_the_frontier(cli, data_dir, session_cache, name, task_id):
    proc = cli("score", name, "--task", task_id, "--no-record", "--json", "--data-dir", str(data_dir), "--resamples", "1000")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["submission"]["kind"] == "hand-written" and record["task"]["standard_protocol"]

    c = record["complexity"]
    assert c["fitted_parameters"] <= MAX_FITTED, c
    assert c["copy"] is False and c["stored_numbers"] < c["target_fan_in"], c

    res = record["results"]
    primary, zero, mean = res["primary"], res["recovery"]["zero"], res["recovery"]["mean"]
    assert primary["ablation"] == "zero" and primary["defined"], primary
    assert primary["recovery_low"] > 0, primary
    # significantly better than the mean ablation: the board's `≤ mean` mark is absent
    assert mean["p_beats_ablation"] < ALPHA and beats_mean(record), mean
    # and more recovered than the mean ablation itself, on the same examples
    mean_recovery = (zero["mean_ablated"] - mean["mean_ablated"]) / (zero["mean_ablated"] - zero["mean_clean"])
    assert primary["recovery"] > mean_recovery, (primary["recovery"], mean_recovery)

    # on the task's frontier among the committed board's entries (zero, mean, linear)
    board = board_records(task_id, excluding=name)
    assert {"zero", "mean"} <= {r["submission"]["name"] for r in board}
    assert name in frontier_entries([*board, record])
