"""The package's import graph has no cycle (issue 8: fetch_inception ↔ models.registry had one).

Every `from .x import` / `import benchmark.x` edge between the package's own modules, read from the
source with `ast`, lazy imports inside functions included (they make a cycle just the same), must form a DAG.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "benchmark"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def edges() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        # lazy imports inside functions count too, except the package's own lazy exports (its `__getattr__` runs
        # only when a user asks for `rb.score` and the like, never while a module of the package imports it)
        nodes = tree.body if name == "benchmark" else ast.walk(tree)
        for node in nodes:
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from .pkg import sub` needs the module pkg.sub; it needs pkg's own code only for a name pkg defines
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = subs + ([base] if any(t not in modules for t in subs) else [])
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_cycle():
    graph = edges()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " → ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert graph["benchmark.models.registry"] >= {"benchmark.models.weights"}
    assert "benchmark.maintainer.fetch_inception" not in graph["benchmark.models.registry"]
