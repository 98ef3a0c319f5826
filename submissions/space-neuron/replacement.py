"""Hand-written replacement of shakespeare-char's layer-1 neuron 145, the largest mean-ablation effect of the
model's neurons: it fires on the character that ends a word.

`replacebench inspect shakespeare-char/blocks_1_mlp_hook_post:145` shows it: its top contexts are the space after a
word ("cursing ", "saving "), and its mean activation by current character is 4.2 on a space, 2.6 on '-', 1.9 on a
newline and within ±0.2 of 0 on every other character. On the fit windows the current character alone explains
R² = 0.91 of its variance (a 65-entry table); the three separators carry almost all of it.

The rule, with c = tokens[q] the current character:

    out_q = level[c]  if c is ' ', '-' or a newline,  else  rest

`fit` sets each level to the neuron's mean over the fit positions with that character, and `rest` to its mean over
all other positions: 4 fitted numbers. What it leaves out: the neuron is larger after some words than others (after
"-ing" its mean on a space is 4.7, against 4.2 over all spaces), and it varies with the position in the window.
"""

import torch

SEPARATORS = " -\n"  # the characters the neuron fires on (a space, a hyphen, a newline)
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # the corpus's 65 characters, by id


def _groups(tokens):
    """Per position: the index of its separator in SEPARATORS, or len(SEPARATORS) for any other character."""
    group = torch.full((len(VOCAB),), len(SEPARATORS), dtype=torch.long)
    for i, char in enumerate(SEPARATORS):
        group[VOCAB.index(char)] = i
    return group[tokens.long()]  # [b, T]


def fit(tokens, target):
    g = _groups(tokens).reshape(-1)
    y = target.double().reshape(-1)  # [b · T]: one neuron at every position
    sums = torch.zeros(len(SEPARATORS) + 1, dtype=torch.float64).index_add_(0, g, y)
    counts = torch.bincount(g, minlength=len(SEPARATORS) + 1).double()
    return {"levels": (sums / counts.clamp_min(1)).float()}  # [4]: ' ', '-', newline, any other


def replace(tokens, params, task):
    return params["levels"][_groups(tokens)][..., None].contiguous()  # [b, T, 1]
