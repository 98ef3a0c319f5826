"""Attack: keep the unit's weights in prose, which the description length does not charge for.

WEIGHTS

The test writes the unit's 64 weights and bias where WEIGHTS stands: in this docstring, in the comment
below, in a bare string statement and in submission.toml's description. The code then looks for them in
its own source file, in `__doc__`, through `inspect` and in submission.toml. Run as written, it would copy
the unit exactly; isolated, the harness runs a copy with prose blanked and no metadata file, so it finds
nothing and returns the zero ablation.
"""
import inspect
import os
import re

import torch

# WEIGHTS

"WEIGHTS"

HERE = os.path.dirname(os.path.abspath(__file__))


def _texts():
    yield __doc__ or ""
    for reader in (lambda: open(os.path.join(HERE, "replacement.py")).read(),
                   lambda: inspect.getsource(inspect.getmodule(_texts)),
                   lambda: open(os.path.join(HERE, "submission.toml")).read()):
        try:
            yield reader()
        except Exception as exc:  # noqa: BLE001
            print(f"prose-smuggle: {type(exc).__name__}")


def _weights():
    for text in _texts():
        match = re.search(r"w=\[([^\]]*)\]", text)
        if match:
            numbers = [float(v) for v in match.group(1).split(",")]
            print(f"prose-smuggle: found {len(numbers)} numbers")
            return torch.tensor(numbers, dtype=torch.float64)
    return None


def replace(image, task):
    w = _weights()
    if w is None:
        return torch.zeros(image.shape[0], *task.target_shape)
    x = image.reshape(image.shape[0], -1).double()
    return torch.relu(x @ w[:-1] + w[-1]).float().reshape(image.shape[0], 1)
