"""The package's import graph: no cycle (issue 8: fetch_inception ↔ models.registry had one), and folders import
one way only, down the layers below (issue 16).

Every `from .x import` / `import benchmark.x` edge between the package's own modules is read from the source with
`ast`, lazy imports inside functions included (they make a cycle, and tie a layer to a higher one, just the same).

Cycles: imports under `if TYPE_CHECKING:` never run, so they cannot close a cycle at import time and are left out
(`record.report` names `Record` in annotations only, while `Record.__str__` imports the report).

Layers, bottom to top; a module may import its own layer and any lower one, never a higher one (annotation-only
imports under `TYPE_CHECKING` included: a lower layer does not even name a higher layer's types):

0. base: the package itself (`__version__`), `errors`, `paths`, `atomic`, `download`, `stats`, `intervals`,
   `tasks`, `zoo`: plain values, files and statistics that everything uses and that use nothing above them.
1. `sandbox`: runs a submission's code in child processes and checks what crosses back (`sandbox/checks.py`). It
   knows tasks (base) but not how a task is scored, so it never imports the harness: the room takes any snapshot
   with a folder and a name.
2. `data`, `models`: datasets and networks, loaded from the zoo's specs; neither runs submissions.
3. `kinds`: the adapter per kind of data (images, tokens): inputs to the device, where units sit, the loss, the
   held-out split (from `data`); the harness asks it and nothing else what depends on the kind.
4. `record`: the typed result record, its schema, migrations, files, provenance and report. Only base below it:
   the harness writes records and the board reads them, so it sits under both.
5. `harness`: scoring (contexts, passes, conditions, the runner, the cluster); uses the sandbox, data, models and
   writes records; it never imports the board (ranking and rendering come after scoring, `verify` re-scores by
   calling down into the harness, and the cluster's `verify_on_cluster` is handed the board's checks).
6. `analysis`, `maintainer`: diagnosis and figures, and the maintainer's tools (training, selection, fetching),
   built on the harness, the models and the data; neither imports the other.
7. `board`: ranking, rendering (Markdown board, static site), runs and publishing, comparison and `verify`; it uses
   the analysis's figure helpers.
8. `api`: the Python API, a thin client of everything below.
9. `cli`, `__main__`: the command line, on top of the API.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "benchmark"

LAYERS: list[tuple[str, ...]] = [
    ("benchmark", "errors", "untrusted", "paths", "atomic", "download", "stats", "intervals", "tasks", "zoo"),
    ("sandbox",),
    ("data", "models"),
    ("kinds",),
    ("record",),
    ("harness",),
    ("analysis", "maintainer"),
    ("board",),
    ("api",),
    ("cli", "__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of every node under an `if TYPE_CHECKING:` (or `if typing.TYPE_CHECKING:`) block."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def edges(type_checking: bool = True) -> dict[str, set[str]]:
    """module → the package's modules it imports; `type_checking` False leaves out imports under TYPE_CHECKING."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skip = set() if type_checking else _type_checking_nodes(tree)
        # lazy imports inside functions count too, except the package's own lazy exports (its `__getattr__` runs
        # only when a user asks for `rb.score` and the like, never while a module of the package imports it)
        nodes = tree.body if name == "benchmark" else ast.walk(tree)
        for node in nodes:
            if id(node) in skip:
                continue
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


def layer_of(module: str) -> int:
    """The layer (index into LAYERS) of a module: that of its folder, or of the top-level module itself."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else parts[0]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} is in no layer: add '{top}' to LAYERS in tests/test_import_graph.py, and say why")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer into a higher one, as 'a (layer) → b (layer)'."""
    return [f"{a} ({'/'.join(LAYERS[layer_of(a)])}) → {b} ({'/'.join(LAYERS[layer_of(b)])})"
            for a in sorted(graph) for b in sorted(graph[a]) if layer_of(b) > layer_of(a)]


def test_no_import_cycle():
    graph = edges(type_checking=False)
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


def test_folders_import_downward_only():
    """No module imports a module of a higher layer (LAYERS), lazily, at the top, or for annotations."""
    graph = edges()
    assert upward_imports(graph) == []
    # the two rules issue 16 named, spelled out: the sandbox never imports the harness, the harness never the board
    for module, targets in graph.items():
        if module.startswith("benchmark.sandbox."):
            assert not any(t.startswith("benchmark.harness") for t in targets), module
        if module.startswith(("benchmark.harness.", "benchmark.record.")):
            assert not any(t.startswith("benchmark.board") for t in targets), module
    # the layering is real: these edges exist and run downward
    assert "benchmark.record.typed" in graph["benchmark.harness.runner"]
    assert "benchmark.kinds" in graph["benchmark.harness.context"]
    assert "benchmark.sandbox.checks" in graph["benchmark.sandbox.room"]


def test_the_layer_check_catches_an_upward_import():
    """A lazy import of the board inside a harness function, and an annotation-only import of the harness in the
    sandbox, are both reported."""
    graph = {m: set(t) for m, t in edges().items()}
    graph["benchmark.harness.runner"].add("benchmark.board.leaderboard")
    graph["benchmark.sandbox.room"].add("benchmark.harness.submissions")
    assert upward_imports(graph) == [
        "benchmark.harness.runner (harness) → benchmark.board.leaderboard (board)",
        "benchmark.sandbox.room (sandbox) → benchmark.harness.submissions (harness)",
    ]


def test_every_module_has_a_layer():
    for module in edges():
        layer_of(module)


def test_every_name_the_benchmark_scripts_import_from_the_package_exists():
    """`benchmarks/*.py` run outside the suite, so a refactor that moves a name (as issue 16 moved
    `runner.compute_record` to the session) would break them silently: each `from benchmark… import name` resolves."""
    import importlib

    missing = []
    for script in sorted((ROOT.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "benchmark":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
                    if not hasattr(module, alias.name) and not submodule:
                        missing.append(f"{script.name}: {node.module}.{alias.name}")
    assert not missing, missing
