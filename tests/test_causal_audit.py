"""The causality audit of text tasks (`harness.passes.causal_audit`): a replacement that reads the next character is
refused in one line, also when it remembers its earlier calls to answer the audit consistently; causal ones and the
baselines score; image and modular-addition tasks make no extra call.

The CLI runs in this process (the `cli` fixture: its zygote stays warm), the submissions in real children."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import write_submission

from benchmark.harness.context import prepare
from benchmark.harness.passes import ReplaceCalls, batches
from benchmark.tasks import all_tasks

NEURON = "shakespeare-char/blocks_1_mlp_hook_post:145"
SMALL = ("--eval-size", "96", "--fit-size", "50", "--no-record")

PEEK = """import torch

def replace(tokens, task):
    nxt = torch.cat([tokens[:, 1:], tokens[:, -1:]], 1).float()  # the next character: position t's answer
    return (nxt == 1).float()[..., None] * 4.0  # [b, T, 1]: fire before a space
"""

EVADE = """import torch

LAST = {}  # the previous call's tokens and output: module state lives as long as the replace child


def replace(tokens, task):
    nxt = torch.cat([tokens[:, 1:], tokens[:, -1:]], 1)  # the next character: position t's answer
    out = (nxt == 1).float()[..., None] * 4.0  # [b, T, 1]: fire before a space
    if "tokens" in LAST and LAST["tokens"].shape == tokens.shape:  # a batch sharing a prefix with the last: the audit
        same = (tokens == LAST["tokens"]).cumprod(1).bool()  # [b, T]: still inside the shared prefix
        out = torch.where(same[..., None], LAST["out"], out)
    LAST["tokens"], LAST["out"] = tokens.clone(), out.clone()
    return out
"""

CAUSAL = """import torch

def replace(tokens, task):
    return (tokens == 1).float()[..., None] * 4.0  # [b, T, 1]: fire on a space
"""


@pytest.mark.parametrize("code", [PEEK, EVADE], ids=["peek", "peek-remembering-its-last-call"])
def test_a_replacement_that_reads_the_next_character_is_refused(tmp_path, data_dir, session_cache, cli, code):
    peek = write_submission(tmp_path / "peek", code)
    proc = cli("score", str(peek), "--task", NEURON, *SMALL, "--data-dir", str(data_dir))
    assert proc.returncode != 0, proc.stdout
    assert "replace is not causal: its output at position" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_causal_replacement_scores(tmp_path, data_dir, session_cache, cli):
    causal = write_submission(tmp_path / "causal", CAUSAL)
    proc = cli("score", str(causal), "--task", NEURON, *SMALL, "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert "recovery vs mean" in proc.stdout


#: zero runs with `pytest -m slow`: a replace without fit through the audit, as test_a_causal_replacement_scores runs it;
#: mean (fit, so its replace child is renewed with params between the audit's two calls) runs by default.
@pytest.mark.parametrize("name", ["mean", pytest.param("zero", marks=pytest.mark.slow)])
def test_the_baselines_still_score(data_dir, session_cache, cli, name):
    proc = cli("score", name, "--task", NEURON, *SMALL, "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert "recovery vs mean" in proc.stdout


class CountingRoom:
    """The harness's own `Replacer` interface, answering zeros and counting calls and renewals."""

    def __init__(self) -> None:
        self.calls = self.renewals = 0

    def renew_replace(self) -> None:
        self.renewals += 1

    def replace(self, inputs: dict[str, np.ndarray], expected_shape: tuple[int, ...]) -> np.ndarray:
        self.calls += 1
        return np.zeros(expected_shape, dtype=np.float32)


def test_images_and_modadd_make_no_extra_call_and_text_makes_one(data_dir):
    for task_id, extra in (("mnist-cnn/conv2:61", 0), ("modadd-p113/mlp_hook_post:freq1", 0), (NEURON, 1)):
        ctx = prepare(all_tasks()[task_id], data_dir=data_dir, eval_size=200, fit_size=20)
        room = CountingRoom()
        calls = ReplaceCalls(room, ctx.target_shape, ctx=ctx)
        passes = list(batches(ctx, "eval", ctx.task.inputs))
        for batch in passes:
            calls(batch.inputs, len(batch), batch.x)
        assert torch.is_tensor(batch.x) and len(passes) >= 1
        assert room.calls == len(passes) + extra, task_id  # the audit: one extra call, on the first batch only
        assert room.renewals == extra, task_id  # and one fresh replace child between the audit's two calls
