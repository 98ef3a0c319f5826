"""Attack: beat the neuron by looking up public labels (digits-mlp/fc1:17).

`answers.npz` (written by tests/test_heldout.py from the public data and the public model, as anyone could) holds
the public eval images `images` [900, 64] float32, their `labels` [900], and per class c the unit value `push[c]`
that most lowers the mean loss of class c's public eval examples. An image found byte for byte among the
memorised ones gets push[its label]; any other image gets the fit set's mean activation (what `fit` returns).
On the public eval set every image is found; on the held-out split (moved images) none is.
"""
import os
import sys

import numpy as np
import torch

ANSWERS = np.load(os.path.join(os.path.dirname(__file__), "answers.npz"))
KEYS = {row.tobytes(): int(label) for row, label in zip(ANSWERS["images"], ANSWERS["labels"])}
PUSH = ANSWERS["push"]


def fit(target):
    return {"mean": target.mean()}


def replace(image, params, task):
    rows = image.reshape(image.shape[0], -1).numpy().astype(np.float32)
    out = torch.full((image.shape[0], *task.target_shape), float(params["mean"]))
    found = 0
    for i, row in enumerate(rows):
        label = KEYS.get(row.tobytes())
        if label is not None:
            out[i] = float(PUSH[label])
            found += 1
    print(f"label-lookup: found {found} of {len(rows)}", file=sys.stderr)
    return out
