"""Attack: read the next character from the window itself and push the layer-0 MLP toward it.

The replacement sees the whole window `tokens # [b, 128]` at once, so at position t it can read token t + 1,
which is position t's next-character target: no stored text at all. `push.npz` holds `table # [65, 512]` as
int8 with one float scale (tuned like tests/hostile/text-lookup's, from the public model and the fit set); at
the last position, whose next character is not in the window, it writes the fit set's mean (`mean`).
"""
import os

import numpy as np
import torch

STORE = np.load(os.path.join(os.path.dirname(__file__), "push.npz"))
TABLE = torch.from_numpy(STORE["table"].astype(np.float32) * STORE["scale"].astype(np.float32))  # [65, 512]
MEAN = torch.from_numpy(STORE["mean"].astype(np.float32))  # [512]


def replace(tokens, task):
    out = TABLE[tokens[:, 1:]]  # [b, 127, 512]: position t gets token t + 1, its target
    last = MEAN.expand(len(tokens), 1, -1)
    return torch.cat([out, last], 1).contiguous()  # [b, 128, 512]
