"""The Python API (docs/python-api.md, README: Python) and the typed, versioned records: real data, real isolated scoring."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark as rb
from benchmark.record.typed import Part, Record, json_schema, validate
from benchmark.record.migrate import SCHEMA_VERSION, migrate
from benchmark.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
TASK = "digits-mlp/fc1:17"
SLUG = "digits-mlp__fc1-17"
SCALE = 0.5  # a literal constant a from_functions submission may read


def docs_python_example() -> str:
    """The first ```python block of docs/python-api.md (the full example)."""
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(), flags=re.S)[0]


def readme_python_example() -> str:
    """README's Python section runs after the walkthrough's step 2: its replacement.py (as the notebook's functions),
    then the section's ```python block."""
    readme = (ROOT / "README.md").read_text()
    (step2,) = re.findall(r"cat > submissions/my-neuron/replacement.py <<'EOF'\n(.*?)\nEOF\n", readme, flags=re.S)
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return step2 + "\n" + block


def test_import_is_light_and_exports_the_api():
    code = ("import sys, benchmark as rb; heavy = [m for m in ('torch', 'pandas', 'numpy') if m in sys.modules]; "
            "import benchmark.board.compare; "
            "print(heavy, callable(rb.compare), rb.compare.__module__, rb.score.__module__, rb.Record.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # importing the `compare` submodule does not shadow the API's compare function
    assert proc.stdout.split() == ["[]", "True", "benchmark.api", "benchmark.api", "Record"]


def test_readme_python_snippet_runs_after_the_walkthrough(tmp_path, data_dir, session_cache):
    """The README's snippet, with step 2's functions defined, scores what the walkthrough's `score` scores."""
    script = tmp_path / "snippet.py"
    script.write_text(readme_python_example())
    env = {**os.environ, "REPLACEBENCH_DATA": str(data_dir), "REPLACEBENCH_CACHE": str(session_cache),
           "REPLACEBENCH_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    recovery, copy_flag = proc.stdout.split("\n")[0].split()
    assert f"{100 * float(recovery):.1f}%" in (ROOT / "README.md").read_text().split("### 3. Score it", 1)[1]
    # the walkthrough's rule stores more bits than fc1:17's 65 weights at 8 bits: the README says COPY, and so does the API
    assert copy_flag == str("a COPY" in (ROOT / "README.md").read_text().split("### 3. Score it", 1)[1])
    assert not (tmp_path / "runs").exists()  # rb.score writes nothing without results_dir


def test_docs_python_example_runs(tmp_path, data_dir, session_cache):
    script = tmp_path / "example.py"
    script.write_text(docs_python_example())
    env = {**os.environ, "REPLACEBENCH_DATA": str(data_dir), "REPLACEBENCH_CACHE": str(session_cache)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"pixels-lstsq on {TASK} (n = 900)" in proc.stdout and "isolation: namespaces" in proc.stdout
    assert re.search(r"pixels-lstsq (beats|and) mean|no significant difference between pixels-lstsq and mean", proc.stdout)
    record = json.loads((tmp_path / "results" / SLUG / "pixels-lstsq.json").read_text())
    assert record["submission"]["kind"] == "fitted" and record["isolation"]["level"] == "namespaces"
    assert record["complexity"]["fitted_parameters"] == 65  # 64 pixel weights + a bias
    assert record["results"]["primary"]["recovery"] > 0.9
    frame = rb.load_results(tmp_path / "results")
    assert sorted(frame["submission"]) == ["mean", "pixels-lstsq"]
    row = frame.set_index("submission").loc["pixels-lstsq"]
    assert row["recovery"] == record["results"]["primary"]["recovery"]
    assert row["description_bits"] == record["complexity"]["description_bits"] and bool(row["copy"]) is True
    assert row["fidelity_r_mean"] == record["results"]["fidelity"][0]["pearson_r"]
    assert str(row["created"].tz) == "UTC" and row["git_commit"] == record["provenance"]["git_commit"]
    # checked: the board's checks against the sidecar; a record whose figures were altered is left out, with a warning
    assert len(rb.load_results(tmp_path / "results", checked=True)) == 2
    altered = tmp_path / "results" / SLUG / "mean.json"
    data = json.loads(altered.read_text())
    data["results"]["primary"]["recovery"] = 0.99
    altered.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="mean.json"):
        assert list(rb.load_results(tmp_path / "results", checked=True)["submission"]) == ["pixels-lstsq"]
    assert len(rb.load_results(tmp_path / "results")) == 2


@pytest.fixture(scope="module")
def scored(tmp_path_factory, data_dir, session_cache) -> Path:
    """A schema-6 record scored through the API into a tmp results folder: a submission written from functions."""
    results = tmp_path_factory.mktemp("api-results")
    sub = rb.Submission.from_functions(half_of_the_mean, fit=unit_mean, name="half-mean", authors=["test"],
                                       imports=["torch"])
    record = rb.score(TASK, sub, results_dir=results)
    assert isinstance(record, Record) and record.sidecar is not None
    return results / SLUG / "half-mean.json"


def unit_mean(target):
    """Each unit's fit-set mean."""
    return {"mean": target.mean(dim=0)}


def half_of_the_mean(image, params):
    """SCALE times each unit's fit-set mean, everywhere."""
    return (SCALE * params["mean"]).expand(len(image), -1).contiguous()


def parts(part: Part):
    """Every typed part inside `part`, itself included."""
    yield part
    for value in part.__dict__.values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, Part):
                yield from parts(item)


