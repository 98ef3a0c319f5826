"""The training recipe: determinism, the committed checkpoints, their accuracy, and loading."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import assert_matches_committed
from safetensors.torch import load_file

from benchmark import zoo
from benchmark.errors import UserError
from benchmark.maintainer import train as tr
from benchmark.models.digits import DigitsMLP
from benchmark.models.mnist import MnistCNN, MnistMLP

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
TARGETS = {"mnist-mlp": 0.98, "mnist-cnn": 0.99}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not os.environ.get("REPLACEBENCH_DATA"):
        pytest.skip("REPLACEBENCH_DATA is not set: point it at the shared data directory to run the MNIST checks")
    return Path(os.environ["REPLACEBENCH_DATA"])


def test_registry():
    assert zoo.trainable() == ["digits-mlp", "mnist-mlp", "mnist-cnn", "modadd-p113", "shakespeare-char"]
    assert type(tr.build_model("digits-mlp")) is DigitsMLP
    assert type(tr.build_model("mnist-mlp")) is MnistMLP
    assert type(tr.build_model("mnist-cnn")) is MnistCNN


def test_unknown_model_suggests():
    with pytest.raises(UserError, match="Did you mean 'mnist-cnn'"):
        tr.build_model("mnist-cn")
    with pytest.raises(UserError, match="unknown model"):
        tr.train("resnet50")
    with pytest.raises(UserError, match="inceptionv1 is not trained here.*replacebench fetch inceptionv1"):
        tr.build_model("inceptionv1")


def test_digits_training_is_bit_reproducible(tmp_path):
    torch.manual_seed(123)
    rng_before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    first = tr.train("digits-mlp", out_dir=tmp_path / "a")
    second = tr.train("digits-mlp", out_dir=tmp_path / "b")
    # training leaves global state as it found it
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    # bit-identical weights run to run, and the committed checkpoint's (to float rounding across CPUs)
    a, b = load_file(str(first.path)), load_file(str(second.path))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert first.sha256 == second.sha256 == _sha(first.path) == _sha(second.path)
    assert_matches_committed(first.path, CHECKPOINTS / "digits-mlp.safetensors")
    assert first.test_accuracy == second.test_accuracy and first.epochs == zoo.MODELS["digits-mlp"].recipe.epochs
    assert first.test_accuracy > 0.95
    # the JSON beside the weights
    meta = json.loads((tmp_path / "a" / "digits-mlp.json").read_text())
    assert meta["sha256"] == first.sha256 and meta["weights"] == "digits-mlp.safetensors"
    assert meta["recipe"]["epochs"] == zoo.MODELS["digits-mlp"].recipe.epochs and meta["recipe"]["seed"] == 0
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["test_accuracy"] == first.test_accuracy and meta["test_loss"] == first.test_loss


def test_train_restores_deterministic_flag(tmp_path):
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        tr.train("digits-mlp", out_dir=tmp_path)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def _independent_eval(model, images, labels) -> tuple[float, float]:
    correct, losses = 0, []
    with torch.no_grad():
        for start in range(0, len(labels), 500):
            logits = model(images[start : start + 500])
            y = labels[start : start + 500]
            correct += int((logits.argmax(1) == y).sum())
            losses.append(-torch.log_softmax(logits.double(), 1).gather(1, y[:, None]).squeeze(1))
    return correct / len(labels), torch.cat(losses).mean().item()


def test_committed_digits_checkpoint():
    from benchmark.data.digits import open_digits

    model = tr.load_trained("digits-mlp", CHECKPOINTS)
    test = open_digits("test")
    acc, loss = _independent_eval(model, test.inputs, torch.as_tensor(test.labels()))
    meta = json.loads((CHECKPOINTS / "digits-mlp.json").read_text())
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-12) and loss == pytest.approx(meta["test_loss"], rel=1e-5)
    assert acc > 0.95


@pytest.mark.parametrize("model_id", ["mnist-mlp", "mnist-cnn"])
def test_committed_mnist_checkpoints_reach_targets(data_dir, model_id):
    from benchmark.data.mnist import open_mnist

    model = tr.load_trained(model_id, CHECKPOINTS)
    assert not model.training
    test = open_mnist("test", data_dir)
    acc, loss = _independent_eval(model, test.inputs, torch.as_tensor(test.labels()))
    assert acc >= TARGETS[model_id]
    meta = json.loads((CHECKPOINTS / f"{model_id}.json").read_text())
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-12) and loss == pytest.approx(meta["test_loss"], rel=1e-5)
    assert meta["data"]["test"] == test.content_hash()


def test_load_trained_refuses_tampered_weights(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(CHECKPOINTS / f"digits-mlp{suffix}", tmp_path / f"digits-mlp{suffix}")
    good = tr.load_trained("digits-mlp", tmp_path)
    path = tmp_path / "digits-mlp.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # flip a bit in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        tr.load_trained("digits-mlp", tmp_path)
    assert isinstance(good, DigitsMLP)


def test_load_trained_missing(tmp_path):
    with pytest.raises(UserError, match="replacebench train mnist-cnn"):
        tr.load_trained("mnist-cnn", tmp_path)


@pytest.mark.slow
def test_mnist_mlp_training_reproduces_committed(data_dir, tmp_path):
    """Over 15 epochs of SGD, float rounding that differs between CPUs grows (0.04 in a weight from this AMD EPYC
    to the machine that made the checkpoint), so the reproduction is functional: the same accuracy to ±0.3 points
    and the same prediction on ≥ 99% of the test images."""
    result = tr.train("mnist-mlp", data_dir=data_dir, out_dir=tmp_path)
    from benchmark.data.mnist import open_mnist

    test = open_mnist("test", data_dir)
    images, labels = test.load(range(len(test))), torch.as_tensor(test.labels())
    with torch.no_grad():
        ours = model_logits(tr.load_trained("mnist-mlp", tmp_path), images).argmax(1)
        committed = model_logits(tr.load_trained("mnist-mlp", CHECKPOINTS), images).argmax(1)
    committed_accuracy = json.loads((CHECKPOINTS / "mnist-mlp.json").read_text())["test_accuracy"]
    assert abs(result.test_accuracy - committed_accuracy) <= 0.003
    assert (ours == committed).float().mean() >= 0.99
    assert (committed == labels).double().mean().item() == pytest.approx(committed_accuracy, abs=1e-9)
    assert result.test_accuracy >= TARGETS["mnist-mlp"]


def model_logits(model, images: torch.Tensor) -> torch.Tensor:
    return model.class_logits(model(images))


def test_train_prints_test_accuracy_or_validation_nats_per_character(tmp_path):
    """A classifier reports its test split; the character model its `val` split in nats per character (which
    `TrainResult` carries in its test_* fields)."""
    from benchmark.cli import train_summary

    result = tr.TrainResult(tmp_path / "m.safetensors", "ab" * 32, 0.5512, 1.48761, 7000, 1234.4)
    assert train_summary("shakespeare-char", result) == (
        f"trained shakespeare-char: val loss 1.4876 nats/char, val accuracy 55.12%, 1234 s; "
        f"wrote {tmp_path / 'm.safetensors'} (sha256 {'ab' * 32})")
    assert train_summary("mnist-mlp", result).startswith("trained mnist-mlp: test accuracy 55.12%, test loss 1.4876, ")


def _committed_shakespeare() -> dict:
    meta = CHECKPOINTS / "shakespeare-char.json"
    if not meta.is_file():
        pytest.skip("checkpoints/shakespeare-char.json is not committed yet: nothing to reproduce")
    return json.loads(meta.read_text())


@pytest.mark.slow
def test_replacebench_train_reproduces_the_shakespeare_checkpoint(data_dir, tmp_path):
    """`replacebench train shakespeare-char` (the zoo's WindowRecipe, about half an hour on 2 cores) writes the committed checkpoint's
    bytes on the software stack and CPU kind that made it, and prints its validation loss in nats per character.
    Elsewhere float rounding moves the weights, so there it must reach the same validation loss to 0.02 nats."""
    from helpers import run_cli

    committed = _committed_shakespeare()
    done = run_cli("train", "shakespeare-char", "--out-dir", str(tmp_path), "--data-dir", str(data_dir), timeout=3600)
    assert done.returncode == 0, done.stderr
    ours = json.loads((tmp_path / "shakespeare-char.json").read_text())
    assert ours["sha256"] == _sha(tmp_path / "shakespeare-char.safetensors")
    assert f"val loss {ours['val_loss']:.4f} nats/char, val accuracy {100 * ours['val_accuracy']:.2f}%" in done.stdout
    assert f"(sha256 {ours['sha256']})" in done.stdout
    if ours["versions"] == committed["versions"] and ours["machine"] == committed["machine"]:
        assert ours["sha256"] == committed["sha256"] == _sha(CHECKPOINTS / "shakespeare-char.safetensors")
        assert ours["curve"] == [{**c, "seconds": o["seconds"]} for c, o in zip(committed["curve"], ours["curve"])]
    else:
        assert abs(ours["val_loss"] - committed["val_loss"]) <= 0.02
