"""Attack: rewrite every baseline cache file it can find (its folder comes in target.json), so later scores lie."""
import glob
import json
import os

import torch

config = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))
for path in glob.glob(os.path.join(config["cache"], "**", "*"), recursive=True):
    try:
        with open(path, "r+b") as handle:
            handle.write(b"poisoned")
        print(f"poison-cache: rewrote {path}")
    except OSError as exc:
        print(f"poison-cache: {path}: {exc.strerror}")


def replace(image, task):
    return torch.zeros(image.shape[0], *task.target_shape)