def test_a_scored_record_round_trips_exactly_and_validates(scored):
    text = scored.read_text()
    data = json.loads(text)
    record = Record.from_dict(copy.deepcopy(data))
    assert json.dumps(record.to_dict(), indent=2) + "\n" == text  # same keys, values and order: the file's format
    assert Record.read(scored).to_dict() == data
    assert all(not part.extra for part in parts(record)), "a key of the current schema has no typed field"
    assert record.schema_version == SCHEMA_VERSION and record.split == "public"
    assert record.task.id == TASK and record.submission.name == "half-mean"
    assert record.complexity.fitted_parameters == 1 and record.isolation.level == "namespaces"
    assert record.recovery == record.results.primary.recovery == data["results"]["primary"]["recovery"]
    assert record.results.fidelity[0].unit == 17 and record.results.recovery["zero"].defined is True
    assert validate(data, json_schema()) == []
    assert str(record).startswith(f"half-mean on {TASK} (n = 900)")


def test_the_generated_file_is_what_runs(scored):
    data = json.loads(scored.read_text())
    sub = rb.Submission.from_functions(half_of_the_mean, fit=unit_mean, name="half-mean", authors=["test"],
                                       imports=["torch"])
    code = sub.code
    assert code.splitlines()[2:5] == ["import torch", "", "SCALE = 0.5"]
    assert "def fit(target):" in code and "def replace(image, params):" in code
    assert "half_of_the_mean" not in code and "unit_mean" not in code
    meta = (sub.path / "submission.toml").read_text()
    assert 'name = "half-mean"' in meta and 'description = "SCALE times each unit\'s fit-set mean, everywhere."' in meta
    from benchmark.harness.submissions import folder_hash

    assert folder_hash(sub.path) == data["submission"]["content_hash"]  # the same bytes each time: the same hash
    # SCALE × the mean: its replaced loss lies between the zero ablation's and the mean ablation's
    loss = data["results"]["mean_loss"]
    assert min(loss["zero"], loss["mean"]) < loss["replaced"] < max(loss["zero"], loss["mean"])


def test_without_results_dir_nothing_is_written(tmp_path, data_dir, session_cache):
    before = sorted(p for p in (ROOT / "leaderboard").rglob("*") if p.is_file())
    record = rb.score(rb.get_task(TASK), "zero", eval_size=300)
    assert record.sidecar is None and record.task.n_eval == 300 and record.task.standard_protocol is False
    assert validate(record.to_dict(), json_schema()) == []
    assert sorted(p for p in (ROOT / "leaderboard").rglob("*") if p.is_file()) == before


def downgrade(record: dict, version: int) -> dict:
    """A schema-7 record as the schema `version` (1–6) wrote it: only the keys that schema had."""
    old = copy.deepcopy(record)
    old["complexity"].pop("stored_bits")
    old["complexity"]["bits"].pop("names")
    old["schema_version"] = version
    if version == 6:
        return old
    old.pop("split")
    old.pop("heldout_commitment")
    prov = old["provenance"]
    for key in ("intervals", "heldout_transform"):
        prov.pop(key)
    prov.update(seed=0, bootstrap_resamples=2000)
    for fidelity in old["results"]["fidelity"]:
        fidelity.pop("n_samples")
    if version <= 4:
        old.pop("efficiency")
    if version <= 3:
        old["results"].pop("kl_recovery")
    if version <= 2:
        old["complexity"] = {"fitted_parameters": old["complexity"]["fitted_parameters"],
                             "source_bytes_xz": old["complexity"]["source_bytes_xz"]}
    if version <= 1:
        old.pop("isolation")
    old["schema_version"] = version
    return old


