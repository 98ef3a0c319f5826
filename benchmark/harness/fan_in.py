"""A target's fan-in from its inputs: how many model parameters its value depends on, from the nearest input.

For each allowed input `a` of a task, the fan-in from `a` is the number of
parameters (weights and biases) on which the target units' value at one
position (the centre of the map, for a conv layer) depends, through the stages
strictly after `a` up to the target layer. The task's fan-in is the smallest
over its inputs: the cheapest place a copy could start. A submission that
stores at least that many numbers could hold the target's own weights
(`description`, the copy test). Examples: one `mnist-mlp` fc1 unit from the
image: 784 weights + 1 bias = 785; one `mnist-cnn` conv2 unit from conv1:
32·3·3 + 1 = 289.

Computed, not tabulated, so it holds for any model: on a copy of the model with
every parameter made positive (|w| + 0.001) and positive random inputs, every
ReLU is active, so the gradient of the target with respect to the parameters is
non-zero exactly where the target depends on them. Shared (convolution)
weights make max pools harmless: any winner in a window reaches the same kernel.

Token ids cannot be random floats: from a model's integer input the probe is
every token of the vocabulary at every position (`probe_input`), so the
embedding rows a copy would need all get a gradient. A transformer's carried
activations below the start (its residual stream, `models.base`) are positive
random constants: what a replacement is not given is not counted as its input.
Example: one `modadd-p113` neuron from `hook_resid_mid`: 128 weights + 1 bias = 129.

A sequence model's units sit at every position (`StagedModel.unit_axis` is not 1: a neuron on the last axis of
`# [b, T, m]`, a head on the heads' axis of `# [b, T, H, e]` with its e values): the fan-in is then over the
units at every position together, the parameters a copy computing the whole window would need (under causal
attention, those of the last position). Example: one `shakespeare-char` layer-0 neuron from
`blocks_0_ln2_hook_normalized`: 128 + 1 = 129; from the tokens, every parameter before its MLP column
(tests/test_text_core.py counts them by hand).

There, a few parameters get a gradient that is only rounding: a key bias b_K adds the same q·b_K to every score of
a query, which softmax ignores, so its exact gradient is 0, while float32 leaves ~1e-12 of the largest. A sequence
model is therefore probed in float64 and a gradient counts when |g| > SEQUENCE_CUTOFF · max |g| (cancellation
leaves below 1e-18 of the largest there; the smallest real gradient measured on shakespeare-char is ~1e-11 of it).
"""

from __future__ import annotations

import copy

import torch

from ..models.base import StagedModel

PROBE_BATCH = 4
PROBE_SEED = 0
SEQUENCE_CUTOFF = 1e-15  # a sequence model's gradients below this share of the largest are rounding (docstring)


def is_sequence_model(model: StagedModel) -> bool:
    """Whether the model's units sit at every position of a sequence (`StagedModel.unit_axes` declared)."""
    return bool(model.unit_axes)


def positive_copy(model: StagedModel, dtype: torch.dtype = torch.float32) -> StagedModel:
    """A CPU copy of the model (float32, or `dtype`) with every parameter |w| + 0.001 and gradients on: every ReLU
    is active on positive inputs, so a gradient is non-zero exactly where the output depends on something."""
    positive = copy.deepcopy(model).to(dtype).cpu().eval()
    with torch.no_grad():
        for parameter in positive.parameters():
            parameter.copy_(parameter.abs() + 1e-3)
    for parameter in positive.parameters():
        parameter.requires_grad_(True)
    return positive


def positive_inputs(start_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    """Seeded positive random inputs `# [batch, *start_shape]`."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.rand((batch, *start_shape), generator=generator) + 0.1


def probe_input(model: StagedModel, start: str, start_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    """The probe from activation `start`: `positive_inputs`, except from a model's integer input (token ids
    `# [T]` per example, vocabulary V = `model.vocab_size`), where it is `# [V, T]` with token (i + t) mod V at
    position t of example i: every token at every position."""
    vocab = getattr(model, "vocab_size", 0)
    if start == model.input_name and vocab:
        (length,) = start_shape
        return (torch.arange(vocab)[:, None] + torch.arange(length)[None, :]) % vocab  # [V, T] int64
    return positive_inputs(start_shape, batch)


def probe_carry(model: StagedModel, start: str, batch: int) -> dict[str, torch.Tensor]:
    """Positive random stand-ins `# [batch, *shape]` for the carried activations at or below `start` (module
    docstring); empty for a chain."""
    at = model.stage_index(start)
    shapes = getattr(model, "stage_shapes", {})
    return {name: positive_inputs(tuple(shapes[name]), batch) for name in model.carried if model.stage_index(name) <= at}


def run_probe(model: StagedModel, start: str, start_shape: tuple[int, ...], layer: str, batch: int,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`model.run` from `start` through `layer` on the probe (`probe_input`, `probe_carry`; float ones as `dtype`):
    `# [n, channels, ...]`."""
    x = probe_input(model, start, start_shape, batch)
    x = x.to(dtype) if x.is_floating_point() else x
    carry = {k: v.to(dtype) for k, v in probe_carry(model, start, len(x)).items()}
    return model.run(x, after=start, until=layer, carry=carry)


def nearest_input(model: StagedModel, input_shapes: dict[str, tuple[int, ...]]) -> str:
    """The allowed input closest to the target: the latest stage among them (the model's input comes first)."""
    return max(input_shapes, key=model.stage_index)


def fan_in_from(model: StagedModel, layer: str, units: tuple[int, ...], start: str,
                start_shape: tuple[int, ...]) -> int:
    """Parameters the target `layer[units]` (at its centre position) depends on, from activation `start`."""
    return _fan_in(positive_copy(model, probe_dtype(model)), layer, units, start, start_shape)


def probe_dtype(model: StagedModel) -> torch.dtype:
    """float64 for a sequence model (module docstring), else float32."""
    return torch.float64 if is_sequence_model(model) else torch.float32


def _fan_in(positive: StagedModel, layer: str, units: tuple[int, ...], start: str, start_shape: tuple[int, ...]) -> int:
    """`fan_in_from` on a model already made positive (`positive_copy`); its gradients are reset first."""
    positive.zero_grad(set_to_none=True)
    dtype = next(positive.parameters()).dtype
    with torch.enable_grad():
        out = run_probe(positive, start, start_shape, layer, PROBE_BATCH, dtype)  # [batch, channels, ...]
        axis = positive.unit_axis(layer, out.dim())
        target = out.index_select(axis, torch.tensor(units))  # [batch, n_units, ...] or [batch, T, n_units, ...]
        if axis == 1:
            for size in target.shape[2:]:
                target = target.select(2, size // 2)  # the centre position: [batch, n_units]
        target.sum().backward()  # a sequence model: every position (module docstring)
    grads = [p.grad for p in positive.parameters() if p.grad is not None]
    if not is_sequence_model(positive):
        return sum(int((g != 0).sum()) for g in grads)
    cutoff = SEQUENCE_CUTOFF * max(float(g.abs().max()) for g in grads)
    return sum(int((g.abs() > cutoff).sum()) for g in grads)


def target_fan_in(model: StagedModel, layer: str, units: tuple[int, ...], input_shapes: dict[str, tuple[int, ...]]) -> int:
    """The task's fan-in: the smallest fan-in over its allowed inputs (see the module docstring)."""
    positive = positive_copy(model, probe_dtype(model))  # one copy serves every input
    return min(_fan_in(positive, layer, units, name, shape) for name, shape in input_shapes.items())
