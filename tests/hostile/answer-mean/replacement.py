"""Attack: replace modadd-p113 neurons by a function of the answer alone, learned from the fit pairs.

The answer c = (a + b) mod 113 is one line of code from the public tokens. `fit` stores, per answer c, the fit
pairs' mean activation of the target units over the pairs whose answer is c (`means # [113, n_units]`);
`replace` computes c and returns `gain · means[c]` (a `gain` in `target.json` beside this file, 1 when absent).

With gain 1 it reproduces the neurons on average over each answer (what the unembedding reads, a function of
a + b, survives; what depends on a and b apart does not): the "copy-like" cheat. With gain > 1 the neurons push
harder toward the answer: on the whole MLP (`:all`) the answer's logit then wins by so much that every
float32 loss is 0.
"""
import json
import os

import torch

P = 113
CONFIG = os.path.join(os.path.dirname(__file__), "target.json")
GAIN = json.load(open(CONFIG))["gain"] if os.path.exists(CONFIG) else 1.0


def answer(tokens):
    return (tokens[:, 0].long() + tokens[:, 1].long()) % P  # [b]


def fit(tokens, target):
    c = answer(tokens)
    return {"means": torch.stack([target[c == k].mean(0) for k in range(P)])}  # [113, n_units]


def replace(tokens, params, task):
    return (GAIN * params["means"][answer(tokens)]).contiguous()  # [b, n_units]
