"""Attack: walk inspect.stack() to the harness's local `original` (the real activation) and return it."""
import inspect

import torch


def replace(image, task):
    for frame in inspect.stack():
        original = frame.frame.f_locals.get("original")
        if isinstance(original, torch.Tensor) and original.dim() >= 2:
            return original[:, list(task.units)].float().contiguous()
    return torch.zeros(image.shape[0], *task.target_shape)  # honest fallback: the zero ablation
