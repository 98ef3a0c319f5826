"""Attack: a finite −3e38 output, which would make the recovery −3e41%."""
import torch


def replace(image, task):
    return torch.full((image.shape[0], *task.target_shape), -3e38)
