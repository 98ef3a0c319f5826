"""The two hand-written exemplars, scored through the real CLI: small, not copies, better than the mean, on the frontier.

- `cnn-right-edge` on `mnist-cnn/conv2:61` (the family's importance-rank-1 unit, from the image);
- `fc2-ink-geometry` on `mnist-mlp/fc2:top20` (the harder family: 20 fc2 units from the image).

Every assertion is computed from the run itself, or from the committed board's records of the same task (for the
frontier); no figure is hard-coded. A fast test checks `cnn-right-edge`'s reading of the unit against the real model
on drawn strokes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_submission

from benchmark.board.leaderboard import ALPHA, beats_mean, frontier_entries
from benchmark.record.layout import default_results_dir
from benchmark.record.typed import Record
from benchmark.tasks import get_task

MAX_FITTED = 10
EXEMPLARS = [("cnn-right-edge", "mnist-cnn/conv2:61"), ("fc2-ink-geometry", "mnist-mlp/fc2:top20")]


def board_records(task_id: str, excluding: str) -> list[Record]:
    """The committed board's records for a task (zero, mean, linear, …), read only."""
    folder = Path(default_results_dir()) / get_task(task_id).slug()
    return [Record.read(p) for p in sorted(folder.glob("*.json")) if p.stem != excluding]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task_id"), EXEMPLARS)
def test_exemplar_beats_the_mean_with_few_numbers_and_sits_on_the_frontier(cli, data_dir, session_cache, name, task_id):
    proc = cli("score", name, "--task", task_id, "--no-record", "--json", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    assert record["submission"]["kind"] == "hand-written" and record["task"]["standard_protocol"]

    c = record["complexity"]
    assert c["fitted_parameters"] <= MAX_FITTED, c
    assert c["copy"] is False and c["stored_bits"] < 8 * c["target_fan_in"], c

    res = record["results"]
    primary, zero, mean = res["primary"], res["recovery"]["zero"], res["recovery"]["mean"]
    assert primary["ablation"] == "zero" and primary["defined"], primary
    assert primary["recovery_low"] > 0, primary
    # significantly better than the mean ablation: the board's `≤ mean` mark is absent
    assert mean["p_beats_ablation"] < ALPHA and beats_mean(Record.from_dict(record)), mean
    # and more recovered than the mean ablation itself, on the same examples
    mean_recovery = (zero["mean_ablated"] - mean["mean_ablated"]) / (zero["mean_ablated"] - zero["mean_clean"])
    assert primary["recovery"] > mean_recovery, (primary["recovery"], mean_recovery)

    # on the task's frontier among the committed board's entries (zero, mean, linear)
    board = board_records(task_id, excluding=name)
    assert {"zero", "mean"} <= {r.submission.name for r in board}
    assert name in frontier_entries([*board, Record.from_dict(record)])


def _load(folder: str):
    return load_submission(folder)


def test_cnn_right_edge_agrees_with_the_real_unit_on_drawn_strokes():
    """The docstring's reading of conv2:61 (ink with blank paper to its right), checked against the real model on
    drawn shapes: a 2-px vertical stroke at several columns, a horizontal bar and a filled square."""
    import torch

    from benchmark.models.registry import load_model

    task = get_task("mnist-cnn/conv2:61")
    model, _ = load_model(task.model, task.checkpoint, task.checkpoint_sha256)
    ours_module = _load("cnn-right-edge")
    params = {"a": torch.tensor(6.3), "c": torch.tensor(10.3), "bias": torch.tensor(-0.07)}  # ≈ the fitted values

    def maps(ink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = ((ink - 0.1307) / 0.3081)[None, None]  # [1, 1, 28, 28]
        with torch.no_grad():
            return model.run(image, until="conv2")[0, task.units[0]], ours_module.replace(image, params)[0, 0]  # [14, 14]

    verticals = []
    for col in (8, 11, 13, 16):
        ink = torch.zeros(28, 28)
        ink[5:23, col:col + 2] = 1.0
        real, ours = maps(ink)
        lit = [{int(c) for c in torch.nonzero(m.sum(0) > 0.1 * m.sum(0).max())} for m in (real, ours)]
        assert lit[0] == lit[1], (col, lit)  # the same output columns light up
        verticals.append((float(real.max()), float(ours.max())))
    bar = torch.zeros(28, 28)
    bar[13:15, 5:23] = 1.0
    real, ours = maps(bar)
    # a horizontal bar only drives it at its right-hand end, far less than a vertical stroke does
    assert float(real.max()) < 0.5 * max(v[0] for v in verticals) and float(ours.max()) < 0.5 * max(v[1] for v in verticals)
    square = torch.zeros(28, 28)
    square[5:23, 5:23] = 1.0
    real, ours = maps(square)
    assert float(real[5:9, 4:8].max()) == 0.0 and float(ours[5:9, 4:8].max()) == 0.0  # silent inside the ink
    assert int(real.max(0).values.argmax()) == int(ours.max(0).values.argmax()) == 11  # fires on its right edge
