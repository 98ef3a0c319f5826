"""The Python API: score, compare and load results from a script or a notebook (README: Python).

    import benchmark as rb
    record = rb.score("digits-mlp/fc1:17", "linear")          # a typed `Record`; no file written
    sub = rb.Submission.from_functions(replace, fit=fit, name="mine", imports=["torch"])
    record = rb.score("digits-mlp/fc1:17", sub, results_dir="results")
    frame = rb.load_results("results")                         # one row per record
    frame = rb.load_results(runs=True)                         # the runs folder a plain `replacebench score` fills
    rb.publish("mine")                                         # its runs onto the board, as `replacebench publish`

Every submission, including one made from a notebook's functions, runs as `replacebench score` runs it: a hashed
read-only snapshot of its folder, in the sandbox (`sandbox/room.py`). The CLI's `score` and `compare` are thin
clients of the functions here. User mistakes raise `errors.UserError`; a submission that fails raises
`errors.SubmissionError`.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import json
import os
import re
import tempfile
import textwrap
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from .harness.runner import RunOptions
    from .harness.submissions import Snapshot
    from .record.typed import Record
    from .tasks import Task

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------
# submissions


class Submission:
    """A submission folder: a name under `submissions/`, a path, or one written from functions (`from_functions`).

    Scoring never imports it here: `score` takes the usual hashed read-only snapshot of `path` and runs it isolated.
    """

    def __init__(self, folder: PathLike, *, _tempdir: tempfile.TemporaryDirectory | None = None) -> None:
        from .harness.submissions import resolve_submission_path

        self.path: Path = resolve_submission_path(os.fspath(folder))
        self._tempdir = _tempdir  # a generated folder lives as long as this object

    def __repr__(self) -> str:
        return f"Submission({str(self.path)!r})"

    @property
    def name(self) -> str:
        """The folder's name (equal to its submission.toml's `name`)."""
        return self.path.name

    @property
    def code(self) -> str:
        """The text of its `replacement.py`."""
        return (self.path / "replacement.py").read_text()

    @classmethod
    def from_functions(cls, replace: Callable[..., Any], fit: Callable[..., Any] | None = None, *,
                       name: str | None = None, authors: Sequence[str] = ("anonymous",), kind: str = "hand-written",
                       description: str | None = None, imports: Sequence[str] = (),
                       helpers: Sequence[Callable[..., Any]] = (), tasks: Sequence[str] | None = None) -> Submission:
        """A submission written from functions, into a temporary folder, to score through the same isolated path.

        The functions run in the sandbox, in a fresh interpreter, from their source text (`inspect.getsource`): they
        cannot see the notebook's globals. What the generated `replacement.py` holds, in order:

        - `imports`: import statements written at its top, e.g. `["torch", "numpy as np", "from torch import nn"]`
          (an `import` inside a function works too);
        - module-level constants the functions read that are plain literals (numbers, strings, tuples…), copied;
        - `helpers`: other top-level functions they call, copied as written;
        - `fit` (optional) and `replace`, renamed to those names.

        Any other global (a module not in `imports`, an array, a lambda, a class) is refused with an error naming it,
        as are lambdas, nested functions and closures: define a top-level function. Everything written counts toward
        the description length, as in a folder. `name` defaults to replace's name (lower case, `_` → `-`), and
        `description` to the first line of its docstring.
        """
        import_lines, bound = _import_lines(imports)
        functions = [("fit", fit)] if fit is not None else []
        functions.append(("replace", replace))
        helper_names = set()
        for helper in helpers:
            _check_function(helper, "helper")
            helper_names.add(helper.__name__)
        constants: dict[str, Any] = {}
        for role, fn in [*functions, *(("helper", h) for h in helpers)]:
            _check_function(fn, role)
            for global_name in _global_names(fn.__code__):
                if global_name in bound or global_name in helper_names or hasattr(builtins, global_name):
                    continue
                if role != "helper" and global_name == fn.__name__:
                    raise UserError(f"{role} '{fn.__name__}' calls itself by name; a recursive {role} cannot be "
                                    "renamed: move the recursion into a helper (helpers=[...]).")
                if global_name not in fn.__globals__:
                    raise UserError(f"{role} '{fn.__name__}' reads the name '{global_name}', which is not defined; "
                                    "define it, or import it inside the function.")
                value = fn.__globals__[global_name]
                if isinstance(value, types.ModuleType):
                    raise UserError(f"{role} '{fn.__name__}' uses the module '{global_name}' ({value.__name__}), which "
                                    f"the sandbox does not see: pass imports=[{_import_hint(global_name, value)!r}], "
                                    "or import it inside the function.")
                if isinstance(value, types.FunctionType):
                    raise UserError(f"{role} '{fn.__name__}' calls the function '{global_name}': pass it as "
                                    f"helpers=[{global_name}] so its source is written too.")
                if not _is_literal(value):
                    raise UserError(f"{role} '{fn.__name__}' reads the global '{global_name}' "
                                    f"({type(value).__name__}), which the sandbox does not see: only literal constants "
                                    "(numbers, strings, tuples, lists, dicts of them) are copied; compute it inside "
                                    "the function or in fit.")
                constants[global_name] = value
        name = name if name is not None else replace.__name__.lower().replace("_", "-")
        from .harness.submissions import KINDS, NAME_PATTERN

        if not NAME_PATTERN.match(name):
            raise UserError(f"name {name!r} must match [a-z0-9][a-z0-9_-]{{0,63}}; pass name='my-neuron'.")
        if kind not in KINDS:
            raise UserError(f"kind {kind!r} must be one of {', '.join(KINDS)}.")
        authors = [authors] if isinstance(authors, str) else list(authors)
        if not authors or not all(isinstance(a, str) and a for a in authors):
            raise UserError("authors must be a non-empty list of names, e.g. authors=['Ada Lovelace'].")
        if description is None:
            doc = inspect.getdoc(replace) or ""
            description = doc.splitlines()[0] if doc else f"{replace.__name__}, scored from Python"
        head = ['"""Written by benchmark.api.Submission.from_functions."""\n']
        if import_lines:
            head.append("\n".join(import_lines) + "\n")
        if constants:
            head.append("\n".join(f"{k} = {v!r}" for k, v in constants.items()) + "\n")
        defs = [_source(h, h.__name__) for h in helpers] + [_source(fn, role) for role, fn in functions]
        code = "\n".join(head) + "\n\n" + "\n\n".join(defs)
        meta = "".join([
            f"name = {json.dumps(name)}\n",
            f"authors = {json.dumps(authors, ensure_ascii=False)}\n",
            f"kind = {json.dumps(kind)}\n",
            f"description = {json.dumps(description, ensure_ascii=False)}\n",
            *([f"tasks = {json.dumps(list(tasks))}\n"] if tasks is not None else []),
        ])
        tempdir = tempfile.TemporaryDirectory(prefix="replacebench-functions-")
        folder = Path(tempdir.name) / name
        folder.mkdir()
        (folder / "submission.toml").write_text(meta)
        (folder / "replacement.py").write_text(code)
        return cls(folder, _tempdir=tempdir)


def _import_lines(imports: Sequence[str]) -> tuple[list[str], set[str]]:
    """Each entry as an import statement ('numpy as np' → 'import numpy as np'), and the names they bind."""
    if isinstance(imports, str):
        imports = [imports]
    lines, bound = [], set()
    for entry in imports:
        line = entry.strip() if entry.strip().startswith(("import ", "from ")) else f"import {entry.strip()}"
        try:
            tree = ast.parse(line)
        except SyntaxError:
            tree = None
        if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Import, ast.ImportFrom)):
            raise UserError(f"imports entry {entry!r} is not one import, e.g. 'torch', 'numpy as np' or "
                            "'from torch import nn'.")
        for alias in tree.body[0].names:
            bound.add(alias.asname or alias.name.split(".")[0])
        lines.append(line)
    return lines, bound


def _import_hint(name: str, module: types.ModuleType) -> str:
    return module.__name__ if module.__name__ == name else f"{module.__name__} as {name}"


def _check_function(fn: Any, role: str) -> None:
    if not isinstance(fn, types.FunctionType):
        raise UserError(f"{role} must be a function defined with def, not {type(fn).__name__}.")
    if fn.__name__ == "<lambda>":
        raise UserError(f"{role} is a lambda; define a top-level function with def (its source is what is scored).")
    if "<locals>" in fn.__qualname__ or fn.__closure__:
        raise UserError(f"{role} '{fn.__name__}' is defined inside another function (a closure); define it at the "
                        "top level of the notebook or module: only its own source crosses to the sandbox.")


def _global_names(code: types.CodeType) -> list[str]:
    """Names the code (with its nested comprehensions and functions) reads as globals, in order of first use."""
    names: list[str] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and instruction.argval not in names:
            names.append(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += [n for n in _global_names(const) if n not in names]
    return names


def _is_literal(value: Any) -> bool:
    """True for a value whose repr reads back as itself (numbers, strings, and containers of them)."""
    if not isinstance(value, (int, float, complex, str, bytes, bool, type(None), tuple, list, dict, set, frozenset)):
        return False
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _source(fn: types.FunctionType, as_name: str) -> str:
    """The function's source, dedented, its `def` renamed to `as_name`."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        raise UserError(f"cannot read the source of '{fn.__name__}' (defined in {fn.__code__.co_filename}); define it "
                        "in a file or a notebook cell, not with exec.") from None
    if source.lstrip().startswith("@"):
        raise UserError(f"'{fn.__name__}' is decorated; pass an undecorated top-level function.")
    renamed, count = re.subn(rf"^(async\s+)?def\s+{re.escape(fn.__name__)}\s*\(", f"def {as_name}(", source, count=1,
                             flags=re.M)
    if count != 1:
        raise UserError(f"cannot find the def of '{fn.__name__}' in its source.")
    return renamed.rstrip() + "\n"


