"""Default limits for a submission's children, per dataset (`zoo.DatasetSpec`); `score --time-limit/--memory-limit`
override them.

Each child (the fit child and the replace child) gets the full budget:
time is the total wall time the harness waits on it, import included.
"""

from __future__ import annotations

import re

from ..errors import UserError
from ..zoo import dataset_spec
from .process import Limits

GiB = 1 << 30
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str) -> int:
    """'8G', '512M', '1073741824' → bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--memory-limit {text!r} is not a size; use e.g. 8G, 512M or a number of bytes.")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def limits_for(dataset: str, time_s: float | None = None, memory: str | None = None) -> Limits:
    spec = dataset_spec(dataset)
    base = Limits(time_s=spec.time_limit_s, memory_bytes=spec.memory_limit_gib * GiB)
    if time_s is not None and not time_s > 0:
        raise UserError(f"--time-limit {time_s} must be a positive number of seconds.")
    return Limits(time_s=float(time_s) if time_s is not None else base.time_s,
                  memory_bytes=parse_memory(memory) if memory is not None else base.memory_bytes,
                  processes=base.processes, file_bytes=base.file_bytes)
