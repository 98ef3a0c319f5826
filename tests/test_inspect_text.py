"""`inspect` and `diagnose` on shakespeare-char (the text kind), through the real CLI (its `main`, in this process, so
the zygote stays warm between runs; the submissions run in real children).

Every array checked is recomputed here independently of the report: a neuron's activations with `model.run` on the
fit windows, its per-character means with boolean masks, a head's attention pattern by hand from the checkpoint's
weights (embedding, LayerNorm, attention, MLP written out), and diagnose's per-position loss differences by running
the model with the units set to what the submission returns (zero: 0; mean: the fit-set mean, computed here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import run_main

from benchmark.analysis.textshow import html_name
from benchmark.data.shakespeare import VOCAB
from benchmark.harness.context import prepare
from benchmark.models.head_scores import repeated_sequences
from benchmark.models.registry import load_model
from benchmark.sandbox.process import isolation_problem
from benchmark.tasks import Task, all_tasks

needs_isolation = pytest.mark.skipif(isolation_problem() is not None, reason=f"no process isolation: {isolation_problem()}")
FIT, EVAL, TOP = 40, 24, 5


def text_task(which: str) -> Task:
    """A shakespeare-char task of tasks/: the first single neuron, the last head (layer 1's: its pattern reads the
    whole of block 0), or the first task of more than 8 units (a whole MLP layer), in file order."""
    tasks = [t for t in all_tasks().values() if t.model == "shakespeare-char"]
    found = {"neuron": [t for t in tasks if t.layer.endswith("mlp_hook_post") and len(t.units) == 1],
             "head": [t for t in tasks if t.layer.endswith("attn_hook_z") and "head" in t.id][::-1],
             "layer": [t for t in tasks if len(t.units) > 8]}[which]
    assert found, f"no shakespeare-char {which} task in tasks/"
    return found[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir) -> dict[str, str]:
    return {"REPLACEBENCH_CACHE": str(tmp_path_factory.mktemp("cache")), "REPLACEBENCH_DATA": str(data_dir)}


def windows(task: Task, data_dir: Path, split: str, size: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """The set's dataset indices `# [n]`, its windows `# [n, T]` and targets `# [n, T]` (the indices: `prepare`)."""
    ctx = prepare(task, data_dir=data_dir, fit_size=size, eval_size=size)
    data, idx = (ctx.fit_set, ctx.fit_indices) if split == "fit" else (ctx.eval_set, ctx.eval_indices)
    return idx, data.load(idx), torch.as_tensor(data.labels()[idx])


def model_of(task: Task):
    return load_model(task.model, task.checkpoint, task.checkpoint_sha256)[0]