def as_submission(submission: Submission | PathLike) -> Submission:
    """A `Submission` from a name under `submissions/`, a folder path, or a `Submission`."""
    return submission if isinstance(submission, Submission) else Submission(submission)


def as_task(task: Task | str) -> Task:
    """A `Task` from its id or a `Task`."""
    from .tasks import Task, get_task

    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise UserError(f"task must be a task id such as 'digits-mlp/fc1:17' or a Task, not {type(task).__name__}.")
    if any(ch in task for ch in "*?["):
        raise UserError(f"score takes one task id, not a pattern ('{task}'); list the ids with "
                        f"`replacebench tasks '{task}'`.")
    return get_task(task)


# ----------------------------------------------------------------------------
# scoring: the steps `replacebench score` runs, one function each


def run_options(*, device: str | None = None, data_dir: PathLike | None = None, imagenet_dir: PathLike | None = None,
                eval_size: int | None = None, fit_size: int | None = None, progress: bool = False,
                use_cache: bool = True, in_process: bool = False, time_limit: float | None = None,
                memory_limit: str | None = None, force: bool = False,
                heldout_secret: bytes | None = None) -> RunOptions:
    """The runner's options, from the CLI's flags or `score`'s keywords."""
    from .harness.runner import RunOptions

    return RunOptions(device=device, data_dir=None if data_dir is None else os.fspath(data_dir),
                      imagenet_dir=None if imagenet_dir is None else os.fspath(imagenet_dir), eval_size=eval_size,
                      fit_size=fit_size, progress=progress, use_cache=use_cache, isolate=not in_process,
                      time_limit=time_limit, memory_limit=memory_limit, force=force, heldout_secret=heldout_secret)