#: The key order of the parts `runner.assemble_record` builds, as the record files have held them since schema 6
#: (before the typed record owned the format, a dict literal wrote them; the committed board has this order, with
#: `provenance.execution` added by the cluster change). `results` is the scoring's own figures, kept as they come.
FILE_ORDER = {
    "": ["schema_version", "split", "heldout_commitment", "task", "submission", "complexity", "isolation", "efficiency",
         "results", "provenance", "sidecar"],
    "task": ["id", "version", "hash", "model", "layer", "units", "inputs", "primary_ablation", "dataset", "eval_split",
             "n_eval", "n_fit", "topk", "standard_protocol", "overrides", "protocol"],
    "submission": ["name", "kind", "authors", "description", "content_hash"],
    "complexity": ["convention", "description_bits", "bits", "code_tokens", "fitted_parameters", "literal_numbers",
                   "data_bytes", "stored_numbers", "stored_bits", "target_fan_in", "copy", "source_bytes_xz"],
    "efficiency": ["original_macs_per_example", "original_seconds_per_example", "replace_seconds_per_example"],
    "provenance": ["package_version", "git_commit", "git_dirty", "task_hash", "checkpoint_sha256", "data_hash",
                   "submission_hash", "python", "torch", "torchvision", "numpy", "scipy", "platform", "device",
                   "intervals", "n_examples", "baseline_from_cache", "heldout_transform", "execution", "seconds",
                   "created"],
    "sidecar": ["file", "sha256"],
}


def test_a_record_made_in_code_is_written_in_the_files_key_order(scored):
    """The typed record built by the harness writes every part's keys in the record files' order: a null stays
    (heldout_commitment, heldout_transform on the public split), legacy bootstrap keys never appear."""
    data = json.loads(scored.read_text())
    for part, keys in FILE_ORDER.items():
        assert list(data[part] if part else data) == keys, part
    assert list(data["complexity"]["bits"]) == ["code", "names", "literals", "data", "fitted"]
    assert data["heldout_commitment"] is None and data["provenance"]["heldout_transform"] is None
    assert data["provenance"]["execution"] == {"mode": "serial"}
    built = Record.read(scored)
    assert built.provenance.seed is None and "seed" not in built.provenance.to_dict()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_older_schemas_migrate_load_and_validate(scored, version):
    old = downgrade(json.loads(scored.read_text()), version)
    migrated = migrate(copy.deepcopy(old))
    record = Record.from_dict(copy.deepcopy(old))
    assert record.to_dict() == migrated and record.schema_version == SCHEMA_VERSION
    assert validate(migrated, json_schema()) == []
    assert record.complexity.stored_bits is None and (version <= 2 or record.complexity.bits.names == 0)
    if version == 6:
        return
    assert record.provenance.intervals == "bootstrap-bca" and record.provenance.bootstrap_resamples == 2000
    assert (record.efficiency is None) == (version <= 4) and (record.results.kl_recovery is None) == (version <= 3)
    assert (record.complexity.description_bits is None) == (version <= 2)
    assert record.isolation.level == ("none" if version == 1 else "namespaces")


def test_the_validator_catches_broken_records(scored):
    good = json.loads(scored.read_text())
    schema = json_schema()
    broken = copy.deepcopy(good)
    broken["results"]["primary"]["recovery"] = "high"
    del broken["task"]["units"]
    broken["split"] = "private"
    broken["complexity"]["copy"] = 1
    broken["submission"]["nickname"] = "x"
    problems = validate(broken, schema)
    assert any(p.startswith("$.results.primary.recovery:") for p in problems)
    assert "$.task: missing 'units'" in problems and "$.submission: unexpected key 'nickname'" in problems
    assert any(p.startswith("$.split:") for p in problems) and any(p.startswith("$.complexity.copy:") for p in problems)
    assert len(problems) == 5, problems
    wrong_version = {**good, "schema_version": 5}
    assert validate(wrong_version, schema) == ["$.schema_version: 5 is not 7"]
    with pytest.raises(UserError, match="schema version 99"):
        Record.from_dict({**good, "schema_version": 99})


def test_the_committed_schema_is_the_generated_one(cli, tmp_path):
    committed = (ROOT / "leaderboard" / "record.schema.json").read_text()
    proc = cli("schema")
    assert proc.returncode == 0 and proc.stdout == committed, \
        "regenerate it: replacebench schema --out leaderboard/record.schema.json"
    assert cli("schema", "--out", str(tmp_path / "s.json")).returncode == 0
    assert (tmp_path / "s.json").read_text() == committed
    schema = json.loads(committed)
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert set(schema["required"]) == {"schema_version", "split", "heldout_commitment", "task", "submission",
                                       "complexity", "isolation", "efficiency", "results", "provenance"}