def run_json(*args: str, env: dict[str, str]) -> dict:
    """`replacebench ARGS --json` with `env` set for the call: its JSON."""
    proc = run_main(*args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_arrays_listed(report: dict, owner: dict) -> None:
    """Every npz the JSON lists lies in the report's folder with the arrays and shapes listed; every PNG exists."""
    for entry in owner["data"].values():
        with np.load(entry["path"]) as npz:
            assert {k: {"shape": list(npz[k].shape), "dtype": str(npz[k].dtype)} for k in npz.files} == entry["arrays"]
        assert Path(entry["path"]).parent == Path(report["out"])
    for png in owner["images"].values():
        assert Path(png).is_file() and Path(png).with_suffix(".npz").is_file()


def test_inspect_neuron_top_contexts_and_character_tables(tmp_path, env, data_dir):
    task = text_task("neuron")
    out = tmp_path / "neuron"
    report = run_json("inspect", task.id, "--fit-size", str(FIT), "--top", str(TOP), "--out", str(out), env=env)
    (unit,) = task.units
    idx, x, _ = windows(task, data_dir, "fit", FIT)
    with torch.no_grad():
        a = model_of(task).run(x, until=task.layer)[:, :, unit].double().numpy()  # [n, T]
    tokens = x.numpy()
    (entry,) = report["unit_reports"]
    assert report["n_fit"] == FIT and entry["unit"] == unit
    assert_arrays_listed(report, entry)
    i, t = np.unravel_index(a.argmax(), a.shape)
    best = entry["top_contexts"][0]
    assert best["activation"] == pytest.approx(a.max(), abs=1e-5)
    assert (best["dataset_index"], best["position"]) == (int(idx[i]), int(t))
    assert best["char"] == VOCAB[tokens[i, t]]
    assert best["before"] == "".join(VOCAB[c] for c in tokens[i, max(0, t - 40) : t])
    peaks = sorted(a.max(axis=1), reverse=True)[:TOP]
    assert [c["activation"] for c in entry["top_contexts"]] == pytest.approx(peaks, abs=1e-5)
    html = (out / "index.html").read_text()
    marks = re.findall(r"<mark [^>]*>([^<]*)</mark>", html)
    assert len(marks) == TOP and marks[0] == html_name(tokens[i, t])  # the firing character, highlighted
    with np.load(entry["data"]["top"]["path"]) as npz:
        assert npz["activation"][0] == pytest.approx(a.max(), abs=1e-5)
        lo = max(0, t - 40)
        np.testing.assert_array_equal(npz["context"][0][40 - (t - lo) : 40 + 1 + min(8, 127 - t)],
                                      tokens[i, lo : t + 9])
    with np.load(entry["data"]["by_char"]["path"]) as npz:
        for c in range(len(VOCAB)):
            cur, prev = tokens == c, tokens[:, :-1] == c
            assert npz["count_current"][c] == cur.sum() and npz["count_previous"][c] == prev.sum()
            if cur.any():
                assert npz["mean_current"][c] == pytest.approx(a[cur].mean(), abs=1e-6)
            if prev.any():
                assert npz["mean_previous"][c] == pytest.approx(a[:, 1:][prev].mean(), abs=1e-6)
    with np.load(entry["data"]["pairs"]["path"]) as npz:
        chars = npz["chars"]
        counts = np.bincount(tokens.ravel(), minlength=len(VOCAB))
        assert counts[chars].tolist() == sorted(counts, reverse=True)[: len(chars)]
        for r, p in enumerate(chars[:4]):
            for k, c in enumerate(chars[:4]):
                where = (tokens[:, :-1] == p) & (tokens[:, 1:] == c)
                assert npz["count"][r, k] == where.sum()
                if where.any():
                    assert npz["mean"][r, k] == pytest.approx(a[:, 1:][where].mean(), abs=1e-6)


def hand_pattern(model, ids: np.ndarray, layer: int) -> np.ndarray:
    """Every head's attention pattern `# [H, n, n]` at `layer`, written out from the weights (pre-LN blocks)."""
    ids_t = torch.as_tensor(ids)
    n = len(ids)
    with torch.no_grad():
        r = model.W_E[ids_t] + model.W_pos[:n]  # [n, d]
        for l, b in enumerate(model.blocks):
            x = F.layer_norm(r, (r.shape[-1],), b.ln1_w, b.ln1_b, 1e-5)
            q = torch.einsum("td,hde->hte", x, b.W_Q) + b.b_Q[:, None]
            k = torch.einsum("td,hde->hte", x, b.W_K) + b.b_K[:, None]
            s = torch.einsum("hqe,hke->hqk", q, k) / q.shape[-1] ** 0.5
            s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            pattern = s.softmax(-1)
            if l == layer:
                return pattern.numpy()
            v = torch.einsum("td,hde->hte", x, b.W_V) + b.b_V[:, None]
            r = r + torch.einsum("hqk,hke,hed->qd", pattern, v, b.W_O) + b.b_O
            y = F.layer_norm(r, (r.shape[-1],), b.ln2_w, b.ln2_b, 1e-5)
            r = r + F.gelu(y @ b.W_in + b.b_in) @ b.W_out + b.b_out
    raise AssertionError(f"no layer {layer}")


def test_inspect_head_patterns_on_real_and_repeated_text(tmp_path, env, data_dir):
    task = text_task("head")
    out = tmp_path / "head"
    report = run_json("inspect", task.id, "--fit-size", str(FIT), "--out", str(out), env=env)
    (head,) = task.units
    layer = int(task.layer.split("_")[1])
    (entry,) = report["unit_reports"]
    assert (entry["layer"], entry["head"]) == (layer, head) and report["unit_kind"] == "attention head"
    assert_arrays_listed(report, entry)
    idx, x, _ = windows(task, data_dir, "fit", FIT)
    model = model_of(task)
    with np.load(entry["data"]["pattern_real"]["path"]) as npz:
        np.testing.assert_array_equal(npz["tokens"], x[0].numpy())  # the first fit window
        assert int(npz["dataset_index"]) == int(idx[0])
        np.testing.assert_allclose(npz["pattern"], hand_pattern(model, x[0].numpy(), layer)[head], atol=1e-5)
        assert entry["real"]["previous_token_attention"] == pytest.approx(np.diagonal(npz["pattern"], -1).mean(), abs=1e-6)
    with np.load(entry["data"]["pattern_repeated"]["path"]) as npz:
        s, ids = int(npz["repeat"]), npz["tokens"]
        assert len(ids) == 2 * s and (ids[:s] == ids[s:]).all()
        expected = hand_pattern(model, ids, layer)[head]
        np.testing.assert_allclose(npz["pattern"], expected, atol=1e-5)
        q = np.arange(s, 2 * s)
        assert entry["repeated"]["induction_stripe"] == pytest.approx(expected[q, q - s + 1].mean(), abs=1e-5)
    html = (out / "index.html").read_text()
    assert 'src="unit%d_pattern_real.png"' % head in html and 'src="unit%d_pattern_repeated.png"' % head in html
    previous = np.mean([np.diagonal(hand_pattern(model, w, layer)[head], -1).mean() for w in x.numpy()])
    assert entry["standard_scores"]["previous_token"] == pytest.approx(previous, abs=1e-5)  # over the fit windows
    std = entry["standard_scores"]
    s = std["repeat"]
    q = np.arange(s + 1, 2 * s + 1)  # the second copy of x0 r1..rS r1..rS
    induction = np.mean([hand_pattern(model, r.numpy(), layer)[head][q, q - s + 1].mean()
                         for r in repeated_sequences(std["random_sequences"], s, std["seed"])])  # head_scores' draw
    assert entry["standard_scores"]["induction"] == pytest.approx(induction, abs=1e-5)


def test_inspect_whole_layer_shows_the_units_of_largest_variance(tmp_path, env, data_dir):
    task = text_task("layer")
    report = run_json("inspect", task.id, "--fit-size", str(FIT), "--top", "2", "--out", str(tmp_path / "all"), env=env)
    _, x, _ = windows(task, data_dir, "fit", FIT)
    with torch.no_grad():
        a = model_of(task).run(x, until=task.layer)[:, :, list(task.units)].double().numpy()  # [n, T, units]
    variance = a.reshape(-1, len(task.units)).var(axis=0)
    expected = sorted(np.asarray(task.units)[np.argsort(-variance, kind="stable")[:8]].tolist())
    assert report["shown_units"] == expected and [u["unit"] for u in report["unit_reports"]] == expected
    with np.load(report["data"]["unit_variance"]["path"]) as npz:
        np.testing.assert_allclose(npz["variance"], variance, rtol=1e-4, atol=1e-9)
        assert int(npz["shown"].sum()) == 8


def replaced_position_losses(task: Task, x: torch.Tensor, y: torch.Tensor, values: torch.Tensor
                             ) -> tuple[np.ndarray, np.ndarray]:
    """CE_replaced − CE_clean `# [n, T]` with the task's units set to `values` (broadcast to `# [n, T, n_units, ...]`),
    from `model.run` in two halves around the layer, and the original units `# [n, T, n_units, ...]`."""
    model = model_of(task)
    units = list(task.units)
    with torch.no_grad():
        carry: dict[str, torch.Tensor] = {}
        act = model.run(x, until=task.layer, carry=carry)
        changed = act.clone()
        changed[:, :, units] = values.expand_as(changed[:, :, units])
        ce = []
        for a in (act, changed):
            logits = model.run(a, after=task.layer, carry=dict(carry))  # [n, T, 65]
            ce.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
                      .double().reshape(y.shape))
    return (ce[1] - ce[0]).numpy(), act[:, :, units].double().numpy()


