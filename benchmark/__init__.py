"""replacebench: replace a neuron with your own account of it, and measure what it recovers.

The Python API (README: Python) is exported lazily, so `import benchmark` stays light (no torch, no pandas):

    import benchmark as rb
    record = rb.score("digits-mlp/fc1:17", rb.Submission.from_functions(replace, imports=["torch"]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: name -> module (relative to this package) that defines it
_EXPORTS = {
    "score": "api", "compare": "api", "load_results": "api", "publish": "api", "Submission": "api",
    "Record": "record.typed", "json_schema": "record.typed",
    "Task": "tasks", "get_task": "tasks", "all_tasks": "tasks",
    "UserError": "errors", "SubmissionError": "errors",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .api import Submission, compare, load_results, publish, score
    from .record.typed import Record, json_schema
    from .errors import SubmissionError, UserError
    from .tasks import Task, all_tasks, get_task


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first use."""
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__))
