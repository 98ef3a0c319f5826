"""The coverage gate's modadd-p113 data models (`benchmarks/coverage_gate.py`): the committed losses are the
checkpoint's, the draws have the real shape, and the truths are the ones the docstring states."""

from __future__ import annotations


import numpy as np
import pytest

from helpers import ROOT, load_module

N_EVAL = 8939
#: The docstring's truths: effect per target, recovery per (target, ρ).
EFFECTS = {"MLP": 4.690, "k = 8 cluster": 7.742}
RECOVERIES = {
    ("MLP", "Beta(7, 3)"): 0.700, ("MLP", "graded"): 0.423, ("MLP", "hardest 10% at −4"): 0.201,
    ("MLP", "near 100%, Beta(99, 1)"): 0.990, ("MLP", "near 100%, hardest 1% at 0"): 0.979,
    ("k = 8 cluster", "Beta(7, 3)"): 0.700, ("k = 8 cluster", "graded"): 0.234,
    ("k = 8 cluster", "hardest 10% at −4"): -0.440, ("k = 8 cluster", "near 100%, Beta(99, 1)"): 0.990,
    ("k = 8 cluster", "near 100%, hardest 1% at 0"): 0.962,
}


def _load(name: str):
    return load_module(ROOT / "benchmarks" / f"{name}.py", name, register=True)  # dataclasses look it up by name


gate = _load("coverage_gate")


def test_every_modadd_model_is_in_the_table_at_the_real_eval_size():
    labels = {f"modadd {t}: {r}" for t, r in RECOVERIES}
    assert labels == {label for label in gate.MODELS if label.startswith("modadd")}
    for label in labels:
        model, has_effect, sizes = gate.MODELS[label]
        assert has_effect and N_EVAL in sizes


@pytest.mark.parametrize("target,rho", list(RECOVERIES))
def test_draws_have_the_real_shape_and_the_stated_truth(target, rho):
    model = gate.MODELS[f"modadd {target}: {rho}"][0]
    pool_c, pool_a = model.clean, model.ablated
    assert pool_c.shape == pool_a.shape == (N_EVAL,)
    for n in (200, N_EVAL):
        c, a, p = model(np.random.default_rng(n), n)
        assert c.shape == a.shape == p.shape == (n,)
        # every drawn (C, A) is one real pair, kept together
        assert np.isin(a, pool_a).all() and np.isin(c, pool_c).all() and np.isin(a - c, pool_a - pool_c).all()
    effect, recovery = gate.truth(model)
    assert round(effect, 3) == EFFECTS[target] and f"{EFFECTS[target]:.3f}" in gate.__doc__
    assert round(recovery, 3) == RECOVERIES[target, rho]
    assert f"{RECOVERIES[target, rho]:.3f}".replace("-", "−") in gate.__doc__
    # the exact truth is what the draws average to: a million draws, within 5 standard errors
    c, a, p = model(np.random.default_rng(7), 1_000_000)
    d, num = a - c, a - p
    assert abs(d.mean() - effect) < 5 * d.std() / np.sqrt(len(d))
    assert abs(num.mean() / d.mean() - recovery) < 5 * (num - recovery * d).std() / np.sqrt(len(d)) / d.mean()


def test_modadd_losses_are_the_shipped_tasks_on_the_checkpoint():
    """The stored targets are the shipped `:all` task and the largest frequency cluster; their clean and
    zero-ablated losses are recomputed from the checkpoint (one full-batch pass, not the harness's batches)."""
    import torch
    import torch.nn.functional as F

    from benchmark.data.modadd import open_split
    from benchmark.download import sha256_file
    from benchmark.harness.context import load_model
    from benchmark.tasks import get_task, select_tasks

    losses = _load("modadd_losses")
    with np.load(losses.OUT) as data:
        stored = {key: data[key] for key in data.files}
    checkpoint = "checkpoints/modadd-p113.safetensors"
    assert str(stored["checkpoint_sha256"]) == sha256_file(ROOT / checkpoint)
    sizes = {t.id: len(t.units) for t in select_tasks("modadd-p113/mlp_hook_post:freq*")}
    k = int(stored["cluster_k"])
    assert str(stored["cluster_task"]) == f"modadd-p113/mlp_hook_post:freq{k}" == max(sizes, key=sizes.get)
    cluster = get_task(str(stored["cluster_task"])).units
    assert tuple(stored["cluster_units"]) == tuple(cluster) and len(cluster) == 179
    assert get_task(losses.MLP_TASK).units == tuple(range(512))

    model, _ = load_model("modadd-p113", checkpoint, str(stored["checkpoint_sha256"]))
    test = open_split("test")
    with torch.no_grad():
        carry: dict[str, torch.Tensor] = {}
        post = model.run(test.inputs, until="mlp_hook_post", carry=carry)  # [8939, 512]
        labels = torch.as_tensor(test.labels())
        for name, units in (("mlp", list(range(512))), ("cluster", list(cluster))):
            for condition in ("clean", "zero"):
                acts = post.clone()
                if condition == "zero":
                    acts[:, units] = 0
                logits = model.run(acts, after="mlp_hook_post", carry=dict(carry))
                loss = F.cross_entropy(logits.double(), labels, reduction="none").numpy()
                np.testing.assert_allclose(stored[f"{name}_{condition}"], loss, rtol=1e-4, atol=1e-4)


UNEVEN = ["moderate: 10% at −4", "sparse, heavy-tailed: 10% at −4", "sparse, heavy-tailed: graded",
          "spiky (1% carry the effect): 30% of spikes at −1", "spiky (1% carry the effect): 30% of spikes at 0"]


def test_the_uneven_recovery_models_are_in_the_table_with_their_stated_truths():
    """The Integrity issue's 10% at −4 recovers 0.5; the spiky model is as sparse as the real tasks (its docstring)."""
    for label in UNEVEN:
        assert label in gate.MODELS and gate.MODELS[label][2] == (200, 900, 10_000)
    for label in UNEVEN[:2]:
        assert abs(gate.truth(gate.MODELS[label][0])[1] - 0.5) < 0.01
    c, a, p = gate.MODELS[UNEVEN[3]][0](np.random.default_rng(3), 1_000_000)
    d = a - c
    top = np.sort(d)[::-1][: len(d) // 100].sum() / d.sum()
    excess_kurtosis = np.mean((d - d.mean()) ** 4) / d.var() ** 2 - 3
    assert top > 1.0 and 100 < excess_kurtosis < 1000  # the issue: 110–224% and 150–760 on the real tasks


def test_the_real_triples_are_kept_together_and_their_truth_is_exact():
    models = gate.triples_models()
    assert set(models) <= set(gate.MODELS) and len(models) == 3
    for model in models.values():
        assert model.clean.shape == model.ablated.shape == model.replaced.shape == (N_EVAL,)
        c, a, p = model(np.random.default_rng(1), 500)
        rows = {(x, y, z) for x, y, z in zip(model.clean, model.ablated, model.replaced)}
        assert all((x, y, z) in rows for x, y, z in zip(c, a, p))
        effect, recovery = gate.truth(model)
        assert effect == pytest.approx(np.mean(model.ablated - model.clean))
        assert recovery == pytest.approx(np.sum(model.ablated - model.replaced) / np.sum(model.ablated - model.clean))
