"""The one object the harness talks to about a submission: `IsolatedSubmission`.

It holds the submission's snapshot (hashed before any of its code ran), starts
its children, and validates everything that crosses back. The scoring code
never sees a module, a function or a tensor of the submission's: only checked
signatures, float32 arrays and messages. Inputs cross to the children as float32,
or int64 for integer inputs (token ids); answers cross back as float32 only.

- `fit` runs in one child and `replace` in a fresh one, never at the same
  time: the replace child is forked only once the fit child and everything
  it started are gone (`Child.close`), each on its own copy of the snapshot,
  so the only state passed between them is what `fit` returned and every
  stored number is counted. No lock, socket, key, file or timing can carry
  anything from one to the other.
- The zygote (one per harness process) imports torch while the harness loads
  the model and its baseline; the first child is forked from it when `load`
  is called, after the baseline exists, and only then imports the
  submission's code. A submission with a fit step gets its replace child at
  `start_replace`, after its fit; one without gets it at `load`.
- `--in-process` (`isolate=False`) runs the same requests in the harness's own
  process, for debugging: nothing is isolated and the record says so.
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from ..errors import SubmissionError, UserError
from ..tasks import Task
from ..untrusted import one_line, safe_lines
from .checks import (
    RESERVED_FIT,
    RESERVED_REPLACE,
    Signature,
    check_output,
    check_params,
    check_params_have_fit,
    read_signature,
)
from .process import ZYGOTE, Child, Limits, isolation_problem
from .protocol import Arrays, wire_array
from .worker import TaskView, Worker, handle

MAX_MESSAGE = 2000
MAX_TRACEBACK = 64_000
MAX_PARAMS_BYTES = 1 << 30  # what fit may return (256 M numbers): the harness holds it in memory
MECHANISM = ("user, mount, PID, network, IPC and UTS namespaces (unshare(2)); a private read-only snapshot per child; "
             "fit's child gone before replace's starts; rlimits (memory: RLIMIT_AS)")


class Snapshot(Protocol):
    """What the room needs of a submission's snapshot (`harness.submissions.Snapshot`, which the sandbox does not
    import): the read-only folder its children see, its name for messages, and each rendered file's line map
    (the line the children run → the line as written)."""

    @property
    def folder(self) -> Path: ...

    @property
    def name(self) -> str: ...

    @property
    def line_maps(self) -> dict[str, dict[int, int]]: ...


#: A traceback's frame line: `File "<folder>/<relative path>", line <n>`.
FRAME = re.compile(r'File "(?P<path>[^"\n]*)", line (?P<line>\d+)')


def original_lines(text: str | None, folders: tuple[str, ...], line_maps: dict[str, dict[int, int]]) -> str | None:
    """A submission's traceback with each of its frames' line numbers mapped back to the file as written (the
    children run a canonical rendering, `harness.description.render`); other frames are left as they are."""
    if text is None or not line_maps:
        return text

    def back(match: re.Match[str]) -> str:
        path = match.group("path")
        for folder in folders:
            if path.startswith(folder.rstrip("/") + "/"):
                lines = line_maps.get(path[len(folder.rstrip("/")) + 1 :], {})
                line = int(match.group("line"))
                if line in lines:
                    return f'File "{path}", line {lines[line]}'
        return match.group()

    return FRAME.sub(back, text)


def _clean(text: Any, limit: int, lines: bool = False) -> str | None:
    """Text from a child, safe to print (`untrusted`): bounded length, on one line or (`lines`, a traceback) split at
    newlines only; no control, format or separator characters."""
    if not isinstance(text, str):
        return None
    return safe_lines(text, limit) if lines else one_line(text, limit)


class LocalChild:
    """The same requests served in this process (`--in-process`): no isolation, no limits."""

    def __init__(self, snapshot: Snapshot, label: str):
        self.label = label
        self.worker = Worker(str(snapshot.folder))

    def receive_ready(self) -> None:
        pass

    def request(self, header: dict[str, Any], arrays: Arrays | None, max_bytes: int) -> tuple[dict[str, Any], Arrays]:
        interrupted: list[bool] = []

        def on_sigint(signum: int, frame: Any) -> None:
            interrupted.append(True)
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
        try:
            reply, out = handle(self.worker, header, {k: wire_array(v).copy() for k, v in (arrays or {}).items()})
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if interrupted:  # the user's own Ctrl-C, not one the submission raised
            raise KeyboardInterrupt
        return reply, {k: np.array(v, dtype=np.float32) for k, v in out.items()}

    def close(self) -> None:
        pass


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class IsolatedSubmission:
    """A submission in its own rooms. Use as a context manager; `close()` ends every child."""

    def __init__(self, snapshot: Snapshot, limits: Limits, isolate: bool = True):
        if isolate:
            problem = isolation_problem()
            if problem is not None:
                raise UserError(problem)
        self.snapshot, self.limits, self.isolate = snapshot, limits, isolate
        self.replace_signature: Signature | None = None
        self.fit_signature: Signature | None = None
        self._fit_child: Child | LocalChild | None = None
        self._replace_child: Child | LocalChild | None = None
        self._setup: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None  # the replace child's setup request
        self._described: dict[str, Any] | None = None  # what the first child's import declared
        self._memory_mechanisms: set[str] = set()
        if isolate:
            ZYGOTE.start()  # imports torch in the background while the harness loads the model and the baseline

    def _start(self, label: str) -> Child | LocalChild:
        if self.isolate:
            return Child(self.snapshot.folder, self.limits, label)
        return LocalChild(self.snapshot, label)

    @property
    def isolation(self) -> dict[str, Any]:
        """What the record states about how the submission ran."""
        if not self.isolate:
            return {"level": "none", "mechanism": "in-process (--in-process): not isolated"}
        mechanism = MECHANISM
        if self._memory_mechanisms:
            mechanism = MECHANISM[:-1] + " and " + " / ".join(sorted(self._memory_mechanisms)) + ")"
        return {"level": "namespaces", "mechanism": mechanism, "limits": self.limits.to_json()}

    def __enter__(self) -> IsolatedSubmission:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for child in (self._fit_child, self._replace_child):
            if child is not None:
                child.close()
        self._fit_child = self._replace_child = None

    # -- requests ------------------------------------------------------------------------------------------------
    def _ask(self, child: Child | LocalChild | None, header: dict[str, Any], arrays: Arrays | None,
             max_bytes: int) -> tuple[dict[str, Any], Arrays]:
        assert child is not None
        reply, out = child.request(header, arrays, max_bytes)
        if not reply["ok"]:
            message = _clean(reply.get("message"), MAX_MESSAGE) or "failed"
            if self.isolate and ("MemoryError" in message or "allocate memory" in message.lower()):
                message += f" (its memory limit is {self.limits.memory_bytes / (1 << 30):g} GiB; raise it with --memory-limit)"
            trace = original_lines(_clean(reply.get("traceback"), MAX_TRACEBACK, lines=True),
                                   (str(self.snapshot.folder), "/submission"), getattr(self.snapshot, "line_maps", {}))
            raise SubmissionError(f"{child.label}: {message}", trace)
        return reply, out

    def load(self, task: Task) -> None:
        """Import the code in the first child and check its signatures against the task.

        With a fit step, that child is the fit child, and the replace child starts after it (`start_replace`);
        without, it is the replace child."""
        where = f"submission '{self.snapshot.name}'"
        # Labelled "(import)" while it imports the code (a submission without fit has no "(fit)" to blame), then by
        # the function the child runs.
        child = self._start(f"{where} (import)")
        try:
            described = self._load_child(child)
        except BaseException:
            child.close()
            raise
        self._described = described
        self.replace_signature = read_signature(described["replace"], task, RESERVED_REPLACE, f"{where} replace()")
        if described["fit"] is not None:
            self.fit_signature = read_signature(described["fit"], task, RESERVED_FIT, f"{where} fit()")
            self._fit_child, child.label = child, f"{where} (fit)"
        else:
            check_params_have_fit(self.replace_signature, where)
            self._replace_child, child.label = child, f"{where} (replace)"

    def _load_child(self, child: Child | LocalChild) -> dict[str, Any]:
        """Wait for a fresh child, import the code there; the functions it declares."""
        child.receive_ready()
        if isinstance(child, Child) and child.memory_group is not None:  # joined: the record names it
            self._memory_mechanisms.add(child.memory_group.mechanism)
        reply = self._ask(child, {"op": "load"}, None, 0)[0]
        return {"replace": reply.get("replace"), "fit": reply.get("fit")}

    def _open_replace_child(self) -> None:
        """Start the replace child, now that no fit child is left, and check it declares what the first did."""
        where = f"submission '{self.snapshot.name}'"
        self._close_fit_child()  # gone, with everything it started, before the replace child exists
        child = self._replace_child = self._start(f"{where} (import)")
        if self._load_child(child) != self._described:
            raise SubmissionError(f"{where}: its code declared different functions in two fresh processes; "
                                  "a submission must be deterministic at import")
        child.label = f"{where} (replace)"

    def close_fit_child(self) -> None:
        """End the fit child unused: a shard of a cluster run replaces with the params of a fit that ran once."""
        self._close_fit_child()

    def _close_fit_child(self) -> None:
        if self._fit_child is not None:
            self._fit_child.close()
            self._fit_child = None

    def fit(self, inputs: Arrays, target: np.ndarray | None, view: TaskView) -> dict[str, np.ndarray]:
        """Run `fit` in its child on the fit set; the validated params. The fit child ends here."""
        assert self.fit_signature is not None
        arrays = {name: inputs[name] for name in self.fit_signature.inputs}
        if "target" in self.fit_signature.reserved:
            arrays["target"] = target
        header = {"op": "fit", "task": view.to_json() if "task" in self.fit_signature.reserved else None,
                  "owned": True}  # the fit child's one request: its inputs are never overwritten
        try:
            _, params = self._ask(self._fit_child, header, arrays, max_bytes=min(self.limits.memory_bytes, MAX_PARAMS_BYTES))
        finally:
            self._close_fit_child()
        return check_params(params, f"submission '{self.snapshot.name}' fit()")

    def start_replace(self, view: TaskView, params: dict[str, np.ndarray] | None) -> None:
        """Hand the replace child the task view and the params (all that crosses from fit)."""
        assert self.replace_signature is not None
        sig = self.replace_signature
        pass_params = "params" in sig.reserved and (params is not None or "params" not in sig.defaults)
        header = {"op": "setup", "task": view.to_json(), "pass_task": "task" in sig.reserved, "pass_params": pass_params}
        if self._replace_child is None:
            self._open_replace_child()
        self._setup = (header, params or {})
        self._ask(self._replace_child, header, params or {}, 0)

    def renew_replace(self) -> None:
        """End the replace child and start a fresh one, set up as it was (the same task view and params), so that
        nothing the submission kept from its earlier calls reaches its later ones (`harness.passes.causal_audit`).
        In process (`--in-process`, not isolated) only the module is imported afresh."""
        assert self._setup is not None and self._replace_child is not None
        self._replace_child.close()
        self._replace_child = None
        self._open_replace_child()
        self._ask(self._replace_child, *self._setup, 0)

    def replace(self, inputs: Arrays, expected_shape: tuple[int, ...]) -> np.ndarray:
        """The replacement's output on one batch: a validated float32 array of `expected_shape`."""
        assert self.replace_signature is not None
        arrays = {name: inputs[name] for name in self.replace_signature.inputs}
        max_bytes = 4 * int(np.prod(expected_shape, dtype=np.int64))
        _, out = self._ask(self._replace_child, {"op": "replace", "shape": list(expected_shape)}, arrays, max_bytes)
        return check_output(out, expected_shape, f"submission '{self.snapshot.name}' replace()")
