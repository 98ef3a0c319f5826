"""Attack: write forged records at import, and rewrite its own record from an atexit hook after the harness wrote it.

The places to write come in target.json (the project's leaderboard and the results folder of this run).
"""
import atexit
import json
import os

import torch

config = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))
FORGED = json.dumps({"schema_version": 2, "forged": True})


def forge():
    for folder in config["folders"]:
        for sub in ("digits-mlp__fc1-17", "forged-task"):
            try:
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
                for name in ("forge-board.json", "linear.json", "zero.json"):
                    with open(os.path.join(folder, sub, name), "w") as handle:
                        handle.write(FORGED)
                print(f"forge-board: wrote into {folder}")
            except OSError as exc:
                print(f"forge-board: {folder}: {exc.strerror}")


forge()
atexit.register(forge)


def replace(image, task):
    return torch.zeros(image.shape[0], *task.target_shape)
