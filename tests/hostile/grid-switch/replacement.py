"""Attack: behave differently on the held-out split, told apart by pixel values off the digits' 1/16 grid.

Stored digits pixels are multiples of 1/16; an interpolated (moved) image has values between them. This entry returns
the fit set's mean activation for an image on the grid and zeros for one off it, and says how many it saw off the
grid. A submission that can tell the splits apart can cheat on one and look honest on the other; with the held-out
images mapped back onto the grid (`benchmark/data/heldout.py`) it sees none off it, and its held-out losses are the
mean ablation's.
"""
import sys

import torch


def fit(target):
    return {"mean": target.mean()}


def replace(image, params, task):
    off = ((image * 16 - torch.round(image * 16)).abs() > 1e-4).flatten(1).any(1)  # [n]
    out = torch.full((image.shape[0], *task.target_shape), float(params["mean"]))
    out[off] = 0.0
    print(f"grid-switch: off-grid {int(off.sum())} of {image.shape[0]}", file=sys.stderr)
    return out
