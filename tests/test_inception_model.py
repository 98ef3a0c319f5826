"""InceptionV1: state-dict layout, TF 'SAME' padding, stages, hook points, the 5x5 branch of mixed3b."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_inception import imagenet_sample_dir, random_model, random_state_dict  # noqa: E402

from benchmark.harness.hooks import capture, splice  # noqa: E402
from benchmark.models.inception import (  # noqa: E402
    STAGE_SHAPES,
    InceptionV1,
    SameMaxPool2d,
    same_padding,
)

# Transcribed from lucent's InceptionV1 (ProGamerGov's inception5h conversion):
# block -> (1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool_reduce); inputs follow from the concat sums.
LUCENT_BLOCKS = {
    "mixed3a": (64, 96, 128, 16, 32, 32),
    "mixed3b": (128, 128, 192, 32, 96, 64),
    "mixed4a": (192, 96, 204, 16, 48, 64),
    "mixed4b": (160, 112, 224, 24, 64, 64),
    "mixed4c": (128, 128, 256, 24, 64, 64),
    "mixed4d": (112, 144, 288, 32, 64, 64),
    "mixed4e": (256, 160, 320, 32, 128, 128),
    "mixed5a": (256, 160, 320, 48, 128, 128),
    "mixed5b": (384, 192, 384, 48, 128, 128),
}
CURVE_UNITS = (379, 406, 385, 343, 342, 388, 324, 340, 330, 349)


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{name}_pre_relu_conv.weight"] = (cout, cin, k, k)
        shapes[f"{name}_pre_relu_conv.bias"] = (cout,)

    conv("conv2d0", 3, 64, 7)
    conv("conv2d1", 64, 64, 1)
    conv("conv2d2", 64, 192, 3)
    cin = 192
    for block, (c1, c3r, c3, c5r, c5, cp) in LUCENT_BLOCKS.items():
        conv(f"{block}_1x1", cin, c1, 1)
        conv(f"{block}_3x3_bottleneck", cin, c3r, 1)
        conv(f"{block}_3x3", c3r, c3, 3)
        conv(f"{block}_5x5_bottleneck", cin, c5r, 1)
        conv(f"{block}_5x5", c5r, c5, 5)
        conv(f"{block}_pool_reduce", cin, cp, 1)
        cin = c1 + c3 + c5 + cp
    shapes["softmax2_pre_activation_matmul.weight"] = (1008, cin)
    shapes["softmax2_pre_activation_matmul.bias"] = (1008,)
    return shapes


def test_state_dict_matches_inception5h_layout() -> None:
    model = InceptionV1()
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == expected_state_shapes()
    assert len(actual) == 116
    # strict loading of a file with exactly these keys works; an extra (aux-head) key is rejected
    model.load_state_dict(random_state_dict(1), strict=True)
    extra = dict(random_state_dict(1), **{"head0_bottleneck_pre_relu_conv.weight": torch.zeros(128, 508, 1, 1)})
    with pytest.raises(RuntimeError, match="head0_bottleneck"):
        model.load_state_dict(extra, strict=True)


def test_stage_names_and_hook_modules() -> None:
    model = InceptionV1()
    assert model.stage_names == tuple(STAGE_SHAPES)
    assert model.stage_names[-1] == "logits"
    for name in ("conv2d0", "conv2d1", "conv2d2"):
        module = getattr(model, name)
        assert isinstance(module, torch.nn.ReLU) and not module.inplace
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            assert not module.inplace


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    # TF 'SAME': out = ceil(n/s), total = max((out-1)*s + k - n, 0), before = total // 2 (computed by hand)
    [(224, 7, 2, (2, 3)), (112, 3, 2, (0, 1)), (56, 3, 2, (0, 1)), (28, 3, 1, (1, 1)), (28, 5, 1, (2, 2)),
     (14, 1, 1, (0, 0)), (7, 3, 2, (1, 1)), (225, 7, 2, (3, 3)), (5, 7, 2, (3, 3))],
)  # fmt: skip
def test_same_padding_table(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected


def tf_same_maxpool_reference(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TF SAME max pool as a loop: windows start at i*s - pad_before; out-of-range cells are ignored."""
    _, _, h, w = x.shape
    oh, ow = math.ceil(h / s), math.ceil(w / s)
    pt = max((oh - 1) * s + k - h, 0) // 2
    pl = max((ow - 1) * s + k - w, 0) // 2
    out = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - pt, j * s - pl
            window = x[:, :, max(r0, 0) : r0 + k, max(c0, 0) : c0 + k]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


