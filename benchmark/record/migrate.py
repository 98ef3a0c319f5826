"""The record's schema history and its one migration chain: a record of any schema (1 to SCHEMA_VERSION), brought to
the current one on read (`Record.from_dict`, `Record.read`), never rewritten on disk.

1 → 2 adds "isolation" (a schema-1 record ran in the harness's process); 2 → 3 the description length and copy test
(None: not measured); 3 → 4 KL recovery (None); 4 → 5 "efficiency" (None); 5 → 6 closed-form intervals
(provenance "intervals": "hall-fieller"; a schema-5 record's were "bootstrap-bca", with its seed and resamples),
"split" ("public" | "held-out") and "heldout_commitment"; 6 → 7 description-length convention 2 (a real code):
complexity "stored_bits" (None: not measured; the old record's copy test counted numbers) and bits "names" (0: the
old convention charged nothing for names).
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..stats import LEGACY_INTERVALS

SCHEMA_VERSION = 7
#: Complexity figures schema 3 added; a migrated record has them as None (not measured: score it again).
COMPLEXITY_V3 = ("convention", "description_bits", "bits", "code_tokens", "literal_numbers", "data_bytes",
                 "stored_numbers", "target_fan_in", "copy")


def migrate(record: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema, brought to SCHEMA_VERSION (a new dict; the argument is not changed)."""
    if record.get("schema_version") == 1:
        record = {**record, "schema_version": 2,
                  "isolation": {"level": "none", "mechanism": "schema 1: scored in the harness's process"}}
    if record.get("schema_version") == 2:
        complexity = record.get("complexity") if isinstance(record.get("complexity"), dict) else {}
        record = {**record, "schema_version": 3, "complexity": {**dict.fromkeys(COMPLEXITY_V3), **complexity}}
    if record.get("schema_version") == 3 and isinstance(record.get("results"), dict):
        record = {**record, "schema_version": 4, "results": {**record["results"], "kl_recovery": None}}
    if record.get("schema_version") == 4:
        record = {**record, "schema_version": 5, "efficiency": None}
    if record.get("schema_version") == 5:
        if isinstance(record.get("provenance"), dict):  # its intervals were bootstrap BCa, with its seed and resamples
            record = {**record, "provenance": {**record["provenance"], "intervals": LEGACY_INTERVALS}}
        record = {**record, "schema_version": 6, "split": "public", "heldout_commitment": None}
    if record.get("schema_version") == 6:
        complexity = record.get("complexity")
        if isinstance(complexity, dict):
            bits = complexity.get("bits")
            if isinstance(bits, dict):
                bits = {"code": bits.get("code"), "names": 0, **{k: v for k, v in bits.items() if k != "code"}}
            record = {**record, "complexity": {**complexity, "bits": bits,
                                               "stored_bits": complexity.get("stored_bits")}}
        record = {**record, "schema_version": 7}  # a record without complexity gains none
    return record


def upgrade(data: Any, where: str = "record") -> dict[str, Any]:
    """`data` (a record's JSON) migrated to SCHEMA_VERSION; a UserError naming `where` when it is no JSON object or
    its schema is not one this replacebench reads."""
    if not isinstance(data, dict):
        raise UserError(f"{where} is not a JSON object ({type(data).__name__}); score again.")
    data = migrate(data)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{where} has schema version {data.get('schema_version')!r}; this replacebench reads 1 to "
                        f"{SCHEMA_VERSION}: score again.")
    return data
