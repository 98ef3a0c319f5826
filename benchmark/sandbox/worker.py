"""The submission's side of the boundary: import its code, call it on plain arrays, hand back plain arrays.

This runs inside the child process (or, with `--in-process`, in the harness's
own process, for debugging). Nothing here is trusted by the harness: the
parent validates every message it gets back. The checks here exist to give the
submission's author a precise message.

Requests (`handle`), each a JSON header plus arrays (float32, or int64 for integer
inputs such as token ids; each reaches the submission as a CPU tensor of that dtype):
- `load`: import `replacement.py` from the snapshot; answer its signatures.
- `fit`: call `fit(**arrays, task=...)`; answer its dict as float32 arrays (answers are float32 only).
- `setup`: keep the params (what `fit` returned, as tensors) and the task view.
- `replace`: call `replace(**arrays, task=..., params=...)`; answer `out`.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import NAME, Arrays

CODE_FILE = "replacement.py"


@dataclass(frozen=True)
class TaskView:
    """What a submission may know about its task: names and shapes, never weights."""

    id: str
    model: str
    layer: str
    units: tuple[int, ...]
    inputs: tuple[str, ...]
    target_shape: tuple[int, ...]  # per example: (n_units, h, w) or (n_units,)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TaskView:
        return cls(id=str(value["id"]), model=str(value["model"]), layer=str(value["layer"]),
                   units=tuple(int(u) for u in value["units"]), inputs=tuple(map(str, value["inputs"])),
                   target_shape=tuple(int(s) for s in value["target_shape"]))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "layer": self.layer, "units": list(self.units),
                "inputs": list(self.inputs), "target_shape": list(self.target_shape)}


class SubmissionFailure(Exception):
    """The submission raised or returned something unusable: a message and, if it raised, its own traceback."""

    def __init__(self, message: str, traceback_text: str | None = None):
        super().__init__(message)
        self.traceback_text = traceback_text


def _own_traceback(exc: BaseException, folder: str) -> str:
    """The traceback from the first frame in the submission's folder (all of it when none is)."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if f.filename.startswith(folder)), None)
    text = ""
    if first is not None:
        text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames[first:]))
    return text + "".join(traceback.format_exception_only(type(exc), exc))


def describe(fn: Any) -> list[list[Any]]:
    """[name, kind, has_default] for each parameter of `fn`."""
    return [[p.name, p.kind.name, p.default is not inspect.Parameter.empty]
            for p in inspect.signature(fn).parameters.values()]


