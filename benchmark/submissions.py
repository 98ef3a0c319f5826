"""Loading a submission and checking what it reads and returns.

A submission is a folder with `submission.toml` (name, authors, kind,
description) and `replacement.py`, which defines `replace(...)` and optionally
`fit(...)`. Both declare what they read by parameter name:

- an allowed input activation of the task (`image`, `conv1`, `mixed3a`, …),
- `**inputs` for every allowed input,
- `task`: a read-only `TaskView`,
- `params`: what `fit` returned (`replace` only),
- `target`: the original activation of the task's units on the fit split (`fit` only).

The harness never hands a submission the model or its weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import lzma
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from . import paths
from .errors import SubmissionError, UserError, did_you_mean, unknown
from .tasks import Task

KINDS = ("baseline", "hand-written", "fitted")
META_FILE = "submission.toml"
CODE_FILE = "replacement.py"
RESERVED_REPLACE = ("task", "params")
RESERVED_FIT = ("task", "target")


@dataclass(frozen=True)
class TaskView:
    """What a submission may know about its task: names and shapes, never weights."""

    id: str
    model: str
    layer: str
    units: tuple[int, ...]
    inputs: tuple[str, ...]
    target_shape: tuple[int, ...]  # per example: (n_units, h, w) or (n_units,)


@dataclass(frozen=True)
class Signature:
    """Which inputs a function reads, and which reserved names it takes."""

    inputs: tuple[str, ...]
    reserved: tuple[str, ...]


@dataclass
class Submission:
    name: str
    path: Path
    kind: str
    authors: tuple[str, ...]
    description: str
    module: ModuleType
    replace: Callable
    fit: Callable | None

    def content_hash(self) -> str:
        """sha256 over the folder's files (names and bytes), sorted; caches excluded."""
        digest = hashlib.sha256()
        for file in _source_files(self.path, all_files=True):
            digest.update(file.relative_to(self.path).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
        return digest.hexdigest()

    def source_bytes_compressed(self) -> int:
        """Size in bytes of the xz-compressed Python source (a description-length proxy)."""
        source = b"".join(f.read_bytes() for f in _source_files(self.path, all_files=False))
        return len(lzma.compress(source, preset=9 | lzma.PRESET_EXTREME))


def _source_files(folder: Path, all_files: bool) -> list[Path]:
    pattern = "*" if all_files else "*.py"
    return sorted(
        f for f in folder.rglob(pattern)
        if f.is_file() and "__pycache__" not in f.parts and not f.name.startswith(".")
    )


def available_submissions() -> list[str]:
    root = paths.submissions_dir()
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).exists()) if root.exists() else []


def resolve_submission_path(name_or_path: str) -> Path:
    """A submission name under `submissions/`, or a path to a submission folder."""
    candidate = Path(name_or_path)
    if candidate.is_dir() and (candidate / META_FILE).exists():
        return candidate.resolve()
    named = paths.submissions_dir() / name_or_path
    if named.is_dir() and (named / META_FILE).exists():
        return named.resolve()
    if candidate.is_dir():
        raise UserError(f"{candidate} has no {META_FILE}; a submission folder needs {META_FILE} and {CODE_FILE}.")
    raise unknown("submission", name_or_path, available_submissions(), "ls submissions/")


def _import_module(code_path: Path, name: str) -> ModuleType:
    module_name = f"replacebench_submission_{hashlib.sha1(str(code_path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, code_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise SubmissionError(f"submission '{name}' failed to import") from exc
    return module


