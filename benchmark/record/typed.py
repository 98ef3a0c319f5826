"""The typed result record, the record's one owner: dataclasses over the record JSON, its JSON schema, a validator.

The harness builds a `Record` (`runner.assemble_record`), `io.write_record` writes `to_dict()`, and every reader (the
board, the site, `api.load_results`) reads a `Record`'s attributes, never the JSON's keys.

`Record.from_dict(d)` migrates `d` to the current schema first (`migrate.upgrade`), so a record of any schema
(1 to 6) loads. `Record.to_dict()` gives back exactly the dict it was made from, key for key and in the same
order, so `json.dumps(Record.from_dict(r).to_dict())` of a schema-6 record equals `json.dumps(r)`: the JSON on disk
never changes format. Keys these classes do not name are kept in each part's `extra`. A part made in code writes
its fields in their declared order (the order below is the order on disk), every field, None as null, except those
marked `OMITTED_IF_NONE`.

`json_schema()` is the published schema (`replacebench schema`, committed as `leaderboard/record.schema.json`);
`validate(instance, schema)` checks a record against it with no dependency beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from ..errors import UserError
from .layout import HELDOUT_SUFFIX, SPLITS
from .migrate import SCHEMA_VERSION, upgrade

SCHEMA_ID = "https://replacebench.invalid/record.schema.json"
#: field metadata: the key is absent from some migrated (pre-schema-6) records, so the schema does not require it
LEGACY_OPTIONAL = {"optional": True}
#: field metadata: optional, and left out of a part made in code while it is None (the JSON has no such key)
OMITTED_IF_NONE = {"optional": True, "omit_if_none": True}


@dataclass
class Part:
    """A JSON object of a record: named fields, the keys it does not name in `extra`, and its key order."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)
    _keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False, kw_only=True)

    additional_properties: ClassVar[bool] = False  # may the schema's object hold keys this class does not name?

    @classmethod
    def _fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "_keys")]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Part:
        """The part for `data`; a named key that is absent is None (and stays absent in `to_dict`)."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__} needs a JSON object, not {type(data).__name__}")
        hints = _hints(cls)
        names = {f.name for f in cls._fields()}
        values = {name: _convert(hints[name], data[name]) if name in data else None for name in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**values, extra=extra, _keys=tuple(data))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the keys it was read with, in their order (a part made in code: its fields, then extra)."""
        names = [f.name for f in self._fields()]
        if self._keys is not None:
            keys = list(self._keys)
        else:
            keys = [f.name for f in self._fields()
                    if not (f.metadata.get("omit_if_none") and getattr(self, f.name) is None)] + list(self.extra)
        keys += [n for n in names if n not in keys and getattr(self, n) is not None]  # set after reading
        keys += [k for k in self.extra if k not in keys]
        return {k: _plain(self.extra[k] if k in self.extra else getattr(self, k)) for k in keys}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    return typing.get_args(tp) if origin in (Union, types.UnionType) else None