def read_heldout_secret(path: PathLike | None, in_process: bool = False) -> bytes | None:
    """The held-out secret's bytes from its file (None without one), read here, in the harness."""
    if path is None:
        return None
    from .data.heldout import read_secret

    if in_process:
        raise UserError("--held-out-secret cannot be combined with --in-process: the submission would run in the "
                        "process that holds the secret.")
    return read_secret(path)


def start_zygote(in_process: bool = False) -> None:
    """Start importing torch for the submission's children now, while this process loads everything else."""
    if not in_process:
        from .sandbox.process import ZYGOTE

        ZYGOTE.start()


def tasks_served(meta_tasks: Iterable[str]) -> list[Task]:
    """The tasks whose ids match a submission's `tasks` globs."""
    import fnmatch

    from .tasks import all_tasks

    patterns = tuple(meta_tasks)
    return [t for t in all_tasks().values() if any(fnmatch.fnmatchcase(t.id, p) for p in patterns)]


def score_snapshot(task: Task, snapshot: Snapshot, options: RunOptions,
                   results_dir: Path | None) -> tuple[Record, Path | None]:
    """Score a snapshot on one task in its scoring session (`session.compute_record`); write its record under
    `results_dir` (None: do not write). The typed record and where it was written (None: not)."""
    from .harness.session import compute_record
    from .record.io import check_overwrite, write_record

    if results_dir is not None and not options.force:
        check_overwrite(results_dir, task.slug(), snapshot, options.split)
    record, arrays, _ = compute_record(task, snapshot, options)
    path = None
    if results_dir is not None:
        path, record = write_record(record, arrays, results_dir, task.slug(), snapshot.meta.name)
    return record, path


def score(task: Task | str, submission: Submission | PathLike, *, results_dir: PathLike | None = None,
          eval_size: int | None = None, fit_size: int | None = None, data_dir: PathLike | None = None,
          imagenet_dir: PathLike | None = None, device: str | None = None, time_limit: float | None = None,
          memory_limit: str | None = None, held_out_secret: PathLike | None = None, use_cache: bool = True,
          force: bool = False, in_process: bool = False, progress: bool = False) -> Record:
    """Score `submission` on `task`, isolated, as `replacebench score SUB --task TASK` does; return its `Record`.

    `results_dir` None (the default) writes no record (`--no-record`); a folder writes `<task-slug>/<name>.json`
    and its sidecar there. The other keywords are the CLI's flags: `eval_size`/`fit_size` (mark the result
    non-standard), `data_dir` (default $REPLACEBENCH_DATA), `imagenet_dir`, `device`, `time_limit` (seconds),
    `memory_limit` ("8G"), `held_out_secret` (a file: score the held-out split), `use_cache=False` (`--no-cache`),
    `force`, `in_process` (debugging only: not isolated).
    """
    secret = read_heldout_secret(held_out_secret, in_process)
    task = as_task(task)
    submission = as_submission(submission)
    from .harness.preflight import check_data_first, check_run
    from .harness.submissions import take_snapshot

    with take_snapshot(str(submission.path)) as snapshot:
        check_run([task], snapshot, secret)  # before torch loads: bad input fails at once
        start_zygote(in_process)
        check_data_first([task], data_dir, imagenet_dir)
        options = run_options(device=device, data_dir=data_dir, imagenet_dir=imagenet_dir, eval_size=eval_size,
                              fit_size=fit_size, progress=progress, use_cache=use_cache, in_process=in_process,
                              time_limit=time_limit, memory_limit=memory_limit, force=force, heldout_secret=secret)
        record, _ = score_snapshot(task, snapshot, options, None if results_dir is None else Path(results_dir))
    return record