@pytest.mark.parametrize("size, stride", [(8, 2), (7, 2), (6, 1)])
def test_same_maxpool_matches_tf(size: int, stride: int) -> None:
    x = torch.randn(2, 3, size, size) - 5.0  # all negative: zero padding would be visible
    expected = tf_same_maxpool_reference(x.numpy(), 3, stride)
    np.testing.assert_array_equal(SameMaxPool2d(3, stride)(x).numpy(), expected)


def reference_forward(state: dict[str, torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
    """A lucent-style forward with fixed 224-input pads, written with functional ops from the state dict.

    Differs from lucent only in the LRN: TF's (radius 5, bias 2, alpha 1e-4 on the plain sum), i.e.
    PyTorch's LRN with size 11 and alpha 11e-4.
    """

    def conv(x: torch.Tensor, name: str, pad: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        if pad is not None:
            x = F.pad(x, pad)
        stride = 2 if name == "conv2d0" else 1
        return F.conv2d(x, state[f"{name}_pre_relu_conv.weight"], state[f"{name}_pre_relu_conv.bias"], stride=stride)

    def maxpool(x: torch.Tensor, pad: tuple[int, int, int, int], stride: int) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, pad, value=float("-inf")), 3, stride)

    def lrn(x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(x, size=11, alpha=11e-4, beta=0.5, k=2.0)

    acts = {}
    x = F.relu(conv(image, "conv2d0", (2, 3, 2, 3)))
    acts["conv2d0"] = x
    x = F.relu(conv(lrn(maxpool(x, (0, 1, 0, 1), 2)), "conv2d1"))
    acts["conv2d1"] = x
    x = F.relu(conv(x, "conv2d2", (1, 1, 1, 1)))
    acts["conv2d2"] = x
    x = maxpool(lrn(x), (0, 1, 0, 1), 2)
    for block in LUCENT_BLOCKS:
        if block in ("mixed4a", "mixed5a"):
            x = maxpool(x, (0, 1, 0, 1), 2)
        b1 = F.relu(conv(x, f"{block}_1x1"))
        b3 = F.relu(conv(F.relu(conv(x, f"{block}_3x3_bottleneck")), f"{block}_3x3", (1, 1, 1, 1)))
        b5 = F.relu(conv(F.relu(conv(x, f"{block}_5x5_bottleneck")), f"{block}_5x5", (2, 2, 2, 2)))
        bp = F.relu(conv(maxpool(x, (1, 1, 1, 1), 1), f"{block}_pool_reduce"))
        x = torch.cat([b1, b3, b5, bp], 1)
        acts[block] = x
    pooled = F.avg_pool2d(x, 7).reshape(-1, 1024)
    acts["logits"] = F.linear(pooled, state["softmax2_pre_activation_matmul.weight"], state["softmax2_pre_activation_matmul.bias"])
    return acts


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 224, 224, generator=generator) * 255.0 - 117.0  # [2, 3, 224, 224]


@pytest.fixture(scope="module")
def activations(images: torch.Tensor) -> dict[str, torch.Tensor]:
    model = random_model(0)
    with torch.no_grad(), capture(model, model.stage_names) as acts:
        model(images)
        return dict(acts)


def test_stage_shapes_and_reference_forward(images: torch.Tensor, activations: dict[str, torch.Tensor]) -> None:
    reference = reference_forward(random_state_dict(0), images)
    for name in InceptionV1.stage_names:
        act = activations[name]
        assert tuple(act.shape) == (2,) + STAGE_SHAPES[name], name
        assert torch.isfinite(act).all(), name
        if name != "logits":
            assert (act > 0).float().mean() > 0.01, f"{name} is dead with the random weights"
        torch.testing.assert_close(act, reference[name], rtol=1e-4, atol=1e-4 * float(reference[name].abs().max()))


def test_run_after_until_composes(images: torch.Tensor, activations: dict[str, torch.Tensor]) -> None:
    model = random_model(0)
    with torch.no_grad():
        mixed3b = model.run(images, until="mixed3b")
        logits = model.run(mixed3b, after="mixed3b")
        mixed4a = model.run(activations["mixed3b"], after="mixed3b", until="mixed4a")
    torch.testing.assert_close(mixed3b, activations["mixed3b"])
    torch.testing.assert_close(logits, activations["logits"])
    torch.testing.assert_close(mixed4a, activations["mixed4a"])


def test_class_logits_drops_dummy_and_unused_outputs() -> None:
    logits = torch.arange(2 * 1008, dtype=torch.float32).reshape(2, 1008)
    classes = InceptionV1().class_logits(logits)
    assert classes.shape == (2, 1000)
    for i in (1, 2, 500, 1000):  # output i is class i - 1
        assert torch.equal(classes[:, i - 1], logits[:, i])


def test_mixed3b_5x5_branch_holds_the_curve_units(activations: dict[str, torch.Tensor]) -> None:
    """Raising the 5x5 conv's bias changes exactly concat channels 320..415 of mixed3b."""
    model = InceptionV1()
    model.load_state_dict(random_state_dict(0))
    model.eval()
    mixed3a = activations["mixed3a"]
    with torch.no_grad():
        before = model.run_stage("mixed3b", mixed3a)
        model.mixed3b_5x5_pre_relu_conv.bias.add_(10.0 * float(before.abs().max()))
        after = model.run_stage("mixed3b", mixed3a)
    changed = {int(c) for c in torch.nonzero((after - before).abs().amax(dim=(0, 2, 3)) > 0).flatten()}
    assert changed == set(range(320, 416))
    assert set(CURVE_UNITS) <= changed


def test_splice_on_a_mixed_layer_reaches_the_logits(activations: dict[str, torch.Tensor]) -> None:
    model = random_model(0)
    units = [379, 406]
    with torch.no_grad(), splice(model, "mixed3b", units, lambda out: torch.zeros_like(out[:, units])):
        with capture(model, ["mixed3b"]) as seen:  # registered after the splice: sees the spliced output
            ablated = model.run(activations["mixed3a"], after="mixed3a")
    assert torch.equal(seen["mixed3b"][:, units], torch.zeros(2, 2, 28, 28))
    assert torch.equal(seen["mixed3b"][:, 380:400], activations["mixed3b"][:, 380:400])
    assert activations["mixed3b"][:, units].abs().sum() > 0
    assert not torch.allclose(ablated, activations["logits"])
    with torch.no_grad():  # hooks are gone afterwards
        torch.testing.assert_close(model.run(activations["mixed3a"], after="mixed3a"), activations["logits"])


@pytest.mark.slow
def test_end_to_end_on_real_sample_images() -> None:
    """Random weights on 8 real sample images: every stage has the documented shape, logits finite."""
    from benchmark.data.imagenet import ImageNetFolder, load_label_map

    sample = imagenet_sample_dir()
    data_dir = sample.parent
    dataset = ImageNetFolder(sample, data_dir=data_dir)
    indices = np.linspace(0, len(dataset) - 1, 8).astype(int)
    batch = dataset.load(indices)  # [8, 3, 224, 224]
    model = random_model(0)
    start = time.perf_counter()
    with torch.no_grad(), capture(model, model.stage_names) as acts:
        logits = model(batch)
    elapsed = time.perf_counter() - start
    for name in model.stage_names:
        assert tuple(acts[name].shape) == (8,) + STAGE_SHAPES[name]
    assert torch.isfinite(logits).all() and logits.std() > 0
    probs = torch.softmax(model.class_logits(logits), dim=1)
    assert probs.shape == (8, len(load_label_map(data_dir)))
    print(f"InceptionV1 forward, batch 8: {elapsed:.2f} s ({8 / elapsed:.1f} images/s)")
