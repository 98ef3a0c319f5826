"""The core on text: the kind's loss and KL against independent numpy, where units sit, the splice through the
harness, and fan-in and multiply-adds of shakespeare-char counted by hand from the architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.errors import UserError
from benchmark.harness.context import prepare
from benchmark.harness.efficiency import original_macs
from benchmark.harness.fan_in import fan_in_from, target_fan_in
from benchmark.harness.passes import batches, logits_from, with_units
from benchmark.kinds import kind_of
from benchmark.models.shakespeare import ShakespeareChar
from benchmark.models.weights import save_safetensors
from benchmark.tasks import Task

D, H, E, M, V, T = 128, 4, 32, 512, 65, 128


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_the_loss_is_the_mean_next_character_cross_entropy_per_window():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(3, 7, V, generator=g) * 3, torch.randint(0, V, (3, 7), generator=g)
    got = kind_of("tinyshakespeare").per_example_outputs(logits, labels, ())
    lp = _log_softmax(logits.numpy())
    expected = -np.take_along_axis(lp, labels.numpy()[..., None], -1)[..., 0].mean(1)
    assert set(got) == {"loss"} and got["loss"].shape == (3,)
    np.testing.assert_allclose(got["loss"], expected, rtol=1e-6)


def test_the_kl_is_the_mean_over_positions_of_each_positions_kl():
    g = torch.Generator().manual_seed(1)
    kind = kind_of("tinyshakespeare")
    a, b = (kind.log_probs(torch.randn(2, 5, V, generator=g) * 2) for _ in range(2))
    got = kind.per_example_kl(a, b)
    pa, pb = _log_softmax(a), _log_softmax(b)
    expected = (np.exp(pa) * (pa - pb)).sum(-1).mean(1)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_the_logit_scale_is_the_mean_over_positions_of_the_largest_logit():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 7, V, generator=g) * 4
    got = kind_of("tinyshakespeare").logit_scale(logits)
    np.testing.assert_allclose(got, np.abs(logits.numpy()).max(-1).astype(np.float64).mean(1), rtol=1e-12)
    assert kind_of("mnist").logit_scale(logits[:, 0]).tolist() == np.abs(logits[:, 0].numpy()).max(-1).tolist()


def test_text_has_no_topk_and_no_held_out_split():
    kind = kind_of("tinyshakespeare")
    with pytest.raises(UserError, match="no top-k"):
        kind.per_example_outputs(torch.zeros(1, 2, V), torch.zeros(1, 2, dtype=torch.long), (1,))
    with pytest.raises(UserError, match="whole corpus is public"):
        kind.held_out(None, b"x", "t")
    assert not kind.balanced_subsets()


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> tuple[ShakespeareChar, str]:
    torch.manual_seed(0)
    model = ShakespeareChar().eval()
    path = tmp_path_factory.mktemp("ckpt") / "random.safetensors"
    save_safetensors(model.state_dict(), path)
    return model, str(path)


def _task(checkpoint: str, layer: str, units: tuple[int, ...], inputs: tuple[str, ...]) -> Task:
    return Task(id=f"shakespeare-char/{layer}:test", model="shakespeare-char", checkpoint=checkpoint,
                checkpoint_sha256="", dataset="tinyshakespeare", eval_split="val", eval_size=12, fit_split="train",
                fit_size=10, seed=0, layer=layer, units=units, inputs=inputs, ablation="mean", version=1, topk=(),
                batch_size=5)


@pytest.mark.parametrize("layer, units, shape", [
    ("blocks_1_mlp_hook_post", (7, 300), (T, 2)),
    ("blocks_0_attn_hook_z", (2,), (T, 1, E)),
    ("blocks_1_hook_resid_mid", (0, 1, 2), (T, 3)),
])
def test_units_sit_on_the_models_axis_and_the_splice_is_the_hooked_forward(random_checkpoint, layer, units, shape):
    """target_shape cuts the unit axis; with_units → logits_from equals the whole forward with a hook that writes the
    same values into those units; the batch's target is the activation's slice on that axis."""
    model, path = random_checkpoint
    ctx = prepare(_task(path, layer, units, ("tokens",)))
    assert ctx.target_shape == shape
    batch = next(batches(ctx, "eval", ("tokens",)))
    axis = ctx.unit_axis
    assert torch.equal(batch.target, batch.activation.index_select(axis, torch.tensor(units)))
    values = torch.randn(len(batch), *shape, generator=torch.Generator().manual_seed(3))
    spliced = logits_from(ctx, with_units(ctx, batch.activation, values), batch.carry)

    def hook(_module, _args, output):
        out = output.clone()
        index = [slice(None)] * out.dim()
        index[axis] = list(units)
        out[tuple(index)] = values
        return out

    handle = getattr(model, layer).register_forward_hook(hook)
    try:
        with torch.no_grad():
            expected = model.run(batch.x, carry={})
    finally:
        handle.remove()
    torch.testing.assert_close(spliced, expected, rtol=1e-5, atol=1e-5)
    moved = ctx.units_first(batch.target.numpy())
    assert moved.shape[1] == len(units)


def test_a_unit_past_the_unit_axis_is_refused(random_checkpoint):
    _, path = random_checkpoint
    with pytest.raises(UserError, match="has 4 units"):
        prepare(_task(path, "blocks_0_attn_hook_z", (4,), ("tokens",)))


# Fan-in by hand. Per layer l: LayerNorm 2·D; Q, K, V: H·D·E weights + H·E biases each; W_O: H·E·D, b_O: D;
# W_in column D + b_in 1. A key bias cancels in softmax (it adds q·b_K to every score of a query): not counted.
LN = 2 * D
QKV_W, QKV_B = H * D * E, H * E
EMBED = V * D + T * D  # W_E and W_pos (every position: the target is the unit at every position)
ATTN_LAYER = LN + 3 * QKV_W + 2 * QKV_B + H * E * D + D  # without b_K
NEURON = LN + D + 1  # ln2 and the neuron's W_in column and bias


@pytest.mark.parametrize("layer, units, start, expected", [
    ("blocks_1_mlp_hook_post", (5,), "blocks_1_hook_resid_mid", NEURON),  # 385
    ("blocks_1_mlp_hook_post", (5, 9), "blocks_1_ln2_hook_normalized", 2 * (D + 1)),
    ("blocks_0_mlp_hook_post", (5,), "tokens", EMBED + ATTN_LAYER + NEURON),  # 91,265
    ("blocks_1_attn_hook_z", (1,), "blocks_1_hook_resid_pre", LN + 3 * (D * E) + 2 * E),  # one head, no b_K: 12,608
    ("blocks_0_attn_hook_z", (3,), "tokens", EMBED + LN + 3 * (D * E) + 2 * E),
    # from layer 0's pattern: all of its V (the carried LN1 is not an input) and W_O, LN2, MLP 0, then the head
    ("blocks_1_attn_hook_z", (1,), "blocks_0_attn_hook_pattern",
     (QKV_W + QKV_B) + (H * E * D + D) + LN + (D * M + M + M * D + D) + LN + 3 * (D * E) + 2 * E),  # 177,600
])
def test_fan_in_by_hand(random_checkpoint, layer, units, start, expected):
    model, _ = random_checkpoint
    shape = (T,) if start == "tokens" else model.stage_shapes[start]
    assert fan_in_from(model, layer, units, start, shape) == expected


def test_the_task_fan_in_is_the_nearest_inputs(random_checkpoint):
    model, _ = random_checkpoint
    shapes = {"tokens": (T,), "blocks_1_hook_resid_mid": (T, D)}
    assert target_fan_in(model, "blocks_1_mlp_hook_post", (5,), shapes) == NEURON


def test_multiply_adds_by_hand(random_checkpoint):
    """Per example, the unit at all T positions. A neuron from resid_mid: LayerNorm 3·D per position, its W_in
    column D per position. A head from resid_pre: LayerNorm 3·D·T; the pattern stage (Q and K projections 2·T·D·D
    and scores H·T·T·E for all heads, a quarter of its output needed); the z stage (V projection T·D·D and the
    weighted sum H·T·T·E, a quarter needed)."""
    model, _ = random_checkpoint
    neuron = original_macs(model, "blocks_1_mlp_hook_post", (5,), {"blocks_1_hook_resid_mid": (T, D)})
    assert neuron == 3 * D * T + D * T
    head = original_macs(model, "blocks_1_attn_hook_z", (1,), {"blocks_1_hook_resid_pre": (T, D)})
    assert head == 3 * D * T + (2 * T * D * D + H * T * T * E) // 4 + (T * D * D + H * T * T * E) // 4
