"""The one batch loop (`passes.batches`) and the continuation from the target layer (`passes.logits_from`)."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import torch

from benchmark.harness.context import prepare
from benchmark.harness.hooks import capture, splice
from benchmark.harness.passes import ReplaceCalls, as_array, batches, fit_set_arrays, logits_from, with_units
from benchmark.tasks import get_task


def test_batches_cover_the_split_in_order():
    task = dataclasses.replace(get_task("digits-mlp/fc1:17"), batch_size=64)  # the file's 500 would be one batch
    ctx = prepare(task, eval_size=230, fit_size=170)
    seen = list(batches(ctx, "eval", ("image",)))
    assert all(b.carry == {} for b in seen)  # a chain carries nothing
    assert [b.start for b in seen] == [0, 64, 128, 192] and sum(len(b) for b in seen) == 230
    labels = np.concatenate([b.labels.numpy() for b in seen])
    assert np.array_equal(labels, ctx.eval_set.labels()[ctx.eval_indices])
    images = torch.cat([b.inputs["image"] for b in seen])
    assert torch.equal(images, ctx.eval_set.load(ctx.eval_indices))
    # the target units are the layer's channels `units`, from a plain forward of the same images
    with torch.no_grad():
        full = ctx.model.run(images, until="fc1")
    assert torch.equal(torch.cat([b.target for b in seen]), full[:, list(ctx.task.units)])
    assert torch.is_grad_enabled()  # the loop's no-grad mode ends with it


def test_fit_set_arrays_capture_inputs_below_the_layer():
    ctx = prepare(get_task("mnist-cnn/conv2:61"), fit_size=40, eval_size=10, data_dir=_data_dir())
    inputs, target = fit_set_arrays(ctx, ("image", "conv1"))
    images = ctx.fit_set.load(ctx.fit_indices)
    with torch.no_grad(), capture(ctx.model, ["conv1"]) as store:
        layer = ctx.model.run(images, until="conv2")
    assert np.array_equal(inputs["image"], images.numpy()) and np.array_equal(inputs["conv1"], store["conv1"].numpy())
    assert np.array_equal(target, layer[:, list(ctx.task.units)].numpy()) and target.dtype == np.float32


def _data_dir():
    if not os.environ.get("REPLACEBENCH_DATA"):
        pytest.skip("REPLACEBENCH_DATA is not set: point it at the shared data directory")
    return os.environ["REPLACEBENCH_DATA"]


@pytest.mark.parametrize("task_id", ["digits-mlp/fc1:17", "mnist-cnn/conv2:61", "mnist-mlp/fc2:top20"])
def test_continuing_from_the_layer_equals_a_spliced_forward_bit_for_bit(task_id):
    """logits_from(with_units(a, v)) is exactly the whole forward with the units spliced to v by a hook (the way the
    harness scored before there was one batch loop), and the activation itself is not written."""
    data_dir = None if task_id.startswith("digits") else _data_dir()
    ctx = prepare(get_task(task_id), eval_size=50, fit_size=20, data_dir=data_dir)
    batch = next(batches(ctx, "eval"))
    generator = torch.Generator().manual_seed(0)
    values = torch.randn((len(batch), *ctx.target_shape), generator=generator).abs()  # [b, n_units, ...]
    before = batch.activation.clone()
    ours = logits_from(ctx, with_units(ctx, batch.activation, values), batch.carry)
    assert torch.equal(batch.activation, before)
    with torch.no_grad(), splice(ctx.model, ctx.task.layer, ctx.task.units, lambda original: values):
        hooked = ctx.model.class_logits(ctx.model.run(batch.x))
    assert torch.equal(ours, hooked)
    # and with the original values put back, the clean model
    assert torch.equal(logits_from(ctx, with_units(ctx, batch.activation, batch.target), batch.carry),
                       ctx.model.class_logits(ctx.model.run(batch.x)))


@pytest.mark.parametrize("layer", ["attn_hook_pattern", "attn_hook_z", "hook_resid_mid",
                                   "mlp_hook_post"])
def test_a_transformer_resumes_from_any_hook_point_with_its_carried_residual_stream(layer):
    """For modadd-p113, whose later stages read the residual stream, continuing from `layer` with the batch's carry
    equals the whole staged forward with the units spliced by a hook, bit for bit; and the carry is not written."""
    from helpers import modadd_task

    ctx = prepare(modadd_task(layer, (0, 2, 3)), eval_size=300, fit_size=20)
    batch = next(batches(ctx, "eval", ("tokens",)))
    assert batch.x.dtype == torch.int64 and batch.inputs["tokens"].shape == (300, 3)
    generator = torch.Generator().manual_seed(0)
    values = torch.randn((len(batch), *ctx.target_shape), generator=generator)  # [b, 3, ...]
    carry_before = {k: v.clone() for k, v in batch.carry.items()}
    ours = logits_from(ctx, with_units(ctx, batch.activation, values), batch.carry)
    assert batch.carry.keys() == carry_before.keys()
    assert all(torch.equal(batch.carry[k], carry_before[k]) for k in carry_before)
    with torch.no_grad(), splice(ctx.model, layer, ctx.task.units, lambda original: values):
        hooked = ctx.model.class_logits(ctx.model.run(batch.x))
    assert torch.equal(ours, hooked)
    clean = logits_from(ctx, batch.activation, batch.carry)
    assert torch.equal(clean, ctx.model.run(batch.x)) and not torch.equal(clean, ours)


class CountingRoom:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[dict[str, np.ndarray], tuple[int, ...]]] = []
        self.delay = delay

    def replace(self, inputs, expected_shape):
        time.sleep(self.delay)
        self.calls.append((inputs, expected_shape))
        return np.zeros(expected_shape, np.float32)


def test_replace_calls_send_float32_arrays_and_time_the_call():
    room = CountingRoom(delay=0.05)
    call = ReplaceCalls(room, (3, 4, 4))
    out = call({"image": torch.ones(2, 1, 8, 8, dtype=torch.float64)}, 2)
    (inputs, shape), = room.calls
    assert shape == (2, 3, 4, 4) and out.shape == shape
    assert inputs["image"].dtype == np.float32 and isinstance(inputs["image"], np.ndarray)
    assert call.seconds >= 0.05
    assert as_array(torch.ones(2, dtype=torch.float64)).dtype == np.float32
