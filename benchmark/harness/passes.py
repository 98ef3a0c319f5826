"""The one batch loop over a task's data, and the one place that calls a submission's `replace`.

Every pass the harness makes over a task's fit or eval set (the baseline, the fit inputs, the replaced pass,
`inspect`, `diagnose`) is `batches(ctx, split)`: it runs the model up to the target layer only, with the named
inputs below it captured by hooks, and yields one `Batch` per `task.batch_size` examples, in index order. A pass
that needs the model's output continues from the (possibly modified) target activation with `logits_from`:

    logits = class_logits(run(after=layer, carry)(a')),  a' = the layer's activation with the target units replaced,

which is the same computation as the whole forward with those units spliced in, run once. `carry` holds what a
transformer's later stages read besides the layer (its residual stream; empty for a chain: `models.base`). Where
the units sit and the loss are the task's kind's (`benchmark.kinds`).

`call_replace` is how a submission's `replace` is reached (`score`, `diagnose`, `stimuli`): named inputs cross as
float32 arrays (token ids as int64), the room validates what comes back, and the harness times the call,
transfers included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from tqdm import tqdm

from .context import TaskContext
from .hooks import capture


@dataclass
class Batch:
    """One batch of a split, run up to the task's layer."""

    start: int  # position of its first example in the split's index list (ctx.fit_indices / ctx.eval_indices)
    x: torch.Tensor  # the model's input, model-ready, on the device  # [b, C, H, W] images or [b, T] token ids
    labels: torch.Tensor  # on the device  # [b]
    inputs: dict[str, torch.Tensor]  # the named inputs asked for (the model's input included), each [b, ...]
    activation: torch.Tensor  # the whole target layer  # [b, channels, ...]
    target: torch.Tensor  # its target units, activation[:, units]  # [b, n_units, ...]
    carry: dict[str, torch.Tensor]  # the carried activations the stages after the layer read (empty for a chain)

    def __len__(self) -> int:
        return len(self.x)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a plain numpy array on the CPU (what crosses to a submission): int64 for an integer tensor
    (token ids, exact), float32 for any other."""
    integer = not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)
    return tensor.detach().to("cpu", torch.int64 if integer else torch.float32).numpy()


@torch.no_grad()
def batches(ctx: TaskContext, split: Literal["fit", "eval"], inputs: Sequence[str] = (), progress: bool = False,
            desc: str = "") -> Iterator[Batch]:
    """The split's batches in index order, each run up to the target layer (the only batch loop; module docstring).

    `inputs`: the allowed inputs to capture ("image" or layers below the target). `progress`: a tqdm bar on
    stderr, labelled `desc` (default the split's name); the fit set's bar is removed when it ends."""
    task, kind = ctx.task, ctx.data_kind
    data, indices = (ctx.fit_set, ctx.fit_indices) if split == "fit" else (ctx.eval_set, ctx.eval_indices)
    labels_all = torch.as_tensor(data.labels()[indices])  # [n]
    units = torch.as_tensor(task.units, device=ctx.device)
    start = 0
    for _, x in tqdm(data.batches(indices, task.batch_size), desc=desc or f"{split} set", unit="batch",
                     total=-(-len(indices) // task.batch_size), disable=not progress, leave=split == "eval"):
        x = ctx.to_input(x)  # [b, C, H, W] or [b, T]
        named, activation, carry = run_to_layer(ctx, x, inputs)
        b = len(x)
        yield Batch(start, x, labels_all[start : start + b].to(ctx.device), named, activation,
                    kind.select_units(activation, units, ctx.unit_axis), carry)
        start += b


@torch.no_grad()
def run_to_layer(ctx: TaskContext, x: torch.Tensor, inputs: Sequence[str] = ()
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """The model on model-ready inputs `x` up to the task's layer: (the named `inputs`, each `# [b, ...]`, captured by
    hooks that are always removed; the layer's activation `# [b, channels, ...]`; the carry)."""
    model = ctx.model
    carry: dict[str, torch.Tensor] = {}
    with capture(model, [n for n in inputs if n != model.input_name]) as store:
        activation = model.run(x, until=ctx.task.layer, carry=carry)
        named = {n: x if n == model.input_name else store[n] for n in inputs}
    return named, activation, carry


@torch.no_grad()
def units_on(ctx: TaskContext, x: torch.Tensor) -> torch.Tensor:
    """The target units `# [b, n_units, ...]` of any inputs `x` as the dataset loads them, computed as `batches` does;
    for inputs that are no split's (`inspect` runs modular addition's whole (a, b) grid, `analysis.pairs`)."""
    activation = ctx.model.run(ctx.to_input(x), until=ctx.task.layer, carry={})  # [b, channels, ...]
    return ctx.data_kind.select_units(activation, torch.as_tensor(ctx.task.units, device=ctx.device), ctx.unit_axis)


@torch.no_grad()
def logits_from(ctx: TaskContext, activation: torch.Tensor, carry: dict[str, torch.Tensor]) -> torch.Tensor:
    """The class logits `# [b, classes]` from the target layer's (possibly modified) activation `# [b, channels, ...]`
    and its batch's `carry` (copied: a resumed run adds to what it is given, and the batch serves several runs)."""
    return ctx.model.class_logits(ctx.model.run(activation, after=ctx.task.layer, carry=dict(carry)))


def with_units(ctx: TaskContext, activation: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A copy of `activation # [b, channels, ...]` with the target units set to `values # [b, n_units, ...]` (the
    activation itself is never written; where the units sit is the kind's)."""
    return ctx.data_kind.set_units(activation, torch.as_tensor(ctx.task.units, device=activation.device), values,
                                   ctx.unit_axis)


def fit_set_arrays(ctx: TaskContext, inputs: Sequence[str] = (), progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The fit set's named inputs `# [n_fit, ...]` and target units `# [n_fit, n_units, ...]`, as arrays (float32;
    token ids int64)."""
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in inputs}
    targets = []
    for batch in batches(ctx, "fit", inputs, progress, "fit set"):
        targets.append(as_array(batch.target))
        for name, value in batch.inputs.items():
            chunks[name].append(np.ascontiguousarray(as_array(value)))
    return {n: np.concatenate(c) for n, c in chunks.items()}, np.concatenate(targets)


class Replacer(Protocol):
    """What `call_replace` needs of a room (`sandbox.room.IsolatedSubmission`)."""

    def replace(self, inputs: dict[str, np.ndarray], expected_shape: tuple[int, ...]) -> np.ndarray: ...

    def renew_replace(self) -> None: ...


@dataclass
class ReplaceCalls:
    """The one way the harness calls a submission's `replace`, keeping the wall seconds spent in it.

    `ctx` (a task whose kind is `causal`, text): the first call that is given the batch's model input `x` is audited
    for causality (`causal_audit`); its extra call counts in the seconds, the replace child's renewal does not."""

    room: Replacer
    target_shape: tuple[int, ...]  # per example: (n_units, *spatial)
    seconds: float = 0.0
    ctx: TaskContext | None = None
    audited: bool = False

    def __call__(self, inputs: dict[str, torch.Tensor], b: int, x: torch.Tensor | None = None) -> np.ndarray:
        """The validated float32 output `# [b, n_units, ...]` for one batch of `b` examples' named inputs `# [b, ...]`
        (`x`: the batch's model input, for the causality audit)."""
        if self.ctx is not None and self.ctx.data_kind.causal and x is not None and not self.audited:
            self.audited = True
            return causal_audit(self.ctx, x, inputs, self._call, self.room.renew_replace)
        return self._call(inputs, b)

    def _call(self, inputs: dict[str, torch.Tensor], b: int) -> np.ndarray:
        arrays = {n: as_array(v) for n, v in inputs.items()}
        began = time.perf_counter()
        out = self.room.replace(arrays, (b, *self.target_shape))
        self.seconds += time.perf_counter() - began
        return out


AUDIT_SEED = 3  # added to the task's seed for the audit's cuts
AUDIT_TOLERANCE = 1e-5  # relative to max(1, max |output|): float32 rounding of a different batch's arithmetic


def causal_audit(ctx: TaskContext, x: torch.Tensor, inputs: dict[str, torch.Tensor],
                 call: Callable[[dict[str, torch.Tensor], int], np.ndarray], renew: Callable[[], None]) -> np.ndarray:
    """The output `# [b, n_units, ...]` of `replace` on one batch `x # [b, T]` with named `inputs`, after refusing a
    `replace` whose output at a position depends on characters after it (a causal model never does, and the next
    character is that position's answer).

    With a seeded cut t_i ∈ {0 … T − 2} per example (`np.random.default_rng(task.seed + AUDIT_SEED)`), the characters
    after t_i are replaced by the same positions of the next example in the batch (a roll) and the named inputs are
    recomputed by the model. `replace` is called on that spliced batch first; then the replace child is renewed
    (`renew`: a fresh process, set up as before), so the real batch's call cannot be matched against the spliced one
    by remembering it; then `replace` is called on the real batch. Its output at positions ≤ t_i must equal the
    spliced call's: |Δ| ≤ AUDIT_TOLERANCE · max(1, max |out|). Else a SubmissionError.

    Limits (docs/text.md, "Causal calls"): the batch and the cuts follow from the public task seed, so a submission
    that stores a fingerprint of the spliced batch (or embeds the public corpus) can tell it from a real one and
    behave causally only there; the airtight protocol, calling `replace` on every prefix, costs about T/2 = 64 times
    the calls' work and data and is not built."""
    from ..errors import SubmissionError

    b, t = x.shape[0], x.shape[1]
    if b < 2:
        return call(inputs, b)
    cuts = np.random.default_rng(ctx.task.seed + AUDIT_SEED).integers(0, t - 1, size=b)  # [b]
    after = torch.arange(t, device=x.device)[None, :] > torch.as_tensor(cuts, device=x.device)[:, None]  # [b, T]
    spliced = torch.where(after, x.roll(1, 0), x)
    named, _, _ = run_to_layer(ctx, spliced, list(inputs))
    again = call(named, b)
    renew()
    out = call(inputs, b)
    keep = ~after.cpu().numpy()  # [b, T]: positions ≤ the cut
    keep = keep.reshape(b, t, *([1] * (out.ndim - 2)))
    gap = np.where(keep, np.abs(again - out), 0.0)
    tolerance = AUDIT_TOLERANCE * max(1.0, float(np.abs(out).max()))
    if float(gap.max()) > tolerance:
        i, position = (int(v) for v in np.unravel_index(int(gap.argmax()), gap.shape)[:2])
        raise SubmissionError(
            f"replace is not causal: its output at position {position} of example {i} changed by {float(gap.max()):.3g} "
            f"when only the characters after position {int(cuts[i])} changed; a position's replacement may read only "
            f"that position and earlier ones (the next character is its answer).")
    return out
