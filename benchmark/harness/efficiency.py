"""What the original units cost per example: multiply-adds counted from the model, and wall time measured here.

Multiply-adds. From the task's nearest allowed input, the original units' whole
map (every position) depends on some outputs of each convolution and linear
layer on the way. Each such output element costs its weight fan-in in
multiply-adds (`in_channels/groups · kh · kw`, or `in_features`), so

    MACs = Σ_layers (output elements the target depends on) · (MACs per element)

The elements are found as in `fan_in`: the gradient of the target's map on a
positive copy of the model, united over a batch of positive random inputs.
While counting, max pools average instead (`max_pools_as_averages`): a max
pool reads every element of its window, but passes a gradient to only one, and
on positive inputs the same one every time (an element next to zero padding
never wins). Pooling, ReLU and normalisation are not counted.

A model without convolution or linear modules (the transformer, whose layers are
einsums over its own parameters) is counted by stage instead: each stage from the
nearest input through the target layer costs the multiply-adds torch's
`FlopCounterMode` counts for it (FLOPs / 2: matmuls, einsums, convolutions), times
the share of its output elements the target depends on (found by the same
gradient), so

    MACs = Σ_stages MACs(stage) · |needed elements of stage| / |elements of stage|

One `modadd-p113` neuron from `hook_resid_mid`: the 128 multiply-adds of its
column of W_in. `FlopCounterMode` does not count LayerNorm; a stage that applies
one (`*_hook_normalized`) adds 3 multiplies per output element (the variance's
square, the scale by 1/σ, the affine weight w). An embedding lookup costs none.
For a sequence model the target is the units at every position
(`StagedModel.unit_axis`), as in `fan_in`.

Wall time. The target layer computed from the nearest input, per example, on
this machine, times the target's share of the layer's channels. It is a
measurement, so it is kept with the provenance, and the board shows it beside
the wall time of the submission's `replace` (measured by the harness around
each call, transfers included). The harness does not count a submission's
multiply-adds: that number would come from the submission's own process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import StagedModel
from .fan_in import nearest_input, positive_copy, probe_carry, probe_input, run_probe

MAC_BATCH = 4
LAYER_NORM_MACS = 3  # multiplies per element a LayerNorm stage adds to what FlopCounterMode counts (module docstring)
TIMING_BATCH = 64
TIMING_REPEATS = 5


def macs_per_element(module: nn.Module) -> int:
    """Multiply-adds for one output element of a convolution or linear layer."""
    if isinstance(module, nn.Linear):
        return module.in_features
    assert isinstance(module, nn.Conv2d)
    return (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]


def _average_pool(x: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                  ceil_mode: bool = False, return_indices: bool = False) -> torch.Tensor:
    """`F.max_pool2d`'s signature, averaging (−inf padding read as 0), so every cell of a window gets a gradient."""
    if return_indices or dilation not in (1, (1, 1)):
        raise ValueError("max_pools_as_averages: dilated pools and returned indices are not supported")
    return F.avg_pool2d(torch.nan_to_num(x, neginf=0.0), kernel_size, stride, padding, ceil_mode)


@contextmanager
def max_pools_as_averages() -> Iterator[None]:
    """Within the block, `F.max_pool2d` (which `nn.MaxPool2d` calls) averages; restored on exit."""
    original = F.max_pool2d
    F.max_pool2d = _average_pool
    try:
        yield
    finally:
        F.max_pool2d = original


@contextmanager
def kept_outputs(model: nn.Module) -> Iterator[dict[nn.Module, torch.Tensor]]:
    """Every convolution's and linear layer's output of the next forward, with its gradient retained."""
    outputs: dict[nn.Module, torch.Tensor] = {}

    def keep(module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        outputs[module] = output

    handles = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def has_counted_modules(model: nn.Module) -> bool:
    """Whether the model computes with convolution or linear modules (else it is counted by stage)."""
    return any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def stage_macs(model: StagedModel, layer: str, units: tuple[int, ...], start: str, start_shape: tuple[int, ...]) -> int:
    """Multiply-adds per example by stage, for a model without counted modules (module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    positive = positive_copy(model)
    x = probe_input(positive, start, start_shape, MAC_BATCH)  # [n, *shape]
    carry = probe_carry(positive, start, len(x))
    stages = positive.stage_names[positive.stage_index(start) + 1 : positive.stage_index(layer) + 1]
    outputs, flops = [], []
    with torch.enable_grad():
        previous = start
        for name in stages:
            with FlopCounterMode(display=False) as counter:
                x = positive.run(x, after=previous, until=name, carry=carry)
            if x.requires_grad:
                x.retain_grad()
            outputs.append(x)
            flops.append(counter.get_total_flops() + (2 * LAYER_NORM_MACS * x.numel() if name.endswith("_hook_normalized") else 0))
            previous = name
        x.index_select(positive.unit_axis(layer, x.dim()), torch.tensor(units)).sum().backward()
    total = 0.0
    for output, stage_flops in zip(outputs, flops):
        n = len(output)
        needed = 1.0 if output.grad is None else float((output.grad != 0).any(dim=0).float().mean())
        total += stage_flops / 2 / n * needed
    return int(round(total))


def original_macs(model: StagedModel, layer: str, units: tuple[int, ...], input_shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-adds per example that compute the units' whole map from the nearest allowed input."""
    start = nearest_input(model, input_shapes)
    if not has_counted_modules(model):
        return stage_macs(model, layer, units, start, input_shapes[start])
    positive = positive_copy(model)
    with torch.enable_grad(), max_pools_as_averages(), kept_outputs(positive) as outputs:
        out = run_probe(positive, start, input_shapes[start], layer, MAC_BATCH)  # [batch, channels, ...]
        out[:, list(units)].sum().backward()
    total = 0
    for module, output in outputs.items():
        if output.grad is not None:
            needed = (output.grad != 0).any(dim=0)  # [channels, ...]: needed for some input
            total += int(needed.sum()) * macs_per_element(module)
    return total


def original_seconds_per_example(model: StagedModel, layer: str, units: tuple[int, ...],
                                 input_shapes: dict[str, tuple[int, ...]], device: torch.device) -> float:
    """Median wall time of the target layer from the nearest input, per example, × the units' share of its channels."""
    start = nearest_input(model, input_shapes)
    x = probe_input(model, start, input_shapes[start], TIMING_BATCH).to(device)
    carry = {k: v.to(device) for k, v in probe_carry(model, start, len(x)).items()}
    times = []
    with torch.no_grad():
        for _ in range(TIMING_REPEATS + 1):
            began = time.perf_counter()
            out = model.run(x, after=start, until=layer, carry=dict(carry))
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - began)
    share = len(units) / out.shape[model.unit_axis(layer, out.dim())]
    return float(np.median(times[1:])) / len(x) * share  # the first run warms up
