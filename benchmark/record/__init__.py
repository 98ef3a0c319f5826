"""The result record, its one owner: the typed record, its schema and migrations, its files, and its report.

- `typed`: `Record` and its parts (dataclasses over the record JSON), the JSON schema and a validator;
- `migrate`: `SCHEMA_VERSION` and the one chain that brings a record of any older schema to it;
- `io`: writing a record and its per-example sidecar, reading and checking them, the file layout;
- `provenance`: the git commit and the environment a record names;
- `format`, `report`: figures as text, and the report `replacebench score` prints (`str(Record)`).

This layer sits below the harness (which builds and writes records) and the board (which reads them): it imports
only the package's base modules (`errors`, `paths`, `atomic`, `download`, `stats`), never the harness or the board
(`tests/test_import_graph.py`).
"""