def publish(submission: Submission | PathLike, task: str | None = None, force: bool = False, *,
            board_dir: PathLike | None = None) -> list[Path]:
    """Copy the submission's runs (the runs folder's records, `paths.runs_dir()`) onto the board, as
    `replacebench publish SUB [--task GLOB] [--force]`; return the board paths written.

    All or nothing: a stale run (the folder changed since), a non-standard or --in-process run, a run whose task
    changed, or a board record of another version or other authors (unless `force`) raises `UserError` naming each,
    and nothing is written. `board_dir` None: $REPLACEBENCH_BOARD, else leaderboard/results.
    """
    from . import paths
    from .board.runs import publish as publish_runs

    folder = as_submission(submission).path
    board = paths.board_dir() if board_dir is None else Path(board_dir)
    return publish_runs(folder, paths.runs_dir(), board, task, force)


# ----------------------------------------------------------------------------
# reading results


def _results_dir(results_dir: PathLike | None) -> Path:
    from .record.layout import default_results_dir

    return default_results_dir() if results_dir is None else Path(results_dir)


def compare(task: Task | str, a: str, b: str, results_dir: PathLike | None = None) -> dict[str, Any]:
    """Paired comparison of the records of submissions `a` and `b` on `task` (as `replacebench compare --json`).

    `results_dir` None reads each submission's run (the runs folder), else its record on the board, so a run can be
    compared with a published entry before it is published. The dict has the verdict line, the loss difference
    and its CI, both recoveries and their difference with its CI, the p-values and the McNemar tests.
    """
    from .board.compare import compare as compare_records

    if isinstance(task, str) and any(ch in task for ch in "*?["):
        raise UserError(f"compare takes one task id, not a pattern ('{task}'); list the ids with "
                        f"`replacebench tasks '{task}'`.")
    from . import paths

    folders = [paths.runs_dir(), _results_dir(None)] if results_dir is None else [Path(results_dir)]
    return compare_records(folders, as_task(task), a, b)


def load_results(results_dir: PathLike | None = None, *, checked: bool = False, runs: bool = False) -> pd.DataFrame:
    """Every record under `results_dir` (None: the board, leaderboard/results; `runs=True`: the runs folder a plain
    `replacebench score` writes) as a pandas DataFrame, one row per record.

    Records of any schema are migrated; a file that is not a readable record is skipped with a warning. With
    `checked=True` each record must also pass the board's checks (its sidecar's sha256 and every figure recomputed
    from the per-example arrays, `verify.load_checked`); one that fails is skipped with a warning. Columns:
    task, submission, split, kind, authors, primary_ablation, defined, recovery, recovery_low, recovery_high,
    p_beats_ablation, effect, kl_recovery (and _low, _high), mean losses, top1_replaced, fidelity_r_mean,
    description_bits, fitted_parameters, stored_numbers, stored_bits, target_fan_in, copy, replace_seconds_per_example,
    n_eval, standard_protocol, isolation, intervals, created (a UTC timestamp), git_commit, git_dirty, content_hash, path.
    """
    import warnings

    import pandas as pd

    from .board.verify import load_checked
    from .record.layout import find_records
    from .record.row import COLUMNS, result_row
    from .record.typed import Record

    if runs and results_dir is not None:
        raise UserError("load_results takes results_dir or runs=True, not both.")
    from . import paths

    rows = []
    for path in find_records(paths.runs_dir() if runs else _results_dir(results_dir)):
        if checked:
            record, problems = load_checked(path)
            if record is None:
                warnings.warn(f"skipping {path}: {'; '.join(problems)}", stacklevel=2)
                continue
            rows.append(result_row(record, path))
            continue
        try:
            rows.append(result_row(Record.read(path), path))
        except UserError as exc:
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if len(frame):
        frame["created"] = pd.to_datetime(frame["created"], utc=True)
    return frame
