"""`submissions/previous-token-head`: the attention rule worked out by hand on a short text, and fit/replace recovering a
head that is exactly the algorithm (a known profile and value table), with the shapes and dtypes the harness checks."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import load_module

from benchmark.data.shakespeare import VOCAB, encode
from benchmark.sandbox.worker import TaskView, params_to_arrays, tensor_to_array

FOLDER = Path(__file__).resolve().parent.parent / "submissions" / "previous-token-head"
TASK = TaskView("shakespeare-char/blocks_0_attn_hook_z:head1", "shakespeare-char", "blocks_0_attn_hook_z", (1,),
                ("tokens",), (128, 1, 32))


def submission():
    return load_module(FOLDER / "replacement.py", "previous_token_head_under_test")


def test_the_attention_rule_by_hand() -> None:
    sub = submission()
    w = torch.tensor([0.2, 0.5, 0.3])  # on q, q − 1, q − 2
    # q = 0: only itself; q = 1: (0.2, 0.5) renormalised; q ≥ 2: w as it is
    torch.testing.assert_close(sub.attention(w, 4), torch.tensor([[1.0, 0.0, 0.0], [2 / 7, 5 / 7, 0.0],
                                                                  [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]]))
    tokens = torch.from_numpy(encode("ab a"))[None]  # a b ␣ a
    a, b, space = (int(t) for t in encode("ab "))
    table = torch.randn(len(VOCAB), 32, generator=torch.Generator().manual_seed(0))
    z = sub.replace(tokens, {"w": w, "table": table}, TASK)
    expected = torch.stack([table[a],
                            2 / 7 * table[b] + 5 / 7 * table[a],
                            0.2 * table[space] + 0.5 * table[b] + 0.3 * table[a],
                            0.2 * table[a] + 0.5 * table[space] + 0.3 * table[b]])
    assert z.shape == (1, 4, 1, 32) and z.dtype == torch.float32
    torch.testing.assert_close(z[0, :, 0], expected)


def test_fit_and_replace_recover_a_head_that_is_the_algorithm() -> None:
    sub = submission()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(len(VOCAB), (300, 128), generator=g)
    w, table = torch.tensor([0.15, 0.6, 0.25]), torch.randn(65, 32, generator=g)
    target = torch.empty(300, 128, 1, 32)
    for n, row in enumerate(tokens.tolist()):  # the rule, written out position by position
        for q in range(128):
            keys = [(w[d], row[q - d]) for d in range(3) if d <= q]
            total = sum(weight for weight, _ in keys)
            target[n, q, 0] = sum(weight / total * table[c] for weight, c in keys)
    arrays = params_to_arrays(sub.fit(tokens.clone(), target.clone()), "fit()")
    params = {k: torch.from_numpy(v) for k, v in arrays.items()}
    assert sum(v.size for v in arrays.values()) == 3 + 65 * 32  # the docstring's count
    torch.testing.assert_close(params["w"], w)
    torch.testing.assert_close(params["table"], table, atol=1e-4, rtol=1e-4)
    out = tensor_to_array(sub.replace(tokens[:50].clone(), params, TASK), "replace()", (50, 128, 1, 32))
    torch.testing.assert_close(torch.from_numpy(out), target[:50], atol=1e-4, rtol=1e-4)
