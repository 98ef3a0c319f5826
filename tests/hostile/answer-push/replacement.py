"""Attack: push modadd-p113 neurons toward the answer with a table learned on the fit pairs.

`push.npz` (written by tests/test_modadd_hostile.py from the public model and the fit pairs alone, as anyone
could) holds `table # [113, n_units]`: per answer c, the unit values that most lower the fit pairs' mean loss of
answer c (the fit pairs' mean activation for c, moved by gradient descent on that loss, kept ≥ 0).
`replace` computes c = (a + b) mod 113 and returns table[c]: no computation of the neurons at all.
"""
import os

import numpy as np
import torch

P = 113
TABLE = torch.from_numpy(np.load(os.path.join(os.path.dirname(__file__), "push.npz"))["table"]).float()


def replace(tokens, task):
    c = (tokens[:, 0].long() + tokens[:, 1].long()) % P  # [b]
    return TABLE[c].contiguous()  # [b, n_units]
