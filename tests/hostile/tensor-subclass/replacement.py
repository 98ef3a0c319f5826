"""Attack: a torch.Tensor subclass whose in-place writes do nothing, so the splice leaves the original in place."""
import torch


class Inert(torch.Tensor):
    def __setitem__(self, key, value):
        pass


def replace(image, task):
    return torch.zeros(image.shape[0], *task.target_shape).as_subclass(Inert)
