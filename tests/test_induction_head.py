"""`submissions/induction-head`: the attended position on text worked out by hand, and fit/replace recovering a head
that is exactly the algorithm (a random table and default), with the shapes and dtypes the harness checks."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import load_module

from benchmark.data.shakespeare import VOCAB, encode
from benchmark.sandbox.worker import TaskView, params_to_arrays, tensor_to_array

FOLDER = Path(__file__).resolve().parent.parent / "submissions" / "induction-head"


def submission():
    return load_module(FOLDER / "replacement.py", "induction_head_under_test")


def test_the_attended_position_is_after_the_most_recent_earlier_occurrence() -> None:
    sub = submission()
    tokens = torch.from_numpy(encode("abcab ab"))[None]  # a b c a b ␣ a b
    # q=3 'a': earlier a at 0 → 1; q=4 'b': b at 1 → 2; q=6 'a': the most recent a is 3 → 4; q=7 'b': b at 4 → 5
    assert sub.attended(tokens).tolist() == [[-1, -1, -1, 1, 2, -1, 4, 5]]
    # j + 1 may be q itself: "aa" attends from q=1 to 1
    assert sub.attended(torch.from_numpy(encode("aa"))[None]).tolist() == [[-1, 1]]


def test_fit_and_replace_recover_a_head_that_is_the_algorithm() -> None:
    sub = submission()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(len(VOCAB), (300, 128), generator=g)
    table, default = torch.randn(65, 32, generator=g), torch.randn(65, 32, generator=g)
    target = torch.empty(300, 128, 1, 32)
    for b, row in enumerate(tokens.tolist()):  # the rule, written out position by position
        for q, c in enumerate(row):
            earlier = [j for j in range(q) if row[j] == c]
            target[b, q, 0] = table[row[earlier[-1] + 1]] if earlier else default[c]
    arrays = params_to_arrays(sub.fit(tokens.clone(), target.clone()), "fit()")
    params = {k: torch.from_numpy(v) for k, v in arrays.items()}
    assert sum(v.size for v in arrays.values()) == 2 * 65 * 32  # the docstring's count
    torch.testing.assert_close(params["table"], table)
    torch.testing.assert_close(params["default"], default)
    task = TaskView("shakespeare-char/blocks_1_attn_hook_z:head", "shakespeare-char", "blocks_1_attn_hook_z", (2,),
                    ("tokens",), (128, 1, 32))
    out = tensor_to_array(sub.replace(tokens[:50].clone(), params, task), "replace()", (50, 128, 1, 32))
    torch.testing.assert_close(torch.from_numpy(out), target[:50])
