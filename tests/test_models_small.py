"""The small reference models: hook-point names, per-stage shapes, staged runs, and architecture."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.harness.hooks import capture, splice
from benchmark.models.digits import DigitsMLP
from benchmark.models.mnist import MnistCNN, MnistMLP

# per-example shapes as the design specifies them
SPEC = {
    DigitsMLP: ((1, 8, 8), {"fc1": (64,), "fc2": (32,), "logits": (10,)}),
    MnistMLP: ((1, 28, 28), {"fc1": (256,), "fc2": (128,), "logits": (10,)}),
    MnistCNN: ((1, 28, 28), {"conv1": (32, 28, 28), "conv2": (64, 14, 14), "fc1": (128,), "logits": (10,)}),
}
MODELS = list(SPEC)


def _model(cls) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def _input(cls, batch: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, *SPEC[cls][0], generator=gen)


@pytest.mark.parametrize("cls", MODELS)
def test_stage_names_and_shapes(cls):
    model, x = _model(cls), _input(cls)
    shapes = SPEC[cls][1]
    assert model.stage_names == tuple(shapes)
    assert model.stage_shapes == shapes and model.input_shape == SPEC[cls][0]
    h = x
    for name in model.stage_names:
        h = model.run_stage(name, h)
        assert tuple(h.shape) == (5, *shapes[name]), name


@pytest.mark.parametrize("cls", MODELS)
def test_hook_points(cls):
    model = _model(cls)
    for name in model.stage_names[:-1]:
        module = getattr(model, name)
        assert type(module) is nn.ReLU and not module.inplace
        assert list(module.parameters()) == []
    assert type(model.logits) is nn.Identity
    # parameter modules carry suffixed names, never the bare activation name
    for key in model.state_dict():
        assert key.split(".")[0] not in model.stage_names


@pytest.mark.parametrize("cls", MODELS)
def test_capture_sees_each_stage(cls):
    model, x = _model(cls), _input(cls)
    with torch.no_grad(), capture(model, model.stage_names) as acts:
        logits = model(x)
    assert torch.equal(acts["logits"], logits)
    for name in model.stage_names:
        assert torch.equal(acts[name], model.run(x, until=name))


@pytest.mark.parametrize("cls", MODELS)
def test_run_composes_exactly(cls):
    model, x = _model(cls), _input(cls)
    with torch.no_grad():
        full = model(x)
        points = [None, *model.stage_names]
        for i, a in enumerate(points):
            for b in points[i + 1 :]:
                head = model.run(x, until=a) if a is not None else x
                middle = model.run(head, after=a, until=b)
                assert torch.equal(middle, model.run(x, until=b)), (a, b)
                assert torch.equal(model.run(middle, after=b), full), (a, b)


@pytest.mark.parametrize("cls", MODELS)
def test_splice_changes_only_downstream(cls):
    model, x = _model(cls), _input(cls)
    first = model.stage_names[0]
    with torch.no_grad():
        clean = {name: model.run(x, until=name) for name in model.stage_names}
        with splice(model, first, [0, 3], lambda orig: torch.full_like(orig[:, :2], 7.0)), capture(model, [first]) as acts:
            logits = model(x)
    assert torch.all(acts[first][:, [0, 3]] == 7.0)
    keep = [c for c in range(acts[first].shape[1]) if c not in (0, 3)]
    assert torch.equal(acts[first][:, keep], clean[first][:, keep])
    assert not torch.equal(logits, clean["logits"])


def test_mlp_matches_functional():
    for cls in (DigitsMLP, MnistMLP):
        model, x = _model(cls), _input(cls)
        p = dict(model.named_parameters())
        h = F.relu(x.flatten(1) @ p["fc1_linear.weight"].T + p["fc1_linear.bias"])
        h = F.relu(h @ p["fc2_linear.weight"].T + p["fc2_linear.bias"])
        out = h @ p["logits_linear.weight"].T + p["logits_linear.bias"]
        torch.testing.assert_close(model(x), out)


def test_cnn_matches_functional():
    model, x = _model(MnistCNN), _input(MnistCNN)
    p = dict(model.named_parameters())
    h = F.relu(F.conv2d(x, p["conv1_conv.weight"], p["conv1_conv.bias"], padding=1))  # [b, 32, 28, 28]
    h = F.relu(F.conv2d(F.max_pool2d(h, 2), p["conv2_conv.weight"], p["conv2_conv.bias"], padding=1))  # [b, 64, 14, 14]
    h = F.relu(F.linear(F.max_pool2d(h, 2).flatten(1), p["fc1_linear.weight"], p["fc1_linear.bias"]))  # [b, 128]
    out = F.linear(h, p["logits_linear.weight"], p["logits_linear.bias"])
    torch.testing.assert_close(model(x), out)


@pytest.mark.parametrize(
    "cls,count",
    [
        (DigitsMLP, 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10),
        (MnistMLP, 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10),
        (MnistCNN, 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 128 * 10 + 10),
    ],
)
def test_parameter_count(cls, count):
    assert sum(p.numel() for p in cls().parameters()) == count


def test_unknown_stage():
    with pytest.raises(KeyError):
        MnistCNN().run_stage("conv3", torch.zeros(1, 1, 28, 28))
