"""Attack that looks honest: a single modadd-p113 neuron as "a ReLU of Fourier terms of a + b".

It reads like the Nanda et al. story (a neuron of key frequency k computes cos/sin of k(a + b)), but its only
input is the answer c = (a + b) mod 113: every term is periodic in a + b with period 113, so it is a function of
c alone, and what the neuron does with a and b apart is dropped. `fit` finds k ∈ 1..56 whose 5 terms
{1, cos wc, sin wc, cos 2wc, sin 2wc} (w = 2πk/113) fit the unit best by least squares on the fit pairs, and
the 5 coefficients; 6 numbers per unit.
"""
import math

import torch

P = 113


def terms(tokens, k):
    c = ((tokens[:, 0].long() + tokens[:, 1].long()) % P).double()  # [b]
    w = 2 * math.pi * k / P
    return torch.stack([torch.ones_like(c), torch.cos(w * c), torch.sin(w * c),
                        torch.cos(2 * w * c), torch.sin(2 * w * c)], 1)  # [b, 5]


def residual(tokens, y, k):
    x = terms(tokens, k)
    return float(((y - x @ torch.linalg.lstsq(x, y).solution) ** 2).sum())


def fit(tokens, target):
    y = target.double()  # [n, n_units]
    k = min(range(1, P // 2 + 1), key=lambda f: residual(tokens, y, f))
    return {"frequency": torch.tensor(float(k)), "theta": torch.linalg.lstsq(terms(tokens, k), y).solution.float()}


def replace(tokens, params, task):
    out = terms(tokens, float(params["frequency"])) @ params["theta"].double()  # [b, n_units]
    return torch.relu(out).float().contiguous()
