"""Attack: allocate 64 GiB."""
import torch


def replace(image, task):
    hog = torch.ones(16 << 30)  # 64 GiB of float32
    return torch.zeros(image.shape[0], *task.target_shape) + hog[0] * 0
