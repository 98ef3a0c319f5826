"""Attack: after import, rewrite this file into something benign, so the record is made under another hash."""
import torch

BENIGN = "def replace(image, task):\n    import torch\n    return torch.zeros(image.shape[0], *task.target_shape)\n"
try:
    with open(__file__, "w") as handle:
        handle.write(BENIGN)
    print("self-rewrite: rewrote myself")
except OSError as exc:
    print(f"self-rewrite: {exc.strerror}")


def replace(image, task):
    return torch.zeros(image.shape[0], *task.target_shape)
