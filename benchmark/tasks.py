"""Task files: one TOML file per model in `tasks/`, one `[[task]]` table per target.

A task pins everything a score depends on: the model and its checkpoint sha256,
the dataset with its eval split and size, the fit split submissions may learn
from, the target layer and units, the inputs a replacement may read, the
primary ablation, the metrics and a version. Task ids use lucent's layer:unit
naming, prefixed by the model: `mnist-cnn/conv2:7`; a group task names its
group: `inceptionv1/mixed3b:curves`.

File layout (keys of `[model]`, `[data]` and `[defaults]` may be overridden per task):

    [model]    id, checkpoint (path relative to the project, or "fetched"), sha256
    [data]     dataset, eval_split, eval_size, fit_split, fit_size, seed, batch_size, topk
    [defaults] ablation, version, inputs
    [[task]]   id, layer, units, (inputs), (ablation), (version), description
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from . import paths
from .errors import UserError, unknown

ABLATIONS = ("zero", "mean", "resample")
#: Keys a `[[task]]` table may hold; anything else is a typo we refuse.
TASK_KEYS = {
    "id", "layer", "units", "inputs", "ablation", "version", "description",
    "eval_size", "fit_size", "topk", "seed", "batch_size", "protocol",
}
MODEL_KEYS = {"id", "checkpoint", "sha256"}
DATA_KEYS = {"dataset", "eval_split", "eval_size", "fit_split", "fit_size", "seed", "batch_size", "topk"}
DEFAULT_KEYS = {"ablation", "version", "inputs"}


@dataclass(frozen=True)
class Task:
    """One benchmark task: replace `units` of activation `layer` of `model`."""

    id: str
    model: str
    checkpoint: str  # path relative to the project root, or "fetched" (see models.registry)
    checkpoint_sha256: str  # "" when the published file's hash is not pinned (recorded per result instead)
    dataset: str
    eval_split: str
    eval_size: int
    fit_split: str
    fit_size: int
    seed: int
    layer: str
    units: tuple[int, ...]
    inputs: tuple[str, ...]
    ablation: str
    version: int
    topk: tuple[int, ...] = (1,)
    batch_size: int = 256
    description: str = ""
    protocol: str = ""
    source: str = field(default="", compare=False)

    def content_hash(self) -> str:
        """sha256 of every field that can change a score (not the description or file path)."""
        payload = {k: v for k, v in asdict(self).items() if k not in ("description", "source")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def slug(self) -> str:
        """A file-name-safe form of the id: `mnist-cnn/conv2:7` → `mnist-cnn__conv2-7`."""
        return self.id.replace("/", "__").replace(":", "-")


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise UserError(f"{where}: unknown key '{extra[0]}'; allowed keys are {', '.join(sorted(allowed))}.")


def parse_task_file(path: Path) -> list[Task]:
    """Parse one task file into tasks, refusing unknown keys and malformed values."""
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}). Fix the file.") from None
    model = doc.get("model", {})
    data = doc.get("data", {})
    defaults = doc.get("defaults", {})
    _check_keys(model, MODEL_KEYS, f"{path} [model]")
    _check_keys(data, DATA_KEYS, f"{path} [data]")
    _check_keys(defaults, DEFAULT_KEYS, f"{path} [defaults]")
    tasks = []
    for i, table in enumerate(doc.get("task", [])):
        where = f"{path} task #{i + 1}"
        _check_keys(table, TASK_KEYS, where)
        merged = {**data, **defaults, **table}
        try:
            task = Task(
                id=str(table["id"]),
                model=str(model["id"]),
                checkpoint=str(model["checkpoint"]),
                checkpoint_sha256=str(model.get("sha256", "")),
                dataset=str(merged["dataset"]),
                eval_split=str(merged["eval_split"]),
                eval_size=int(merged["eval_size"]),
                fit_split=str(merged["fit_split"]),
                fit_size=int(merged["fit_size"]),
                seed=int(merged.get("seed", 0)),
                layer=str(table["layer"]),
                units=tuple(int(u) for u in table["units"]),
                inputs=tuple(str(x) for x in merged["inputs"]),
                ablation=str(merged.get("ablation", "zero")),
                version=int(merged.get("version", 1)),
                topk=tuple(int(k) for k in merged.get("topk", (1,))),
                batch_size=int(merged.get("batch_size", 256)),
                description=str(table.get("description", "")),
                protocol=str(table.get("protocol", "")),
                source=str(path),
            )
        except KeyError as exc:
            raise UserError(f"{where}: missing key {exc}. See tasks/README.md for the format.") from None
        if task.ablation not in ABLATIONS:
            raise UserError(f"{where}: ablation '{task.ablation}' is not one of {', '.join(ABLATIONS)}.")
        if not task.id.startswith(f"{task.model}/{task.layer}:"):
            raise UserError(f"{where}: id '{task.id}' must start with '{task.model}/{task.layer}:'.")
        if not task.units or len(set(task.units)) != len(task.units):
            raise UserError(f"{where}: units must be a non-empty list without repeats.")
        tasks.append(task)
    return tasks


@lru_cache(maxsize=8)
def _load_all(directory: str) -> dict[str, Task]:
    registry: dict[str, Task] = {}
    for path in sorted(Path(directory).glob("*.toml")):
        for task in parse_task_file(path):
            if task.id in registry:
                raise UserError(f"task id '{task.id}' is defined twice ({registry[task.id].source} and {path}).")
            registry[task.id] = task
    return registry


def all_tasks(directory: Path | None = None) -> dict[str, Task]:
    """Every task in the task directory, by id, in file order."""
    return _load_all(str(directory or paths.tasks_dir()))


def get_task(task_id: str, directory: Path | None = None) -> Task:
    """The task with this id, or a UserError with a did-you-mean."""
    registry = all_tasks(directory)
    if task_id not in registry:
        raise unknown("task", task_id, registry, "replacebench tasks")
    return registry[task_id]


def select_tasks(pattern: str, directory: Path | None = None) -> list[Task]:
    """Tasks whose id matches a glob pattern (`mnist-cnn/*`), or the one task named exactly."""
    registry = all_tasks(directory)
    if pattern in registry:
        return [registry[pattern]]
    matched = [t for tid, t in registry.items() if fnmatch.fnmatchcase(tid, pattern)]
    if matched:
        return matched
    if not any(ch in pattern for ch in GLOB_CHARS):
        raise unknown("task", pattern, registry, "replacebench tasks")
    corrected = corrected_glob(pattern, registry)
    hint = f" Did you mean '{corrected}'?" if corrected else ""
    raise UserError(f"no task matches '{pattern}'.{hint} List them with `replacebench tasks`.")


GLOB_CHARS = "*?["


def _closest(name: str, choices: list[str]) -> str | None:
    """`name` itself when some choice matches it as a glob, else the closest choice (None: none is close)."""
    if any(fnmatch.fnmatchcase(c, name) for c in choices):
        return name
    if any(ch in name for ch in GLOB_CHARS):
        return None  # a glob part that matches nothing: no single correction to offer
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return close[0] if close else None


def corrected_glob(pattern: str, registry: dict[str, Task]) -> str | None:
    """A misspelt glob with its model and layer parts corrected (`mnist-mpl/*` → `mnist-mlp/*`), when that glob
    matches some task; else None. Parts with glob characters are kept as written."""
    model_part, slash, rest = pattern.partition("/")
    layer_part, colon, unit_part = rest.partition(":")
    model = _closest(model_part, sorted({t.model for t in registry.values()}))
    if model is None:
        return None
    if slash and layer_part:
        layers = sorted({t.layer for t in registry.values() if fnmatch.fnmatchcase(t.model, model)})
        layer = _closest(layer_part, layers)
        if layer is None:
            return None
        layer_part = layer
    corrected = model + slash + layer_part + colon + unit_part
    if corrected == pattern or not any(fnmatch.fnmatchcase(tid, corrected) for tid in registry):
        return None
    return corrected


def task_file_head(model: str, checkpoint: str, sha256: str, *, dataset: str, eval_split: str, eval_size: int,
                   fit_split: str, fit_size: int, seed: int, batch_size: int, topk: tuple[int, ...],
                   inputs: tuple[str, ...] = ()) -> list[str]:
    """The `[model]`, `[data]` and `[defaults]` tables of a generated task file (`select`), as lines; `inputs`
    (when given) is the default of every task."""
    def strings(values: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    return ["[model]", f'id = "{model}"', f'checkpoint = "{checkpoint}"', f'sha256 = "{sha256}"', "",
            "[data]", f'dataset = "{dataset}"', f'eval_split = "{eval_split}"', f"eval_size = {eval_size}",
            f'fit_split = "{fit_split}"', f"fit_size = {fit_size}", f"seed = {seed}", f"batch_size = {batch_size}",
            "topk = [" + ", ".join(str(k) for k in topk) + "]", "",
            "[defaults]", 'ablation = "zero"', "version = 1", *([f"inputs = {strings(inputs)}"] if inputs else [])]