class Worker:
    def __init__(self, folder: str):
        self.folder = folder.rstrip("/") + "/"
        self.module: Any = None
        self.params: dict[str, Any] = {}
        self.view: TaskView | None = None
        self.pass_task = self.pass_params = False  # set by `setup`, which the harness sends before any `replace`

    def _call(self, who: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:  # noqa: B036 - everything the submission raises is its own failure
            detail = f": {exc}" if str(exc) else ""
            raise SubmissionFailure(f"{who} raised {type(exc).__name__}{detail}", _own_traceback(exc, self.folder)) from None

    def load(self) -> dict[str, Any]:
        path = Path(self.folder) / CODE_FILE
        spec = importlib.util.spec_from_file_location("replacement", path)
        if spec is None or spec.loader is None:
            raise SubmissionFailure(f"cannot import {CODE_FILE}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["replacement"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: B036 - whatever the import raises is the submission's own failure
            raise SubmissionFailure(f"failed to import {CODE_FILE} ({type(exc).__name__}: {exc})",
                                    _own_traceback(exc, self.folder)) from None
        self.module = module
        replace, fit = getattr(module, "replace", None), getattr(module, "fit", None)
        if not callable(replace):
            raise SubmissionFailure(f"{CODE_FILE} defines no function replace(...); add one.")
        if fit is not None and not callable(fit):
            raise SubmissionFailure(f"{CODE_FILE}: 'fit' must be a function.")
        return {"replace": self._call("inspecting replace()", describe, replace),
                "fit": None if fit is None else self._call("inspecting fit()", describe, fit)}

    def fit(self, header: dict[str, Any], arrays: Arrays) -> Arrays:
        import torch

        kwargs: dict[str, Any] = {k: torch.from_numpy(v) for k, v in arrays.items()}
        if header.get("task") is not None:
            kwargs["task"] = TaskView.from_json(header["task"])
        value = self._call("fit()", self.module.fit, **kwargs)
        return params_to_arrays(value, "fit()")

    def setup(self, header: dict[str, Any], arrays: Arrays) -> None:
        import torch

        self.params = {k: torch.from_numpy(v) for k, v in arrays.items()}
        self.view = TaskView.from_json(header["task"])
        self.pass_task, self.pass_params = bool(header.get("pass_task")), bool(header.get("pass_params"))

    def replace(self, header: dict[str, Any], arrays: Arrays) -> np.ndarray:
        import torch

        kwargs: dict[str, Any] = {k: torch.from_numpy(v) for k, v in arrays.items()}
        if self.pass_task:
            kwargs["task"] = self.view
        if self.pass_params:
            kwargs["params"] = dict(self.params)
        value = self._call("replace()", self.module.replace, **kwargs)
        return tensor_to_array(value, "replace()", tuple(header["shape"]))


def handle(worker: Worker, header: dict[str, Any], arrays: Arrays) -> tuple[dict[str, Any], Arrays]:
    """Serve one request; a SubmissionFailure becomes an error answer."""
    op = header.get("op")
    try:
        if op == "load":
            return {"ok": True, **worker.load()}, {}
        if op == "fit":
            return {"ok": True}, worker.fit(header, arrays)
        if op == "setup":
            worker.setup(header, arrays)
            return {"ok": True}, {}
        if op == "replace":
            return {"ok": True}, {"out": worker.replace(header, arrays)}
    except SubmissionFailure as failure:
        return {"ok": False, "message": str(failure), "traceback": failure.traceback_text}, {}
    return {"ok": False, "message": f"unknown request {op!r}"}, {}


def tensor_to_array(value: Any, who: str, shape: tuple[int, ...]) -> np.ndarray:
    """A plain, dense, float32 CPU tensor of `shape`, copied out as a float32 array."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise SubmissionFailure(f"{who} returned {type(value).__name__}; it must return a torch.Tensor of shape {shape}.")
    if type(value) is not torch.Tensor:
        raise SubmissionFailure(f"{who} returned a {type(value).__name__} (a torch.Tensor subclass); return a plain torch.Tensor.")
    if value.is_nested or value.layout != torch.strided:
        raise SubmissionFailure(f"{who} returned a {'nested' if value.is_nested else str(value.layout)} tensor; "
                                "return a dense one (e.g. .to_dense()).")
    if tuple(value.shape) != shape:
        raise SubmissionFailure(f"{who} returned shape {tuple(value.shape)}; expected {shape} ([batch, n_units, ...]).")
    if value.dtype != torch.float32:
        raise SubmissionFailure(f"{who} returned dtype {value.dtype}; expected torch.float32 (use .float()).")
    if value.device.type != "cpu":
        raise SubmissionFailure(f"{who} returned a tensor on {value.device}; return it on the inputs' device (cpu).")
    return value.detach().contiguous().numpy().copy()


def params_to_arrays(value: Any, who: str) -> Arrays:
    """What `fit` returned, as float32 arrays: a dict of name → tensor, array or number."""
    import torch

    if not isinstance(value, dict):
        hint = " (return {} to store nothing)" if value is None else ""
        raise SubmissionFailure(f"{who} returned {type(value).__name__}; fit must return a dict of tensors{hint}.")
    out: Arrays = {}
    for key, item in value.items():
        if not isinstance(key, str) or not NAME.match(key):
            raise SubmissionFailure(f"{who}: params key {key!r} must be a name like 'weight' (letters, digits, _; at most 64).")
        if isinstance(item, torch.Tensor):
            if type(item) is not torch.Tensor or item.layout != torch.strided or item.is_nested:
                raise SubmissionFailure(f"{who}: params['{key}'] must be a plain dense torch.Tensor.")
            item = item.detach().cpu().numpy()
        try:
            array = np.asarray(item)
        except (TypeError, ValueError):
            raise SubmissionFailure(f"{who}: params['{key}'] is {type(item).__name__}; fit must return tensors.") from None
        if array.dtype.kind not in "biuf":
            raise SubmissionFailure(f"{who}: params['{key}'] has dtype {array.dtype}; fit must return numeric tensors.")
        out[key] = np.asarray(array, dtype=np.float32, order="C")
    return out
