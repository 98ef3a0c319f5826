"""modadd-p113: the data, the model's two forwards, the committed checkpoint, and how the harness runs it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import modadd_task

from benchmark import zoo
from benchmark.data import modadd as data
from benchmark.errors import UserError
from benchmark.models.registry import load_model
from benchmark.paths import PROJECT_ROOT

CHECKPOINT = "checkpoints/modadd-p113.safetensors"


def _model():
    model, _ = load_model("modadd-p113", CHECKPOINT)
    return model


def _grid() -> tuple[np.ndarray, np.ndarray]:
    a, b = np.meshgrid(np.arange(113), np.arange(113), indexing="ij")
    return a.ravel(), b.ravel()


def test_the_splits_partition_every_pair_and_label_it_by_hand():
    train, test = data.open_split("train"), data.open_split("test")
    assert (len(train), len(test)) == (3830, 8939)
    pairs = [113 * t.inputs[:, 0].numpy() + t.inputs[:, 1].numpy() for t in (train, test)]
    assert np.array_equal(np.sort(np.concatenate(pairs)), np.arange(113 * 113))
    for split, p in zip((train, test), pairs):
        assert np.all(np.diff(p) > 0) and split.inputs.dtype == torch.int64
        assert np.all(split.inputs[:, 2].numpy() == 113)
        assert np.array_equal(split.labels(), [(i // 113 + i % 113) % 113 for i in p])
    # the training split is the seeded permutation's first 30%, the one training reads
    perm = torch.randperm(12769, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(np.sort(perm[:3830].numpy()), pairs[0])
    assert data.open_split("test").content_hash() == test.content_hash() != train.content_hash()
    with pytest.raises(UserError, match="use 'train' or 'test'"):
        data.open_split("validation")


def test_the_fused_training_forward_and_the_staged_run_agree_on_every_pair():
    model = _model()
    a, b = _grid()
    tokens = data.pair_tokens(torch.as_tensor(113 * a + b))  # [12769, 3]
    with torch.no_grad():
        fused, staged = model(tokens), model.run(tokens)
    assert staged.shape == (12769, 113)
    assert (fused - staged).abs().max().item() < 1e-5 * max(1.0, fused.abs().max().item())


def test_the_committed_checkpoint_has_grokked():
    """Every held-out pair right, recomputed here from the weights by an independent plain-numpy forward."""
    state = {k: v.double().numpy() for k, v in _model().state_dict().items()}
    a, b = _grid()
    x = state["W_E"][np.stack([a, b, np.full_like(a, 113)], 1)] + state["W_pos"]  # [n, 3, d]
    q = np.einsum("nd,hde->nhe", x[:, -1], state["W_Q"])
    k = np.einsum("npd,hde->nhpe", x, state["W_K"])
    v = np.einsum("npd,hde->nhpe", x, state["W_V"])
    scores = np.einsum("nhe,nhpe->nhp", q, k) / math.sqrt(32)
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    mid = x[:, -1] + np.einsum("nhe,hed->nd", np.einsum("nhp,nhpe->nhe", pattern, v), state["W_O"])
    post = np.maximum(mid @ state["W_in"] + state["b_in"], 0)
    logits = (mid + post @ state["W_out"] + state["b_out"]) @ state["W_U"]  # [n, 113]
    answers = (a + b) % 113
    test = np.setdiff1d(np.arange(113 * 113), data.split_pairs()["train"].numpy())
    assert (logits.argmax(1)[test] == answers[test]).mean() >= 0.999
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[test, answers[test]].mean()
    meta = json.loads((PROJECT_ROOT / "checkpoints/modadd-p113.json").read_text())
    # the training's float32 loss (8.8e-7) is mostly rounding at this size: float64 gives 9.0e-7
    assert meta["test_accuracy"] >= 0.999 and loss == pytest.approx(meta["test_loss"], rel=0.05)
    assert meta["grokked_step"] is not None and meta["grokked_step"] <= meta["steps"]


def test_the_recipe_is_nanda_et_al():
    recipe = zoo.MODELS["modadd-p113"].recipe
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.betas, recipe.warmup_steps) == \
        ("adamw", 1e-3, 1.0, (0.9, 0.98), 10)
    model = _model()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["W_E"] == (114, 128) and shapes["W_pos"] == (3, 128) and shapes["W_Q"] == (4, 128, 32)
    assert shapes["W_in"] == (128, 512) and shapes["W_U"] == (128, 113)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())


def test_fan_in_and_multiply_adds_are_counted_through_einsums_and_the_embedding():
    """Counted by hand: one neuron from hook_resid_mid reads a column of W_in and its bias (129 numbers, 128
    multiply-adds); from the tokens it also needs every embedding row, the positions and all attention weights."""
    from benchmark.harness.efficiency import original_macs
    from benchmark.harness.fan_in import target_fan_in

    model = _model()
    shapes = {"tokens": (3,), "attn_hook_z": (4, 32), "hook_resid_mid": (128,)}
    assert target_fan_in(model, "mlp_hook_post", (7,), shapes) == 129
    assert target_fan_in(model, "mlp_hook_post", (7, 9), shapes) == 2 * 129
    assert target_fan_in(model, "mlp_hook_post", (7,), {"tokens": (3,)}) == \
        114 * 128 + 3 * 128 + 3 * 4 * 128 * 32 + 4 * 32 * 128 + 128 + 1
    # from z: W_O and the neuron's column (the residual stream it is not given is not counted)
    assert target_fan_in(model, "mlp_hook_post", (7,), {"attn_hook_z": (4, 32)}) == 4 * 32 * 128 + 129
    assert original_macs(model, "mlp_hook_post", (7,), shapes) == 128
    assert original_macs(model, "mlp_hook_post", tuple(range(512)), shapes) == 128 * 512


def test_a_target_with_a_position_axis_is_refused_in_one_line():
    from benchmark.harness.context import prepare

    with pytest.raises(UserError, match="position axis"):
        prepare(modadd_task("hook_resid_pre", (0,), inputs=("tokens",)))


def test_the_harness_scores_the_answer_at_the_last_position():
    """The baseline's clean loss is the cross-entropy of the answer, recomputed from a plain forward; zero-ablating
    the whole MLP costs more than 1 nat."""
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare

    ctx = prepare(modadd_task("mlp_hook_post", tuple(range(512))))
    baseline = load_or_compute(ctx, use_cache=False)
    tokens = ctx.eval_set.load(ctx.eval_indices)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(ctx.model.run(tokens), torch.as_tensor(ctx.eval_labels), reduction="none")
    np.testing.assert_allclose(baseline.arrays["loss.clean"], expected.double().numpy(), rtol=1e-6, atol=1e-9)
    assert baseline.arrays["loss.zero"].mean() > 1.0 and baseline.arrays["top1.clean"].mean() >= 0.999


@pytest.mark.slow
def test_replacebench_train_reproduces_the_committed_checkpoint(tmp_path):
    """`replacebench train modadd-p113` (7,000 full-batch steps, about 17 min on one core here) grokks again and, on
    the software stack and CPU kind that made the committed checkpoint, writes the same bytes. Elsewhere float
    rounding may move the weights (grokking amplifies it), so there it must grokk, not match."""
    from helpers import run_cli

    done = run_cli("train", "modadd-p113", "--out-dir", str(tmp_path), timeout=3600)
    assert done.returncode == 0, done.stderr
    ours = json.loads((tmp_path / "modadd-p113.json").read_text())
    committed = json.loads((PROJECT_ROOT / "checkpoints/modadd-p113.json").read_text())
    assert ours["test_accuracy"] >= 0.999 and ours["grokked_step"] is not None
    if ours["versions"] == committed["versions"] and ours["machine"] == committed["machine"]:
        assert ours["sha256"] == committed["sha256"]
        assert ours["curve"] == [{**c, "seconds": o["seconds"]} for c, o in zip(committed["curve"], ours["curve"])]