def _convert(tp: Any, value: Any) -> Any:
    """`value` (from JSON) as type `tp`, where its shape fits; otherwise unchanged (so nothing is ever lost)."""
    args = _union_args(tp)
    if args is not None:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value)
    if isinstance(tp, type) and issubclass(tp, Part):
        return tp.from_dict(value) if isinstance(value, dict) else value
    origin = typing.get_origin(tp)
    if origin is dict and isinstance(value, dict):
        return {k: _convert(typing.get_args(tp)[1], v) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        return [_convert(typing.get_args(tp)[0], v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Part):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------
# the record's parts; their fields in the order `runner.assemble_record` writes them


@dataclass
class TaskInfo(Part):
    """The task as scored: what it replaces, on which data, and whether its protocol was the standard one."""

    id: str
    version: int
    hash: str
    model: str
    layer: str
    units: list[int]
    inputs: list[str]
    primary_ablation: Literal["zero", "mean", "resample"]
    dataset: str
    eval_split: str
    n_eval: int
    n_fit: int
    topk: list[int]
    standard_protocol: bool | None = field(default=None, metadata=LEGACY_OPTIONAL)
    overrides: dict[str, Any] | None = field(default=None, metadata=LEGACY_OPTIONAL)
    protocol: str | None = field(default=None, metadata=LEGACY_OPTIONAL)


@dataclass
class SubmissionInfo(Part):
    """Who made the submission, what it is, and the hash of its folder as scored."""

    name: str
    kind: Literal["baseline", "hand-written", "fitted"]
    authors: list[str]
    description: str
    content_hash: str


@dataclass
class Bits(Part):
    """Description length by part, in bits (README: Complexity). `names` (their spelling) is 0 before convention 2."""

    code: int
    names: int
    literals: int
    data: int
    fitted: int


@dataclass
class Complexity(Part):
    """Description length and the copy test; None in a migrated pre-schema-3 record (not measured).

    Convention 2 (schema 7): the copy test is `stored_bits ≥ 8 · target_fan_in` and `stored_numbers` is None (the
    test counts bits, not elements); convention 1: `stored_numbers ≥ target_fan_in` and `stored_bits` is None."""

    convention: int | None
    description_bits: int | None
    bits: Bits | None
    code_tokens: int | None
    fitted_parameters: int | None
    literal_numbers: int | None
    data_bytes: int | None
    stored_numbers: int | None
    stored_bits: int | None
    target_fan_in: int | None
    copy: bool | None
    source_bytes_xz: int | None = field(default=None, metadata=LEGACY_OPTIONAL)


@dataclass
class Isolation(Part):
    """How the submission ran: 'namespaces' (with its limits) or 'none'."""

    level: str
    mechanism: str
    limits: dict[str, float] | None = field(default=None, metadata=LEGACY_OPTIONAL)  # time_s may be fractional


@dataclass
class Efficiency(Part):
    """Cost per eval example of the replacement and of the original units."""

    original_macs_per_example: int
    original_seconds_per_example: float
    replace_seconds_per_example: float


@dataclass
class RecoveryFigures(Part):
    """Recovery against one ablation (loss, or KL): the effect, the recovery and their intervals."""

    n: int
    mean_clean: float | None
    mean_ablated: float | None
    mean_replaced: float | None
    effect: float | None
    effect_low: float | None
    effect_high: float | None
    defined: bool
    recovery: float | None
    recovery_low: float | None
    recovery_high: float | None
    p_beats_ablation: float | None
    level: float
    ci_method: str

    additional_properties: ClassVar[bool] = True  # legacy (bootstrap) figures may carry more


@dataclass
class PrimaryRecovery(RecoveryFigures):
    """The recovery against the task's primary ablation, named in `ablation`."""

    ablation: Literal["zero", "mean", "resample"] = field(default=None)  # type: ignore[assignment]


@dataclass
class McNemar(Part):
    """Exact McNemar test: b examples right only with the first condition, c only with the second."""

    b: int
    c: int
    p_value: float | None


@dataclass
class Fidelity(Part):
    """Correlation of the replacement with one original unit on the eval set."""

    unit: int
    pearson_r: float | None
    r2: float | None
    n_samples: int | None = field(default=None, metadata=LEGACY_OPTIONAL)


@dataclass
class Results(Part):
    """Every figure of the scoring run."""

    primary: PrimaryRecovery
    recovery: dict[str, RecoveryFigures]
    kl_recovery: dict[str, RecoveryFigures] | None
    p_at_least_clean: float | None
    mean_loss: dict[str, float | None]
    accuracy: dict[str, dict[str, float | None]]
    mcnemar_replaced_vs_clean: dict[str, McNemar]
    mean_kl_clean_replaced: float | None
    fidelity: list[Fidelity]

    @property
    def fidelity_rs(self) -> list[float]:
        """The activation fidelity's Pearson r of each unit that has one."""
        return [f.pearson_r for f in self.fidelity if f.pearson_r is not None]

    @property
    def mean_fidelity_r(self) -> float | None:
        """The mean over units of the fidelity's Pearson r (units without an r left out; None if none has one)."""
        rs = self.fidelity_rs
        return sum(rs) / len(rs) if rs else None

    @property
    def primary_kl(self) -> RecoveryFigures | None:
        """The KL recovery against the primary ablation (None in a record without KL recovery)."""
        return (self.kl_recovery or {}).get(self.primary.ablation)


@dataclass
class Provenance(Part):
    """What produced the figures: code, data, model, environment, timing."""

    package_version: str
    git_commit: str | None
    git_dirty: bool | None
    task_hash: str
    checkpoint_sha256: str
    data_hash: str
    submission_hash: str
    python: str
    torch: str
    torchvision: str
    numpy: str
    scipy: str
    platform: str
    device: str
    intervals: Literal["hall-fieller", "bootstrap-bca"]
    n_examples: int
    baseline_from_cache: bool
    # the held-out split's transform (`heldout.py`; None on the public split)
    heldout_transform: dict[str, Any] | None = field(metadata=LEGACY_OPTIONAL)
    # how the job ran: {"mode": "serial"} or {"mode": "ray", "address", "workers", "shard"} (cluster.py); records
    # scored before the cluster option have none
    execution: dict[str, Any] | None = field(metadata=LEGACY_OPTIONAL)
    seconds: dict[str, float]
    created: str
    seed: int | None = field(default=None, metadata=OMITTED_IF_NONE)  # bootstrap records (before schema 6)
    bootstrap_resamples: int | None = field(default=None, metadata=OMITTED_IF_NONE)

    additional_properties: ClassVar[bool] = True  # environment figures may grow


@dataclass
class Sidecar(Part):
    """The per-example `.npz` file beside the record, and its sha256."""

    file: str
    sha256: str


@dataclass
class Record(Part):
    """One scoring run of one submission on one task (schema 6). Absent without a written record: `sidecar`."""

    schema_version: int
    split: Literal["public", "held-out"]
    heldout_commitment: str | None
    task: TaskInfo
    submission: SubmissionInfo
    complexity: Complexity
    isolation: Isolation
    efficiency: Efficiency | None
    results: Results
    provenance: Provenance
    sidecar: Sidecar | None = field(default=None, metadata=OMITTED_IF_NONE)  # set by `io.write_record`

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> Record:  # type: ignore[override]
        """A record of any schema, migrated to the current one (`migrate.upgrade`) and typed."""
        return super().from_dict(upgrade(data, where))  # type: ignore[return-value]

    @classmethod
    def read(cls, path: str | Path) -> Record:
        """The record file at `path`, as every reader reads it: migrated, checked against the schema
        (`json_schema`), and its split consistent with its commitment and its file name (`layout.py`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read result record {path} ({exc}); delete it and score again.") from None
        data = upgrade(data, str(path))
        split, commitment = data.get("split"), data.get("heldout_commitment")
        held_out = split == "held-out"  # a held-out record, and only one, has a commitment, and a `.heldout` name
        committed = isinstance(commitment, str) and re.fullmatch(r"[0-9a-f]{64}", commitment) is not None
        if split not in SPLITS or held_out != committed or (not held_out and commitment is not None) \
                or held_out != path.name.endswith(HELDOUT_SUFFIX + ".json"):
            raise UserError(f"{path} has an inconsistent split ({split!r}, commitment {commitment!r}) for its file "
                            "name; score again.")
        problems = validate(data, _schema())
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise UserError(f"{path} is not a valid record: {problems[0]}{more}; score again.")
        return cls.from_dict(data)

    @property
    def recovery(self) -> float | None:
        """The primary recovery (None where undefined)."""
        return self.results.primary.recovery

    def __str__(self) -> str:
        """The report `replacebench score` prints."""
        from .report import format_score

        return format_score(self)


# ----------------------------------------------------------------------------
# JSON schema and validation

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    args = _union_args(tp)
    if args is not None:
        inner = _schema_of(next(a for a in args if a is not type(None)), defs)
        if set(inner) == {"type"}:
            return {"type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if tp is Any:
        return {}
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    if isinstance(tp, type) and issubclass(tp, Part):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder first: a part may refer to itself
            hints = _hints(tp)
            props = {f.name: _schema_of(hints[f.name], defs) for f in tp._fields()}
            defs[tp.__name__] = {
                "type": "object",
                "description": (tp.__doc__ or "").strip().splitlines()[0],
                "properties": props,
                "required": [f.name for f in tp._fields() if not f.metadata.get("optional")],
                "additionalProperties": tp.additional_properties,
            }
        return {"$ref": f"#/$defs/{tp.__name__}"}
    origin = typing.get_origin(tp)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(typing.get_args(tp)[1], defs)}
    if origin is list:
        return {"type": "array", "items": _schema_of(typing.get_args(tp)[0], defs)}
    raise TypeError(f"no JSON schema for {tp!r}")


def json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a result record as written to disk (schema 7, or migrated to it)."""
    defs: dict[str, Any] = {}
    _schema_of(Record, defs)
    top = defs.pop("Record")
    top["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    top["properties"]["heldout_commitment"] = {"anyOf": [{"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                                         {"type": "null"}]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": f"replacebench result record, schema {SCHEMA_VERSION}", **top,
            "$defs": dict(sorted(defs.items()))}


@functools.cache
def _schema() -> dict[str, Any]:
    """`json_schema()`, built once, for `Record.read` to validate with (never handed out: callers could change it)."""
    return json_schema()


_JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, where: str = "$") -> list[str]:
    """Where `instance` breaks `schema`, one message per problem ([] when it is valid).

    Supports the keywords `json_schema()` uses: $ref (local), type, const, enum, anyOf, properties, required,
    additionalProperties, items and pattern.
    """
    root = schema if root is None else root
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref}")
        return validate(instance, root["$defs"][ref.removeprefix("#/$defs/")], root, where)
    problems: list[str] = []
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_JSON_TYPES[t](instance) for t in allowed):
            return [f"{where}: {instance!r:.60} is not of type {' or '.join(allowed)}"]
    if "const" in schema and instance != schema["const"]:
        problems.append(f"{where}: {instance!r:.60} is not {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        problems.append(f"{where}: {instance!r:.60} is not one of {schema['enum']}")
    if "anyOf" in schema and all(validate(instance, s, root, where) for s in schema["anyOf"]):
        problems.append(f"{where}: {instance!r:.60} matches none of its allowed forms")
    if "pattern" in schema and isinstance(instance, str) and not re.search(schema["pattern"], instance):
        problems.append(f"{where}: {instance!r:.60} does not match {schema['pattern']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        problems += [f"{where}: missing '{k}'" for k in schema.get("required", []) if k not in instance]
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                problems += validate(value, props[key], root, f"{where}.{key}")
            elif extra is False:
                problems.append(f"{where}: unexpected key '{key}'")
            elif isinstance(extra, dict):
                problems += validate(value, extra, root, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            problems += validate(value, schema["items"], root, f"{where}[{i}]")
    return problems
