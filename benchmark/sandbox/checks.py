"""What crosses back from a submission's child, checked in the harness's process: the signatures its functions
declare, the output of `replace` and the parameters `fit` returns.

The room (`room.py`) applies these to every answer; `harness.submissions.check_signatures` applies the signature
checks to what the source declares, before any model loads, with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SubmissionError, UserError, did_you_mean
from ..tasks import Task

RESERVED_REPLACE = ("task", "params")
RESERVED_FIT = ("task", "target")
MAX_ABS_OUTPUT = 1e4  # |value| a replacement may return; far above any activation of the shipped models
PARAMETER_KINDS = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD")


@dataclass(frozen=True)
class Signature:
    """Which inputs a function reads, which reserved names it takes, and which of those have defaults."""

    inputs: tuple[str, ...]
    reserved: tuple[str, ...]
    defaults: tuple[str, ...] = ()


def _parameters(described: Any, where: str) -> list[tuple[str, str, bool]]:
    """A child's description of a signature, checked for form: [[name, kind, has_default], ...]."""
    if not isinstance(described, list) or len(described) > 256:
        raise SubmissionError(f"{where}: the child sent a malformed signature")
    out = []
    for item in described:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and item[0].isidentifier()
                and item[1] in PARAMETER_KINDS and isinstance(item[2], bool)):
            raise SubmissionError(f"{where}: the child sent a malformed signature")
        out.append((item[0], item[1], item[2]))
    return out


def read_signature(described: Any, task: Task, reserved: tuple[str, ...], where: str) -> Signature:
    """The inputs and reserved names a function declares; an input the task does not allow is an error."""
    wanted: list[str] = []
    used_reserved: list[str] = []
    defaults: list[str] = []
    for name, kind, has_default in _parameters(described, where):
        if has_default:
            defaults.append(name)
        if kind == "VAR_KEYWORD":
            wanted.extend(x for x in task.inputs if x not in wanted)
        elif kind == "VAR_POSITIONAL":
            raise UserError(f"{where}: *{name} is not supported; name the inputs you read, e.g. ({', '.join(task.inputs)}).")
        elif name in reserved:
            used_reserved.append(name)
        elif name in task.inputs:
            wanted.append(name)
        elif has_default:
            continue  # a parameter with a default that the harness does not fill
        else:
            choices = list(task.inputs) + list(reserved)
            raise UserError(
                f"{where}: parameter '{name}' is not an input task {task.id} allows "
                f"({', '.join(task.inputs)}) nor one of {', '.join(reserved)}.{did_you_mean(name, choices)}"
            )
    return Signature(inputs=tuple(wanted), reserved=tuple(used_reserved), defaults=tuple(defaults))


def check_params_have_fit(replace: Signature, where: str) -> None:
    """A submission without fit(): replace() may read 'params' only with a default."""
    if "params" in replace.reserved and "params" not in replace.defaults:
        raise UserError(f"{where}: replace() reads 'params' but the submission defines no fit(); add fit() or drop 'params'.")


def check_output(arrays: dict[str, np.ndarray], expected_shape: tuple[int, ...], who: str) -> np.ndarray:
    """What crossed back from `replace`: one float32 array `out` of `expected_shape`, finite, |value| ≤ MAX_ABS_OUTPUT."""
    value = arrays.get("out")
    if set(arrays) != {"out"} or value is None:
        raise SubmissionError(f"{who}: the child answered with arrays {sorted(arrays)}, not one output")
    if value.shape != tuple(expected_shape) or value.dtype != np.float32:
        raise SubmissionError(f"{who} returned shape {value.shape}; expected {tuple(expected_shape)} ([batch, n_units, ...]).")
    finite = np.isfinite(value)
    if not finite.all():
        raise SubmissionError(f"{who} returned {int((~finite).sum())} non-finite values (NaN or inf); every value must be finite.")
    if value.size and float(np.abs(value).max()) > MAX_ABS_OUTPUT:
        raise SubmissionError(f"{who} returned a value of magnitude {float(np.abs(value).max()):.3g}; "
                              f"every value must lie within ±{MAX_ABS_OUTPUT:g}.")
    return value


def check_params(arrays: dict[str, np.ndarray], who: str) -> dict[str, np.ndarray]:
    """What crossed back from `fit`: named finite float32 arrays."""
    for key, value in arrays.items():
        if value.dtype != np.float32 or not np.isfinite(value).all():
            raise SubmissionError(f"{who}: params['{key}'] holds non-finite values (NaN or inf); every stored number must be finite.")
    return arrays
