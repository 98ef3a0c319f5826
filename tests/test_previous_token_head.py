"""submissions/previous-token-head: the rule by hand, and fit recovering a head that is exactly the rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from benchmark.data.shakespeare import encode

ROOT = Path(__file__).resolve().parents[1]


def module():
    spec = importlib.util.spec_from_file_location("previous_token_head", ROOT / "submissions" / "previous-token-head" / "replacement.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_rule_by_hand():
    head = module()
    tokens = torch.as_tensor(encode("ab a")).reshape(1, 4)  # positions: a, b, ' ', a
    values = torch.arange(65 * 32, dtype=torch.float32).reshape(65, 32)
    weight = torch.linspace(0, 1, 65)
    z = head.replace(tokens, {"values": values, "previous_weight": weight}, None)  # [1, 4, 1, 32]
    a, b, space = (int(t) for t in encode("ab "))
    expected = [values[a],  # q = 0: only itself
                weight[b] * values[a] + (1 - weight[b]) * values[b],
                weight[space] * values[b] + (1 - weight[space]) * values[space],
                weight[a] * values[space] + (1 - weight[a]) * values[a]]
    assert z.shape == (1, 4, 1, 32)
    torch.testing.assert_close(z[0, :, 0], torch.stack(expected))


def test_fit_recovers_a_head_that_is_the_rule(data_dir):
    from benchmark.data.shakespeare import split_ids, windows

    head = module()
    tokens = windows(split_ids("train", data_dir))[0][:300]  # [300, 128] real text: every character seen
    g = torch.Generator().manual_seed(0)
    values, weight = torch.randn(65, 32, generator=g), torch.rand(65, generator=g) * 0.6 + 0.2
    target = head.replace(tokens, {"values": values, "previous_weight": weight}, None)
    params = head.fit(tokens, target)
    seen = torch.unique(tokens)
    torch.testing.assert_close(params["previous_weight"][seen], weight[seen], atol=1e-3, rtol=0)
    torch.testing.assert_close(head.replace(tokens, params, None), target, atol=1e-3, rtol=0)