def load_submission(name_or_path: str) -> Submission:
    """Read the metadata and import the code of a submission; check their form."""
    folder = resolve_submission_path(name_or_path)
    meta_path = folder / META_FILE
    try:
        meta = tomllib.loads(meta_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{meta_path}: not valid TOML ({exc}).") from None
    for key in ("name", "authors", "kind", "description"):
        if key not in meta:
            raise UserError(f"{meta_path}: missing '{key}'; it needs name, authors, kind and description.")
    if meta["kind"] not in KINDS:
        raise UserError(f"{meta_path}: kind '{meta['kind']}' must be one of {', '.join(KINDS)}.{did_you_mean(meta['kind'], KINDS)}")
    code_path = folder / CODE_FILE
    if not code_path.exists():
        raise UserError(f"{folder} has no {CODE_FILE}; define replace(...) there.")
    module = _import_module(code_path, str(meta["name"]))
    replace = getattr(module, "replace", None)
    if not callable(replace):
        raise UserError(f"{code_path} defines no function replace(...); add one.")
    fit = getattr(module, "fit", None)
    if fit is not None and not callable(fit):
        raise UserError(f"{code_path}: 'fit' must be a function.")
    authors = meta["authors"] if isinstance(meta["authors"], list) else [meta["authors"]]
    return Submission(
        name=str(meta["name"]), path=folder, kind=str(meta["kind"]), authors=tuple(map(str, authors)),
        description=str(meta["description"]), module=module, replace=replace, fit=fit,
    )


def read_signature(fn: Callable, task: Task, reserved: tuple[str, ...], where: str) -> Signature:
    """The inputs and reserved names `fn` declares; an input the task does not allow is an error."""
    wanted: list[str] = []
    used_reserved: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind == param.VAR_KEYWORD:
            wanted.extend(x for x in task.inputs if x not in wanted)
        elif param.kind == param.VAR_POSITIONAL:
            raise UserError(f"{where}: *{param.name} is not supported; name the inputs you read, e.g. ({', '.join(task.inputs)}).")
        elif param.name in reserved:
            used_reserved.append(param.name)
        elif param.name in task.inputs:
            wanted.append(param.name)
        elif param.default is not inspect.Parameter.empty:
            continue  # a parameter with a default that the harness does not fill
        else:
            choices = list(task.inputs) + list(reserved)
            raise UserError(
                f"{where}: parameter '{param.name}' is not an input task {task.id} allows "
                f"({', '.join(task.inputs)}) nor one of {', '.join(reserved)}.{did_you_mean(param.name, choices)}"
            )
    return Signature(inputs=tuple(wanted), reserved=tuple(used_reserved))


def has_default(fn: Callable, name: str) -> bool:
    """Whether parameter `name` of `fn` has a default value (may be left out)."""
    param = inspect.signature(fn).parameters.get(name)
    return param is not None and param.default is not inspect.Parameter.empty


def check_output(value: object, expected_shape: tuple[int, ...], device: torch.device, who: str) -> torch.Tensor:
    """Validate a replacement's output: a finite float32 tensor of `expected_shape` on `device`."""
    if not isinstance(value, torch.Tensor):
        raise UserError(f"{who} returned {type(value).__name__}; it must return a torch.Tensor of shape {expected_shape}.")
    if tuple(value.shape) != tuple(expected_shape):
        raise UserError(f"{who} returned shape {tuple(value.shape)}; expected {tuple(expected_shape)} ([batch, n_units, ...]).")
    if value.dtype != torch.float32:
        raise UserError(f"{who} returned dtype {value.dtype}; expected torch.float32 (use .float()).")
    if value.device.type != device.type:
        raise UserError(f"{who} returned a tensor on {value.device}; expected {device} (use .to(image.device)).")
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise UserError(f"{who} returned {bad} non-finite values (NaN or inf); every value must be finite.")
    return value


def check_params(value: object, who: str) -> dict[str, torch.Tensor]:
    """Validate what `fit` returned: a dict of tensors (converted from numpy where needed)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{who} returned {type(value).__name__}; fit must return a dict of tensors.")
    params: dict[str, torch.Tensor] = {}
    for key, tensor in value.items():
        if not isinstance(tensor, torch.Tensor):
            try:
                tensor = torch.as_tensor(tensor)
            except (TypeError, ValueError, RuntimeError):
                raise UserError(f"{who}: params['{key}'] is {type(tensor).__name__}; fit must return tensors.") from None
        params[str(key)] = tensor
    return params


def count_params(params: dict[str, torch.Tensor]) -> int:
    """Fitted-parameter count: the total number of stored numbers."""
    return int(sum(t.numel() for t in params.values()))
