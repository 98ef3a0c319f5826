"""Hook context managers: always removed, never writing into a tensor another module holds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.harness.hooks import capture, splice
from benchmark.models.registry import model_class
from benchmark.zoo import MODELS


class Double(nn.Module):
    """x * 2, optionally in place (the kind of op that corrupts a tensor someone else holds)."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2) if self.inplace else x * 2


class Chain(nn.Module):
    """image → a (ReLU) → ×2 → b (ReLU)."""

    def __init__(self, inplace_after_a: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin_a, self.a = nn.Linear(4, 6), nn.ReLU()
        self.after_a = Double(inplace_after_a)
        self.lin_b, self.b = nn.Linear(6, 3), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.lin_b(self.after_a(self.a(self.lin_a(x)))))


def test_splice_returns_a_new_tensor_and_leaves_the_original_alone():
    model, x = Chain(), torch.randn(5, 4)
    held: dict[str, torch.Tensor] = {}
    model.a.register_forward_hook(lambda m, i, o: held.setdefault("a", o))  # another holder of a's output
    reference = model.a(model.lin_a(x)).clone()
    with splice(model, "a", [1, 4], lambda original: torch.full((len(original), 2), 7.0)):
        out = model(x)
    assert torch.equal(held["a"], reference)  # the module's own output was not written into
    expected_a = reference.clone()
    expected_a[:, [1, 4]] = 7.0
    assert torch.allclose(out, model.b(model.lin_b(model.after_a(expected_a))))


def test_hooks_are_removed_even_when_the_block_raises():
    model, x = Chain(), torch.randn(2, 4)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["a", "b"]), splice(model, "a", [0], lambda o: torch.zeros(len(o), 1)):
            raise RuntimeError("boom")
    assert not model.a._forward_hooks and not model.b._forward_hooks
    with pytest.raises(ValueError):
        with splice(model, "a", [0], lambda o: (_ for _ in ()).throw(ValueError("inside the hook"))):
            model(x)
    assert not model.a._forward_hooks


def test_capture_sees_the_activations_of_a_forward_pass():
    model, x = Chain(), torch.randn(3, 4)
    with capture(model, ["a", "b"]) as store:
        out = model(x)
    assert torch.equal(store["b"], out)
    assert torch.equal(store["a"], model.a(model.lin_a(x)))


def test_an_inplace_op_downstream_would_corrupt_a_capture():
    """Why the models below must not use in-place ops: this is the trap, shown on a toy."""
    model, x = Chain(inplace_after_a=True), torch.randn(64, 4)
    with capture(model, ["a"]) as store:
        model(x)
    assert torch.equal(store["a"], 2 * model.a(model.lin_a(x)))  # the in-place op doubled what was captured


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_benchmark_models_have_no_inplace_modules(model_id):
    model = model_class(model_id)()
    offenders = [name for name, m in model.named_modules() if getattr(m, "inplace", False)]
    assert offenders == []
    for name in model.stage_names:
        assert isinstance(getattr(model, name), nn.Module), f"{model_id} has no hook point '{name}'"
