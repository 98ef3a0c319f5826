"""Named hook points: read activations and splice in new values, always cleanly.

Both context managers remove their hooks on exit, exception or not. `splice`
never writes into the tensor the hooked module returned (another module, or an
in-place ReLU, may hold it): it returns a fresh tensor with the units replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def hook_point(model: nn.Module, name: str) -> nn.Module:
    """The module whose output is activation `name`."""
    module = getattr(model, name, None)
    if not isinstance(module, nn.Module):
        raise KeyError(f"model has no hook point '{name}'")
    return module


@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named hook points into the yielded dict (overwritten each forward)."""
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str) -> Callable:
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            store[name] = output

        return hook

    try:
        for name in names:
            handles.append(hook_point(model, name).register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


# compute(original) -> new values for the spliced units
SpliceFn = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def splice(model: nn.Module, name: str, units: Sequence[int], compute: SpliceFn) -> Iterator[None]:
    """Replace channels `units` of activation `name` by `compute(original)`.

    `original` is the hooked module's full output `# [batch, channels, ...]`;
    `compute` returns `# [batch, len(units), ...]`. The hook returns a clone with
    those channels overwritten, so the original output is never modified.
    """
    index = torch.as_tensor(list(units), dtype=torch.long)

    def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        values = compute(output)
        spliced = output.clone()
        spliced[:, index.to(output.device)] = values.to(spliced.dtype)
        return spliced

    handle = hook_point(model, name).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
