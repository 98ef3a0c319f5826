"""Attack: a nested tensor as output."""
import torch


def replace(image, task):
    return torch.nested.nested_tensor([torch.zeros(task.target_shape) for _ in range(image.shape[0])])
