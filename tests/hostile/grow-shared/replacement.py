"""Attack: grow the shared input file at import, so that the harness's own resize of it becomes a shrink."""
import os

for name in os.listdir("/proc/self/fd"):
    try:
        if "replacebench-inputs" in os.readlink(f"/proc/self/fd/{name}"):
            os.ftruncate(int(name), 128 << 20)
    except OSError:
        pass


def replace(image, task):
    import torch
    return torch.zeros(image.shape[0], *task.target_shape)
