"""The harness end to end on real models and data: baselines, splicing, fitting, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import load_submission, write_submission

from benchmark.data.shakespeare import split_ids, windows
from benchmark.errors import UserError
from benchmark.harness.baseline import cache_file, load_or_compute
from benchmark.harness.context import prepare
from benchmark.harness.hooks import splice
from benchmark.harness.scoring import fit_submission
from benchmark.harness.session import score_folder
from benchmark.harness.submissions import TaskView, take_snapshot
from benchmark.models.shakespeare import ShakespeareChar
from benchmark.sandbox.limits import limits_for
from benchmark.sandbox.room import IsolatedSubmission
from benchmark.tasks import get_task

DIGITS_TASK = "digits-mlp/fc1:17"


@pytest.fixture(scope="module")
def digits(session_cache: Path):
    ctx = prepare(get_task(DIGITS_TASK))
    return ctx, load_or_compute(ctx)


def naive_losses(ctx, values_for_units) -> np.ndarray:
    """Reference: the whole model on every eval image with the units overwritten by a hook, one batch."""
    images = ctx.eval_set.load(ctx.eval_indices)
    labels = torch.as_tensor(ctx.eval_labels)
    with torch.no_grad(), splice(ctx.model, ctx.task.layer, ctx.task.units, values_for_units):
        logits = ctx.model.class_logits(ctx.model(images))
    return F.cross_entropy(logits.double(), labels, reduction="none").numpy()


def test_baseline_conditions_match_a_naive_full_forward(digits):
    ctx, baseline = digits
    n = len(ctx.eval_indices)
    with torch.no_grad():
        act = ctx.model.run(ctx.fit_set.load(ctx.fit_indices), until=ctx.task.layer)[:, list(ctx.task.units)]
    mean = act.mean(0)
    partner = baseline.arrays["resample_partner"]
    refs = {
        "clean": naive_losses(ctx, lambda o: o[:, list(ctx.task.units)]),
        "zero": naive_losses(ctx, lambda o: torch.zeros_like(o[:, list(ctx.task.units)])),
        "mean": naive_losses(ctx, lambda o: mean.expand(n, *mean.shape)),
        "resample": naive_losses(ctx, lambda o: act[torch.as_tensor(partner)]),
    }
    for condition, ref in refs.items():
        np.testing.assert_allclose(baseline.loss(condition), ref, rtol=1e-5, atol=1e-6, err_msg=condition)
    assert not np.allclose(refs["zero"], refs["clean"])  # the ablation does something on this task


def test_zero_submission_recovers_nothing_and_linear_everything(digits):
    ctx, baseline = digits
    zero = score_folder(ctx, baseline, "zero")
    np.testing.assert_array_equal(zero.arrays["loss.replaced"], zero.arrays["loss.zero"])
    assert zero.figures["primary"]["recovery"] == pytest.approx(0.0, abs=1e-12)
    linear = score_folder(ctx, baseline, "linear")
    assert linear.figures["primary"]["recovery"] > 0.99
    assert linear.figures["fidelity"][0]["r2"] > 0.999
    assert linear.fitted_parameters == 64 + 1 + 1  # weights + bias + kernel size


def test_mean_submission_equals_mean_ablation(digits):
    ctx, baseline = digits
    result = score_folder(ctx, baseline, "mean")
    np.testing.assert_allclose(result.arrays["loss.replaced"], result.arrays["loss.mean"], rtol=1e-5, atol=1e-6)


def test_linear_recovers_mlp_units_on_mnist(session_cache, data_dir):
    ctx = prepare(get_task("mnist-mlp/fc1:13"))
    result = score_folder(ctx, load_or_compute(ctx), "linear")
    assert result.figures["primary"]["defined"]
    assert result.figures["primary"]["recovery"] > 0.98
    assert result.fitted_parameters == 784 + 1 + 1


def linear_module():
    """The shipped `submissions/linear-text/replacement.py`, imported to call its fit and replace directly."""
    return load_submission("linear-text")


@pytest.mark.parametrize("target_shape", [(128, 3), (128, 1, 32)], ids=["neurons", "head"])
def test_linear_recovers_a_sequence_target_linear_in_its_features(data_dir, target_shape):
    """Text: rows are (window, position) pairs. A target that is exactly linear in the features at its position
    (a one-hot of the character there and the residual stream there), signed, so no ReLU, is recovered on unseen
    windows of real text through the real model's activations; the attention pattern is allowed and ignored."""
    linear = linear_module()
    torch.manual_seed(0)
    model = ShakespeareChar().eval()
    tokens = windows(split_ids("train", data_dir))[0][:400].long()
    seen = torch.zeros(65, dtype=torch.bool)
    seen[tokens[:200]] = True  # a character never seen in the fit windows has no fitted one-hot weight
    tokens = torch.cat([tokens[:200], tokens[200:][seen[tokens[200:]].all(1)][:20]])  # [220, 128]
    assert len(tokens) == 220
    names = ("hook_embed", "blocks_0_hook_resid_pre", "blocks_0_attn_hook_pattern")
    with torch.no_grad():
        inputs = {"tokens": tokens, **{n: model.run(tokens, until=n) for n in names}}
    generator = torch.Generator().manual_seed(1)
    n_out = int(np.prod(target_shape[1:]))
    by_char, by_resid = torch.randn(65, n_out, generator=generator), torch.randn(128, n_out, generator=generator)
    target = (by_char[tokens] + inputs["blocks_0_hook_resid_pre"] @ by_resid * 30 + 0.5).reshape(220, *target_shape)
    assert (target < 0).float().mean() > 0.2  # a ReLU would show
    task = TaskView("shakespeare-char/test", "shakespeare-char", "blocks_1_mlp_hook_post", tuple(range(3)),
                    ("tokens", *names), target_shape)
    params = linear.fit(target[:200], task, **{n: x[:200] for n, x in inputs.items()})
    assert set(params) == {"weight"} and params["weight"].shape == (n_out, 65 + 128 + 128 + 1)
    replaced = linear.replace(params, task, **{n: x[200:] for n, x in inputs.items()})
    assert replaced.shape == (20, *target_shape)
    torch.testing.assert_close(replaced, target[200:], rtol=0, atol=1e-3 * float(target.abs().max()))
    longer = {**inputs, "other": torch.zeros(220, 129, 8)}
    with pytest.raises(ValueError, match=r"input 'other' has shape \(220, 129, 8\); a sequence target of 128"):
        linear.fit(target, task, **longer)
    with pytest.raises(ValueError, match="is not a sequence target"):
        linear.fit(target, task, blocks_0_attn_hook_pattern=inputs["blocks_0_attn_hook_pattern"])


