"""Attack: search the file system for the model's safetensors checkpoint and compute the unit from its weights."""
import os

import torch

WEIGHTS = None
for root in ("/work", "/root", "/home", "/tmp", "/", os.path.expanduser("~")):
    for folder, _, files in os.walk(root):
        if "digits-mlp.safetensors" in files:
            from safetensors.torch import load_file

            WEIGHTS = load_file(os.path.join(folder, "digits-mlp.safetensors"))
            break
    if WEIGHTS is not None:
        break


def replace(image, task):
    if WEIGHTS is not None:
        names = sorted(k for k in WEIGHTS if k.endswith("weight"))
        w, b = WEIGHTS[names[0]], WEIGHTS[names[0].replace("weight", "bias")]
        pre = image.reshape(image.shape[0], -1) @ w[list(task.units)].T + b[list(task.units)]
        return torch.relu(pre).float()
    return torch.zeros(image.shape[0], *task.target_shape)
