"""`submissions/ic-ig-il`: the rule's groups on text worked out by hand, and fit recovering the levels of a target
that is the rule."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import load_module

from benchmark.data.shakespeare import VOCAB, encode
from benchmark.sandbox.worker import TaskView, params_to_arrays, tensor_to_array

FOLDER = Path(__file__).resolve().parent.parent / "submissions" / "ic-ig-il"


def submission():
    return load_module(FOLDER / "replacement.py", "hand_neuron_under_test")


def test_the_rule_by_hand() -> None:
    sub = submission()
    assert sub.VOCAB == VOCAB
    groups = lambda text: sub.group(torch.from_numpy(encode(text))[None]).tolist()[0]
    # w i c k e d: 'c' after 'i' is group 0; nothing else matches
    assert groups("wicked") == [3, 3, 0, 3, 3, 3]
    # m u c h / h i g h: c or g after i or u
    assert groups("much high") == [3, 3, 0, 3, 3, 3, 3, 0, 3]
    # w i l l / w i t h / g i v e: l, t, v after i (the second 'l' follows 'l': no)
    assert groups("will with give") == [3, 3, 1, 3, 3, 3, 3, 1, 3, 3, 3, 3, 1, 3]
    # w a s / w h a t: 'a' after w or h; 'ul' and 'ut' are not rules; 'Ha' (capital) counts
    assert groups("was what Hath but") == [3, 2, 3, 3, 3, 3, 2, 3, 3, 3, 2, 3, 3, 3, 3, 3, 3]
    # the first position has no previous character
    assert groups("c") == [3]


def test_fit_recovers_the_levels_of_a_target_built_from_the_rule() -> None:
    sub = submission()
    g = torch.Generator().manual_seed(0)
    letters = torch.tensor([VOCAB.index(ch) for ch in "iucgltvwha ehs"])  # rich in the rule's characters
    tokens = letters[torch.randint(len(letters), (200, 128), generator=g)]
    levels = torch.tensor([1.5, 0.8, 0.4, -0.05])
    target = levels[sub.group(tokens)][:, :, None] + 0.01 * torch.randn(200, 128, 1, generator=g)
    arrays = params_to_arrays(sub.fit(tokens.clone(), target.clone()), "fit()")
    assert sum(v.size for v in arrays.values()) == 4  # the docstring's count
    params = {k: torch.from_numpy(v) for k, v in arrays.items()}
    torch.testing.assert_close(params["levels"], levels, atol=2e-3, rtol=0)
    task = TaskView("shakespeare-char/blocks_0_mlp_hook_post:101", "shakespeare-char", "blocks_0_mlp_hook_post",
                    (101,), ("tokens",), (128, 1))
    out = tensor_to_array(sub.replace(tokens[:20].clone(), params, task), "replace()", (20, 128, 1))
    torch.testing.assert_close(torch.from_numpy(out), params["levels"][sub.group(tokens[:20])][:, :, None])
