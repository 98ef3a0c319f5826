"""`models.head_scores`: the previous-token, induction and duplicate-token scores, checked on heads built by hand.

Layer 0 of a seeded ShakespeareChar is rewritten so that head 0.0 attends exactly to the previous position (from the
positions alone: the token embedding is zero) and head 0.1 attends uniformly (zero query and key weights); the
expected scores are computed here from the definitions, not with the module's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.models import head_scores as heads
from benchmark.models.shakespeare import CONTEXT, D_HEAD, D_MODEL, LN_EPS, ShakespeareChar

GAP = 40.0  # the score margin (nats) of the previous position over its neighbours


def hand_built_model() -> ShakespeareChar:
    """Head 0.0 attends to q − 1; head 0.1 uniformly over k ≤ q; everything else random (seed 0).

    Position t is written as p_t = (a, b, c, −a, −b, −c, 0, …) with a = t/128, b = a², c = √(2 − a² − b²): mean 0 and
    ‖p‖² = 4 for every t, so LN1 maps it to κ·p_t with one constant κ = 1/√(4/d + ε). Head 0.0 then has
    k_s = (a_s, b_s) and q_t = √e·γ·(2 a_{t−1}, −1), so its score is γ(2 a_s a_{t−1} − a_s²) = −γ(a_s − a_{t−1})² +
    const(t): the largest at s = t − 1, and GAP = γ/128² above the next best.
    """
    torch.manual_seed(0)
    model = ShakespeareChar()
    gamma = GAP * 128 ** 2
    kappa = 1 / math.sqrt(4 / D_MODEL + LN_EPS)
    a = torch.arange(CONTEXT, dtype=torch.float64) / 128
    b = a ** 2
    c = torch.sqrt(2 - a ** 2 - b ** 2)
    pos = torch.zeros(CONTEXT, D_MODEL, dtype=torch.float64)
    pos[:, :6] = torch.stack([a, b, c, -a, -b, -c], 1)
    block = model.blocks[0]
    with torch.no_grad():
        model.W_E.zero_()
        model.W_pos.copy_(pos)
        block.ln1_w.fill_(1.0)
        block.ln1_b.zero_()
        for w in (block.W_Q, block.W_K, block.b_Q, block.b_K):
            w[:2].zero_()  # heads 0 and 1; head 1 stays all zero: uniform attention
        block.W_K[0, 0, 0] = 1 / kappa  # k_s[0] = a_s
        block.W_K[0, 1, 1] = 1 / kappa  # k_s[1] = b_s
        root_e = math.sqrt(D_HEAD)
        block.W_Q[0, 0, 0] = 2 * gamma * root_e / kappa  # q_t[0] = 2γ√e (a_t − 1/128) = 2γ√e a_{t−1}
        block.b_Q[0, 0] = -2 * gamma * root_e / 128
        block.b_Q[0, 1] = -gamma * root_e  # q_t[1] = −γ√e
    return model.eval()


@pytest.fixture(scope="module")
def model() -> ShakespeareChar:
    return hand_built_model()


def uniform_mean(queries: range) -> float:
    """mean over q of 1/(q + 1): a uniform head's attention to any one earlier position."""
    return sum(1 / (q + 1) for q in queries) / len(queries)


def test_the_hand_built_head_attends_to_the_previous_position(model: ShakespeareChar) -> None:
    tokens = torch.randint(65, (2, 128), generator=torch.Generator().manual_seed(1))
    with heads.captured_patterns(model, [0]) as patterns:
        model.run(tokens, until="blocks_0_attn_hook_pattern")
    a = patterns[0][:, 0]  # [b, T, T]
    assert torch.equal(a[:, 1:].argmax(-1), torch.arange(127).expand(2, -1)), "the construction itself is wrong"
    assert not model.blocks_0_attn_hook_pattern._forward_hooks, "the hooks were not removed"


def test_previous_token_score_of_a_previous_token_head_and_of_a_uniform_head(model, data_dir) -> None:
    windows = heads.open_split("val", data_dir).inputs[:40]
    scores = heads.previous_token_scores(model, windows)  # [L, H]
    assert scores.shape == (2, 4)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert scores[0, 1] == pytest.approx(uniform_mean(range(1, 128)), rel=1e-5)
    assert uniform_mean(range(1, 128)) == pytest.approx(0.0349, abs=1e-4)  # the value the docstring states


def test_induction_and_duplicate_scores(model) -> None:
    s = 20
    seqs = heads.repeated_sequences(30, s, seed=3)
    assert seqs.shape == (30, 2 * s + 1)
    assert torch.equal(seqs[:, 1 : s + 1], seqs[:, s + 1 :])
    induction, duplicate = heads.repeat_scores(model, seqs, s)
    assert induction[0, 0] < 1e-6 and duplicate[0, 0] < 1e-6  # a previous-token head is no induction head
    assert induction[0, 1] == pytest.approx(uniform_mean(range(s + 1, 2 * s + 1)), rel=1e-5)
    assert duplicate[0, 1] == pytest.approx(uniform_mean(range(s + 1, 2 * s + 1)), rel=1e-5)


def test_the_offsets_are_the_induction_and_duplicate_positions() -> None:
    """A pattern that puts all attention at q − S + 1 (induction) on one head and at q − S (duplicate) on another,
    written in by a hook, scores 1 on its own score and 0 on the other: an off-by-one in either offset fails."""
    s = 10
    seqs = heads.repeated_sequences(3, s, seed=0)
    t = seqs.shape[1]
    fake = torch.zeros(3, 4, t, t)
    for q in range(t):
        fake[:, :, q, q] = 1.0
    for q in range(s + 1, 2 * s + 1):
        fake[:, 0, q] = 0.0
        fake[:, 0, q, q - s + 1] = 1.0  # the token after the earlier occurrence
        fake[:, 1, q] = 0.0
        fake[:, 1, q, q - s] = 1.0  # the earlier occurrence itself
    torch.manual_seed(0)
    model = ShakespeareChar().eval()
    handle = model.blocks_1_attn_hook_pattern.register_forward_hook(lambda m, i, o: fake)
    try:
        induction, duplicate = heads.repeat_scores(model, seqs, s)
    finally:
        handle.remove()
    np.testing.assert_allclose(induction[1], [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(duplicate[1], [0, 1, 0, 0], atol=1e-12)


def test_head_scores_and_table(model, data_dir) -> None:
    scores = heads.head_scores(model, data_dir, n_windows=8, n_repeats=10, repeat_length=20)
    assert scores.best("previous_token") == (0, 0)
    text = heads.table(scores)
    assert "0.0            1.000" in text and "highest: previous-token 0.0" in text
    assert len(text.splitlines()) == 1 + 8 + 4
