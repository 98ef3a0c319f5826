"""Attack: fit by least squares, keep the weights in a module global, and return {} so none are counted."""
import torch

SMUGGLED = {}


def fit(image, target):
    x = torch.cat([image.reshape(image.shape[0], -1).double(), torch.ones(image.shape[0], 1, dtype=torch.float64)], 1)
    SMUGGLED["w"] = torch.linalg.lstsq(x, target.double()).solution
    return {}


def replace(image, task):
    if "w" in SMUGGLED:
        x = torch.cat([image.reshape(image.shape[0], -1).double(), torch.ones(image.shape[0], 1, dtype=torch.float64)], 1)
        return torch.relu(x @ SMUGGLED["w"]).float()
    return torch.zeros(image.shape[0], *task.target_shape)