@needs_isolation
def test_diagnose_zero_on_a_neuron_per_position(tmp_path, env, data_dir):
    task = text_task("neuron")
    out = tmp_path / "diag"
    report = run_json("diagnose", "zero", "--task", task.id, "--eval-size", str(EVAL), "--fit-size", "8", "--top", "3",
                      "--out", str(out), env=env)
    assert report["isolation"]["level"] == "namespaces" and report["n_eval"] == EVAL
    assert_arrays_listed(report, report)
    idx, x, y = windows(task, data_dir, "eval", EVAL)
    dl, original = replaced_position_losses(task, x, y, torch.zeros(()))
    with np.load(report["data"]["loss_map"]["path"]) as npz:
        np.testing.assert_array_equal(npz["dataset_index"], idx)
        np.testing.assert_allclose(npz["loss_difference"], dl, atol=1e-5)
    with np.load(report["data"]["loss_by_position"]["path"]) as npz:
        np.testing.assert_allclose(npz["mean_loss_difference"], dl.mean(axis=0), atol=1e-5)
    with np.load(report["data"]["error_map"]["path"]) as npz:
        np.testing.assert_allclose(npz["mean_abs_error"], np.abs(original)[:, :, 0], atol=1e-6)  # |0 − a|
    worst = np.argsort(-dl.mean(axis=1), kind="stable")[:3]
    assert [w["dataset_index"] for w in report["top_by_loss"]] == idx[worst].tolist()
    assert report["per_position_check"] < 1e-6
    html = (out / "index.html").read_text()
    assert html.count("<mark") == 0  # coloured characters, none marked as firing
    section = html[html.index("costs most loss</h3>") :]
    first_row = section[section.index("<td") : section.index("</tr>", section.index("<td"))]
    spans = re.findall(r'<span style="background:[^"]*"(?: title="([^"]*)")?>([^<]*)</span>', first_row)
    i = worst[0]
    ids = np.concatenate([x[i].numpy(), y[i, -1:].numpy()])  # x_i0, then the predicted characters y_i0..y_i,T-1
    assert [c for _, c in spans] == [html_name(c) for c in ids]
    assert spans[0][0] == ""  # the first character is only read
    np.testing.assert_allclose([float(v) for v, _ in spans[1:]], dl[i], rtol=1e-3, atol=1e-9)  # y_it coloured by ΔL_it


@needs_isolation
def test_diagnose_mean_on_a_head_per_position(tmp_path, env, data_dir):
    task = text_task("head")
    report = run_json("diagnose", "mean", "--task", task.id, "--eval-size", str(EVAL), "--fit-size", "16", "--top", "2",
                      "--out", str(tmp_path / "diag"), env=env)
    _, xf, _ = windows(task, data_dir, "fit", 16)
    with torch.no_grad():
        fit_mean = model_of(task).run(xf, until=task.layer)[:, :, list(task.units)].mean(0)  # [T, 1, e]
    _, x, y = windows(task, data_dir, "eval", EVAL)
    dl, original = replaced_position_losses(task, x, y, fit_mean)
    with np.load(report["data"]["loss_map"]["path"]) as npz:
        np.testing.assert_allclose(npz["loss_difference"], dl, atol=1e-5)
    with np.load(report["data"]["error_map"]["path"]) as npz:
        error = fit_mean.double().numpy()[None] - original  # [n, T, 1, e]
        np.testing.assert_allclose(npz["mean_abs_error"], np.abs(error).mean(axis=(2, 3)), atol=1e-6)
        np.testing.assert_allclose(npz["mean_error"], error.mean(axis=0), atol=1e-6)