GLOBAL_TENSOR = [object()]


def uses_numpy(image):
    return np.zeros(1)  # noqa: F821 (np is the module the caller imported)


def uses_a_global_object(image):
    return GLOBAL_TENSOR


def calls_a_helper(image):
    return unit_mean(image)


def test_from_functions_refuses_what_the_sandbox_cannot_see():
    import numpy as np

    globals()["np"] = np
    try:
        with pytest.raises(UserError, match=r"lambda; define a top-level function"):
            rb.Submission.from_functions(lambda image: image)
        scale = 2.0

        def closure(image):
            return scale * image

        with pytest.raises(UserError, match=r"closure.*define it at the top level"):
            rb.Submission.from_functions(closure)
        with pytest.raises(UserError, match=r"module 'np' \(numpy\).*imports=\['numpy as np'\]"):
            rb.Submission.from_functions(uses_numpy, name="x")
        assert "import numpy as np" in rb.Submission.from_functions(uses_numpy, name="x", imports=["numpy as np"]).code
        with pytest.raises(UserError, match=r"global 'GLOBAL_TENSOR' \(list\).*only literal constants"):
            rb.Submission.from_functions(uses_a_global_object, name="x")
        with pytest.raises(UserError, match=r"helpers=\[unit_mean\]"):
            rb.Submission.from_functions(calls_a_helper, name="x")
        code = rb.Submission.from_functions(calls_a_helper, name="x", helpers=[unit_mean]).code
        assert "def unit_mean(target):" in code and "def replace(image):" in code
        with pytest.raises(UserError, match=r"name 'Bad Name' must match"):
            rb.Submission.from_functions(half_of_the_mean, name="Bad Name")
        with pytest.raises(UserError, match="is not one import"):
            rb.Submission.from_functions(half_of_the_mean, name="x", imports=["torch; import os"])
        with pytest.raises(UserError, match="kind 'clever' must be one of"):
            rb.Submission.from_functions(half_of_the_mean, name="x", kind="clever")
    finally:
        del globals()["np"]


def test_api_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown task"):
        rb.score("digits-mlp/fc1:999", "zero")
    with pytest.raises(UserError, match="one task id, not a pattern"):
        rb.score("digits-mlp/*", "zero")
    with pytest.raises(UserError, match="unknown submission"):
        rb.score(TASK, "no-such-submission")
    with pytest.raises(UserError, match="score linear"):
        rb.compare(TASK, "linear", "zero", results_dir=tmp_path)
    assert rb.load_results(tmp_path / "none").empty


def test_score_options_mirror_the_cli(tmp_path, data_dir, session_cache):
    """The held-out secret, the limits and the sizes reach the run, as the CLI's flags do."""
    import secrets

    secret = tmp_path / "heldout.secret"
    secret.write_text("RBAPI-" + secrets.token_hex(24) + "\n")
    secret.chmod(0o600)
    results = tmp_path / "results"
    record = rb.score(TASK, "zero", results_dir=results, held_out_secret=secret, time_limit=120, memory_limit="3G",
                      eval_size=200, fit_size=100)
    assert record.split == "held-out" and re.fullmatch(r"[0-9a-f]{64}", record.heldout_commitment)
    assert record.provenance.heldout_transform is not None and secret.read_text().strip() not in json.dumps(record.to_dict())
    assert record.isolation.limits["time_s"] == 120 and record.isolation.limits["memory_bytes"] == 3 << 30
    assert (record.task.n_eval, record.task.n_fit, record.task.standard_protocol) == (200, 100, False)
    path = results / SLUG / "zero.heldout.json"
    assert Record.read(path) == record and validate(json.loads(path.read_text()), json_schema()) == []
    with pytest.raises(UserError, match="cannot be combined with --in-process"):
        rb.score(TASK, "zero", held_out_secret=secret, in_process=True)
    with pytest.raises(UserError, match="no held-out split is defined for imagenet"):
        rb.score("inceptionv1/mixed3b:curves", "zero", held_out_secret=secret)


@pytest.mark.slow
def test_a_harness_that_leaves_before_its_zygote_is_ready_leaves_no_traceback():
    """The API's lazy imports let a user error exit before the zygote has imported torch: the zygote then finds its
    harness gone and leaves quietly (it used to print a BrokenPipeError traceback under the one-line error)."""
    code = "from benchmark.sandbox.process import ZYGOTE; ZYGOTE.start()"
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
