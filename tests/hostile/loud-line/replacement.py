"""Attack: one 64 MiB line with no newline on stdout (on the first batch), then honest zero answers."""
import os

import torch

SAID = []


def replace(image, task):
    if not SAID:
        SAID.append(True)
        block = b"x" * (1 << 20)
        for _ in range(64):
            os.write(1, block)
    return torch.zeros(image.shape[0], *task.target_shape)
