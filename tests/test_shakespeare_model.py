"""shakespeare-char: the fused and the staged forwards, resuming from every stage, the stages' shapes, the causal
mask, the hook points, the unit axes, and the parameter count by hand.

The checks run on a randomly initialised model (`torch.manual_seed(0)`) and, once it is committed, on the trained
checkpoint too; the inputs are real windows of the validation text."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.models.shakespeare import ShakespeareChar
from benchmark.paths import PROJECT_ROOT

CHECKPOINT = PROJECT_ROOT / "checkpoints" / "shakespeare-char.safetensors"
b, T, d, H, e, m, V = 3, 128, 128, 4, 32, 512, 65
PER_LAYER = {"hook_resid_pre": (T, d), "ln1_hook_normalized": (T, d), "attn_hook_pattern": (H, T, T),
             "attn_hook_z": (T, H, e), "hook_resid_mid": (T, d), "ln2_hook_normalized": (T, d),
             "mlp_hook_pre": (T, m), "mlp_hook_post": (T, m), "hook_resid_post": (T, d)}
SHAPES = {"hook_embed": (T, d), **{f"blocks_{l}_{s}": shape for l in (0, 1) for s, shape in PER_LAYER.items()},
          "ln_final_hook_normalized": (T, d), "logits": (T, V)}


def _random() -> ShakespeareChar:
    torch.manual_seed(0)
    return ShakespeareChar().eval()


def _committed() -> ShakespeareChar:
    from benchmark.models.registry import load_model

    if not CHECKPOINT.is_file():
        pytest.skip(f"{CHECKPOINT.name} is not committed yet")
    return load_model("shakespeare-char", str(CHECKPOINT))[0]


MODELS = {"random": _random, "committed": _committed}


@pytest.fixture(scope="module")
def windows() -> torch.Tensor:
    """The first b windows of the validation text  # [b, T] int64"""
    from benchmark.data.shakespeare import open_split

    root = os.environ.get("REPLACEBENCH_DATA")
    if not root or not (Path(root) / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip("REPLACEBENCH_DATA/tinyshakespeare/input.txt is missing: run `replacebench fetch tinyshakespeare`")
    return open_split("val", root).inputs[:b]


@contextlib.contextmanager
def replacing(module: nn.Module, change: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """A forward hook on `module` that returns `change(output)` in place of its output, removed on exit."""
    handle = module.register_forward_hook(lambda _module, _inputs, output: change(output))
    try:
        yield
    finally:
        handle.remove()


def _change(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * t + 0.25


@pytest.mark.parametrize("which", sorted(MODELS))
def test_forward_and_run_agree_on_real_windows(which, windows):
    model = MODELS[which]()
    with torch.no_grad():
        fused, staged = model(windows), model.run(windows)
    assert fused.shape == staged.shape == (b, T, V)
    assert (fused - staged).abs().max().item() < 1e-5 * max(1.0, fused.abs().max().item())
    # and on a shorter context (positions are learned up to 128)
    with torch.no_grad():
        short_fused, short_staged = model(windows[:, :17]), model.run(windows[:, :17])
    assert short_staged.shape == (b, 17, V)
    assert (short_fused - short_staged).abs().max().item() < 1e-5 * max(1.0, short_fused.abs().max().item())


@pytest.mark.parametrize("which", sorted(MODELS))
def test_resuming_after_every_stage_reproduces_every_later_stage_exactly(which, windows):
    """`run(x, until=a, carry=c)` then `run(·, after=a, until=z, carry=dict(c))` is bit for bit `run(x, until=z)`,
    for every pair of stages a < z (and from the tokens); the copy of the carry the resumed run gets is not needed
    again, and the first run's carry holds exactly the carried stages up to a."""
    model = MODELS[which]()
    x = windows[:2, :40]
    with torch.no_grad():
        clean = {name: model.run(x, until=name) for name in model.stage_names}
        for i, a in enumerate(model.stage_names):
            carry: dict[str, torch.Tensor] = {}
            head = model.run(x, until=a, carry=carry)
            assert torch.equal(head, clean[a]), a
            assert set(carry) == {c for c in model.carried if model.stage_index(c) <= i}, a
            for z in model.stage_names[i + 1 :]:
                assert torch.equal(model.run(head, after=a, until=z, carry=dict(carry)), clean[z]), (a, z)


def test_a_stage_that_reads_the_carry_says_so_without_it():
    with pytest.raises(AssertionError, match="reads carried activations"):
        _random().run_stage("blocks_0_attn_hook_z", torch.zeros(1, H, 5, 5))


def test_stage_shapes(windows):
    model = _random()
    assert model.stage_names == tuple(SHAPES) and len(model.stage_names) == 21
    assert model.input_name == "tokens" and model.stage_names[-1] == "logits"
    assert set(model.carried) == {f"blocks_{l}_{s}" for l in (0, 1)
                                  for s in ("hook_resid_pre", "ln1_hook_normalized", "hook_resid_mid")}
    carry: dict[str, torch.Tensor] = {}
    h = windows
    with torch.no_grad():
        for name in model.stage_names:
            h = model.run_stage(name, h, carry)
            if name in model.carried:
                carry[name] = h
            assert tuple(h.shape) == (b, *SHAPES[name]), name
            assert h.dtype == torch.float32, name


def test_patterns_are_causal_distributions(windows):
    model = _random()
    with torch.no_grad():
        for layer in (0, 1):
            pattern = model.run(windows, until=f"blocks_{layer}_attn_hook_pattern")  # [b, H, T, T]
            assert torch.all(pattern.triu(1) == 0)  # a query never attends to a later key
            torch.testing.assert_close(pattern.sum(-1), torch.ones(b, H, T))


@pytest.mark.parametrize("which", sorted(MODELS))
def test_changing_a_later_token_never_changes_an_earlier_position(which, windows):
    model = MODELS[which]()
    with torch.no_grad():  # the unedited windows' outputs and stages, computed once for every j
        clean = {forward: forward(windows) for forward in (model, model.run)}
        clean_stages = {name: model.run(windows, until=name) for name in model.stage_names}
    for j in (1, 50, 127):
        edited = windows.clone()
        edited[:, j] = (edited[:, j] + 7) % V
        with torch.no_grad():
            for forward in (model, model.run):
                before, after = clean[forward], forward(edited)
                assert torch.equal(before[:, :j], after[:, :j]), j  # bit for bit: the masked keys weigh exactly 0
                assert not torch.allclose(before[:, j], after[:, j]), j
            # and at every stage, the earlier positions (queries, for a pattern; the position axis is 1 elsewhere)
            for name in model.stage_names:
                x, y = clean_stages[name], model.run(edited, until=name)
                early = (slice(None), slice(None), slice(0, j)) if name.endswith("pattern") else (slice(None), slice(0, j))
                assert torch.equal(x[early], y[early]), (j, name)


def test_every_hook_point_is_an_identity_that_can_replace_its_activation(windows):
    """A forward hook on `getattr(model, name)` sees exactly activation `name` and what it returns is what every
    later stage reads: the hooked `run` equals resuming after `name` from the changed activation."""
    model, x = _random(), windows[:2, :32]
    with torch.no_grad():
        clean = model.run(x)
        for name in model.stage_names:
            hook = getattr(model, name)
            assert type(hook) is nn.Identity and list(hook.parameters()) == [], name
            carry: dict[str, torch.Tensor] = {}
            activation = model.run(x, until=name, carry=carry)
            expected = model.run(_change(activation), after=name, carry=dict(carry))
            seen: list[torch.Tensor] = []
            with replacing(hook, lambda out: (seen.append(out), _change(out))[1]):
                hooked = model.run(x)
            assert len(seen) == 1 and torch.equal(seen[0], activation), name
            assert torch.equal(hooked, expected), name
            assert not torch.allclose(hooked, clean), name  # the replacement reached the logits
            assert torch.equal(model.run(x), clean), name  # and the hook is gone
    # parameters never sit under a stage's name
    for key in model.state_dict():
        assert key.split(".")[0] not in model.stage_names


def test_unit_axes(windows):
    """A neuron is the last axis of every stage but the heads' (axis 2 of z `# [b, T, H, e]`: a head with its e
    values is one unit) and the patterns' (axis 1 of `# [b, H, T, T]`)."""
    model = _random()
    assert set(model.unit_axes) == set(model.stage_names)
    units = {"hook_embed": d, "ln_final_hook_normalized": d, "logits": V,
             **{f"blocks_{l}_{s}": n for l in (0, 1)
                for s, n in {**{k: d for k in PER_LAYER}, "attn_hook_pattern": H, "attn_hook_z": H,
                             "mlp_hook_pre": m, "mlp_hook_post": m}.items()}}
    with torch.no_grad():
        for name in model.stage_names:
            axis = model.unit_axes[name]
            assert axis == (2 if name.endswith("attn_hook_z") else 1 if name.endswith("attn_hook_pattern") else -1)
            assert model.run(windows, until=name).shape[axis] == units[name], name


def test_parameter_count_by_hand():
    """Embeddings V·d + positions 128·d; per layer two LayerNorms (2·2d), W_Q W_K W_V (3·H·d·e) and their biases
    (3·H·e), W_O (H·e·d) and b_O (d), W_in (d·m) and b_in (m), W_out (m·d) and b_out (d); the final LayerNorm (2d),
    W_U (d·V) and b_U (V)."""
    layer = 2 * 2 * d + 3 * H * d * e + 3 * H * e + H * e * d + d + d * m + m + m * d + d
    assert layer == 198_272
    total = V * d + 128 * d + 2 * layer + 2 * d + d * V + V
    assert total == 429_889
    model = _random()
    assert sum(p.numel() for p in model.parameters()) == total
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["W_E"] == (V, d) and shapes["W_pos"] == (128, d) and shapes["W_U"] == (d, V)
    assert shapes["blocks.1.W_Q"] == (H, d, e) and shapes["blocks.1.W_O"] == (H, e, d)
    assert shapes["blocks.0.W_in"] == (d, m) and shapes["blocks.0.W_out"] == (m, d)
    assert not any(isinstance(module, (nn.Linear, nn.LayerNorm, nn.Dropout)) for module in model.modules())
