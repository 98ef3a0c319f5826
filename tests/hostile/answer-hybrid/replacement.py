"""Attack: a real replacement of the neurons, plus a push toward the answer.

`fourier_cluster.py` beside this file is `submissions/fourier-cluster/replacement.py`, copied in by
tests/test_modadd_hostile.py: each neuron of a key-frequency cluster as a ReLU of 7 Fourier terms of (a, b),
fitted on the fit pairs (fidelity r ≈ 0.96). `push.npz` holds `delta # [113, n_units]`, written by the test
from the public model and the fit pairs alone: per answer c, what to add to that replacement's output to lower
the fit pairs' loss of answer c. `replace` returns ReLU-Fourier(a, b) + delta[(a + b) mod 113]: it tracks the
neurons nearly as well as the honest exemplar while it lowers the loss by the answer.
"""
import importlib.util
import os

import numpy as np
import torch

P = 113
HERE = os.path.dirname(__file__)
_spec = importlib.util.spec_from_file_location("fourier_cluster", os.path.join(HERE, "fourier_cluster.py"))
FOURIER = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(FOURIER)
DELTA = torch.from_numpy(np.load(os.path.join(HERE, "push.npz"))["delta"]).double()


def fit(tokens, target):
    return FOURIER.fit(tokens, target)


def replace(tokens, params, task):
    c = (tokens[:, 0].long() + tokens[:, 1].long()) % P  # [b]
    honest = FOURIER.replace(tokens, params, task).double()  # [b, n_units]
    return (honest + DELTA[c]).clamp(0, 1e4).float().contiguous()
