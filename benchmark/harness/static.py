"""What the harness learns from a submission's code without running it: that it compiles, that it defines
`replace`, and the parameters `replace` and `fit` declare.

`take_snapshot` calls `read_code` on `replacement.py` as written, so a syntax error or a missing `replace` is
reported at once, before any model loads (the children report the same mistakes, but only after the model and
its baseline are ready). The source is parsed and compiled, never executed: the harness still never imports a
submission.

Only what is certain is reported. A signature is read from the source only when the name is bound exactly once,
by a plain top-level `def` with no decorator, and nothing else in the file could rebind it or change its
signature (`globals()`, `setattr`, `exec`, `import *`, `replace.__signature__ = ...`, a module `__getattr__`, …).
Otherwise the signature is left to the child (`sandbox/room.py`), which checks it after importing the code.
"""

from __future__ import annotations

import ast
import traceback
from dataclasses import dataclass

from ..errors import SubmissionError

#: Names whose use means the module may bind names this reading cannot see.
DYNAMIC_NAMES = frozenset({"globals", "locals", "vars", "exec", "eval", "setattr", "delattr", "__import__",
                           "__getattr__", "__dict__", "__class__", "__builtins__"})

#: A larger file is left to the child, which parses it under the sandbox's memory limit (the harness has none).
MAX_READ_BYTES = 1 << 20

Described = list[list[object]]  # [[name, kind, has_default], ...], as `sandbox.worker.describe` answers


@dataclass(frozen=True)
class StaticCode:
    """What the source of `replacement.py` says for certain.

    `replace` / `fit`: the function's parameters when they are certain, else None (left to the child).
    `fit_absent`: True when nothing in the file can bind `fit`.
    """

    replace: Described | None
    fit: Described | None
    fit_absent: bool


def described(args: ast.arguments) -> Described:
    """[name, kind, has_default] per parameter, as `inspect.signature` would give for a def with these arguments."""
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    out: Described = []
    for i, arg in enumerate(positional):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append([arg.arg, kind, i >= first_default])
    if args.vararg is not None:
        out.append([args.vararg.arg, "VAR_POSITIONAL", False])
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out.append([arg.arg, "KEYWORD_ONLY", default is not None])
    if args.kwarg is not None:
        out.append([args.kwarg.arg, "VAR_KEYWORD", False])
    return out


def _binds(node: ast.AST, name: str) -> bool:
    """Whether `node` may bind or alter `name` (anywhere in the file: a generous reading)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, ast.Name):
        return node.id == name and not isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.alias):
        return (node.asname or node.name.split(".")[0]) == name
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return name in node.names
    if isinstance(node, ast.ExceptHandler):
        return node.name == name
    if isinstance(node, (ast.MatchAs, ast.MatchStar)):
        return node.name == name
    if isinstance(node, ast.MatchMapping):
        return node.rest == name
    if isinstance(node, ast.Attribute):  # x.replace = ..., replace.__defaults__ = ...
        stored = not isinstance(node.ctx, ast.Load)
        return stored and (node.attr == name or (isinstance(node.value, ast.Name) and node.value.id == name))
    return False


def _dynamic(node: ast.AST) -> bool:
    """Whether `node` lets the module bind names by means this reading does not follow."""
    if isinstance(node, ast.alias):
        return node.name == "*" or node.name.split(".")[0] in DYNAMIC_NAMES
    if isinstance(node, ast.Name):
        return node.id in DYNAMIC_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in DYNAMIC_NAMES
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name in DYNAMIC_NAMES
    return False


def read_code(source: bytes, filename: str, who: str) -> StaticCode:
    """Parse and compile `source` (never run it): a SyntaxError, or no `replace` at all, is a `SubmissionError`
    labelled `who (import)`, as the child would report it; otherwise what the source says for certain."""
    if len(source) > MAX_READ_BYTES:
        return StaticCode(replace=None, fit=None, fit_absent=False)
    try:
        tree = ast.parse(source, filename=filename)
        compile(tree, filename, "exec", dont_inherit=True)  # the checks after parsing: e.g. 'return' outside function
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes (Python 3.11)
        detail = "".join(traceback.format_exception_only(type(exc), exc))
        line = f", line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise SubmissionError(f"{who} (import): failed to import {filename.rsplit('/', 1)[-1]} "
                              f"({type(exc).__name__}: {message}{line})", detail) from None
    except (RecursionError, MemoryError):  # too deep to analyse here: the child reports what Python makes of it
        return StaticCode(replace=None, fit=None, fit_absent=False)
    nodes = list(ast.walk(tree))
    if any(_dynamic(node) for node in nodes):
        return StaticCode(replace=None, fit=None, fit_absent=False)
    if not any(_binds(node, "replace") for node in nodes):
        raise SubmissionError(f"{who} (import): {filename.rsplit('/', 1)[-1]} defines no function replace(...); add one "
                              "(its parameters name the inputs it reads: `replacebench tasks` lists them).")
    return StaticCode(replace=_signature(tree, nodes, "replace"), fit=_signature(tree, nodes, "fit"),
                      fit_absent=not any(_binds(node, "fit") for node in nodes))


def _signature(tree: ast.Module, nodes: list[ast.AST], name: str) -> Described | None:
    """The parameters of `name` when it is bound once, by a plain top-level def; else None."""
    if sum(_binds(node, name) for node in nodes) != 1:
        return None
    top = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name and not n.decorator_list]
    return described(top[0].args) if top else None
