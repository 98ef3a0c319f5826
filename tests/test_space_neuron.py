"""submissions/space-neuron: the rule by hand on a string, and fit finding the levels of a neuron that is the rule."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import load_submission

from benchmark.data.shakespeare import VOCAB, encode

ROOT = Path(__file__).resolve().parents[1]


def module():
    return load_submission("space-neuron")


def test_its_vocabulary_is_the_corpus_and_the_rule_reads_by_hand():
    neuron = module()
    assert neuron.VOCAB == VOCAB
    params = {"levels": torch.tensor([4.0, 2.5, 1.5, -0.1])}  # ' ', '-', newline, anything else
    out = neuron.replace(torch.as_tensor(encode("to-day,\nsir go")).reshape(1, -1), params, None)
    expected = [-0.1, -0.1, 2.5, -0.1, -0.1, -0.1, -0.1, 1.5, -0.1, -0.1, -0.1, 4.0, -0.1, -0.1]
    assert out.shape == (1, 14, 1)
    torch.testing.assert_close(out[0, :, 0], torch.tensor(expected))


def test_fit_finds_the_levels_of_a_neuron_that_is_the_rule(data_dir):
    from benchmark.data.shakespeare import split_ids, windows

    neuron = module()
    tokens = windows(split_ids("train", data_dir))[0][:50]
    levels = torch.tensor([4.2, 2.6, 1.9, 0.03])
    target = neuron.replace(tokens, {"levels": levels}, None)
    torch.testing.assert_close(neuron.fit(tokens, target)["levels"], levels)