def test_fit_sees_only_the_fit_set(digits, tmp_path):
    """What fit() saw, sent back as its params (the only way out of its child)."""
    ctx, baseline = digits
    code = """
import torch
def fit(image, target):
    return {"n": image.shape[0], "sum": image.double().sum(), "t": torch.tensor(target.shape)}
def replace(image, params, task):
    return torch.zeros((image.shape[0], *task.target_shape))
"""
    snapshot = take_snapshot(str(write_submission(tmp_path / "spy", code)))
    with IsolatedSubmission(snapshot, limits_for("digits")) as room:
        room.load(ctx.task)
        seen = fit_submission(ctx, room)
    snapshot.cleanup()
    fit_images = ctx.fit_set.load(ctx.fit_indices).double()
    assert int(seen["n"]) == len(ctx.fit_indices)
    assert float(seen["sum"]) == pytest.approx(float(fit_images.sum()), rel=1e-6)
    assert seen["t"].tolist() == [len(ctx.fit_indices), 1]
    assert float(seen["sum"]) != pytest.approx(float(ctx.eval_set.load(ctx.eval_indices).double().sum()), rel=1e-4)


def test_baseline_cache_is_reused_and_keyed_by_task_version(digits):
    ctx, _ = digits
    again = load_or_compute(ctx)
    assert again.from_cache and again.cache_path == cache_file(ctx)
    import dataclasses

    bumped = prepare(dataclasses.replace(ctx.task, version=ctx.task.version + 1))
    assert cache_file(bumped) != cache_file(ctx)


def test_eval_and_fit_sets_are_disjoint_on_a_shared_split(session_cache):
    """When the eval and fit sets come from one split (ImageNet val), they never overlap."""
    import dataclasses

    from benchmark.harness.context import _splits

    task = dataclasses.replace(get_task(DIGITS_TASK), dataset="imagenet", fit_split="test", eval_size=300, fit_size=200)
    from benchmark.data.digits import open_digits

    split = open_digits("test")
    eval_idx, fit_idx = _splits(task, split, split, task.eval_size, task.fit_size)
    assert len(eval_idx) == 300 and len(fit_idx) == 200
    assert not set(eval_idx) & set(fit_idx)


@pytest.mark.parametrize(
    "code, message",
    [
        ("def replace(conv9):\n    return conv9\n", "not an input task"),
        ("def replace(imag):\n    return imag\n", "Did you mean 'image'"),
        ("def replace(image, params):\n    return image\n", "defines no fit"),
        ("def replace(*xs):\n    return xs[0]\n", "not supported"),
    ],
)
def test_bad_signatures_are_refused(digits, tmp_path, code, message):
    ctx, baseline = digits
    with pytest.raises(UserError, match=message):
        score_folder(ctx, baseline, str(write_submission(tmp_path / "bad", code)))


def test_unknown_task_suggests_the_closest():
    with pytest.raises(UserError, match="Did you mean 'digits-mlp/fc1:17'"):
        get_task("digit-mlp/fc1:17")
