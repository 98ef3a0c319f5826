"""The committed shakespeare-char task file: its inputs rule, its honesty about heads, and (slow) that
`replacebench select shakespeare-char` regenerates it from the fit windows."""

from __future__ import annotations

import pytest

from benchmark import paths
from benchmark.maintainer import shakespeare_select as select
from benchmark.models.head_scores import head_scores
from benchmark.models.registry import load_model
from benchmark.models.shakespeare import ShakespeareChar
from benchmark.tasks import all_tasks

TASKS = {tid: t for tid, t in all_tasks().items() if t.model == "shakespeare-char"}


def test_inputs_are_earlier_points_and_earlier_heads_patterns():
    names = ShakespeareChar.stage_names
    head1 = select.allowed_inputs("blocks_1_attn_hook_z")
    neuron1 = select.allowed_inputs("blocks_1_mlp_hook_post")
    assert "blocks_1_attn_hook_pattern" not in head1 and "blocks_0_attn_hook_pattern" in head1
    assert "blocks_1_attn_hook_pattern" in neuron1 and "blocks_1_hook_resid_mid" in neuron1
    assert select.allowed_inputs("blocks_0_attn_hook_z") == ("tokens", "hook_embed", "blocks_0_hook_resid_pre")
    for layer in ("blocks_0_attn_hook_z", "blocks_1_attn_hook_z", "blocks_0_mlp_hook_post", "blocks_1_mlp_hook_post"):
        inputs = select.allowed_inputs(layer)
        assert all(names.index(n) < names.index(layer) for n in inputs[1:])
        assert not any("ln" in n or n.endswith(("hook_z", "mlp_hook_pre", "mlp_hook_post")) for n in inputs)
    for task in TASKS.values():
        assert task.inputs == select.allowed_inputs(task.layer), task.id
        assert task.ablation == "mean" and task.topk == () and task.eval_size == 864


def test_the_head_tasks_say_what_the_heads_are(data_dir):
    """The previous-token head has the highest previous-token score on the fit windows; layer 1's head is the best by
    induction score and, scoring under INDUCTION_MIN, is described as not an induction head."""
    model, _ = load_model("shakespeare-char", select.CHECKPOINT)
    inputs, _ = select.fit_windows(data_dir)
    scores = head_scores(model, windows=inputs)
    prev, induction = scores.best("previous_token"), scores.best("induction", 1)
    heads = {t.layer: t for t in TASKS.values() if t.layer.endswith("attn_hook_z")}
    assert heads[f"blocks_{prev[0]}_attn_hook_z"].units == (prev[1],) and scores.previous_token[prev] > 0.5
    layer1 = heads["blocks_1_attn_hook_z"]
    assert layer1.units == (induction[1],)
    assert scores.induction[induction] < select.INDUCTION_MIN and "not an induction head" in layer1.description


@pytest.mark.slow
def test_committed_task_file_regenerates_from_the_fit_windows(data_dir):
    """About 30 minutes on 2 cores: every exact ablation of the selection."""
    text, path = select.select_shakespeare(data_dir)
    assert path == paths.tasks_dir() / "shakespeare-char.toml"
    assert text == path.read_text()
