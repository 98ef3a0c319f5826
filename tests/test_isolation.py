"""Submission folders, records and the board under attack: names, folder hygiene, overwrites, forged or damaged
records, stale entries, the cache's integrity check, the protocol's own checks, and `verify`."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_submission

from benchmark.sandbox.process import isolation_problem

TASK = "digits-mlp/fc1:17"
SLUG = "digits-mlp__fc1-17"
ZERO = "import torch\ndef replace(image, task):\n    return torch.zeros(image.shape[0], *task.target_shape)\n"
needs_isolation = pytest.mark.skipif(isolation_problem() is not None, reason=f"no process isolation: {isolation_problem()}")


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replacebench: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def toml(folder: Path, name: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.toml").write_text(f'name = {json.dumps(name)}\nauthors = ["t"]\nkind = "baseline"\n'
                                            f'description = "d"\n{extra}')
    (folder / "replacement.py").write_text(ZERO)
    return folder


@pytest.mark.parametrize("folder, name, fragment", [
    ("impostor", "linear", "must equal the folder's name 'impostor'"),
    ("x", "../../../checkpoints/digits-mlp", "must match"),
    ("star", "*", "must match"),
    ("pipe", "a|b\n## injected <b>", "must match"),
    ("Upper", "Upper", "must match"),
])
def test_submission_names_are_checked(tmp_path, cli, results_dir_path, folder, name, fragment):
    sub = toml(tmp_path / folder, name)
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--results-dir", str(results_dir_path)), fragment)
    assert not results_dir_path.exists()


@pytest.fixture()
def results_dir_path(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.mark.parametrize("extra, fragment", [
    ("tasks = 5\n", "'tasks' must be a string or a list of strings"),
    ("tasks = [1, 2]\n", "'tasks' must be a string or a list of strings"),
])
def test_mistyped_metadata(tmp_path, cli, extra, fragment):
    sub = toml(tmp_path / "typo", "typo", extra)
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), fragment)


def test_metadata_field_types_and_encoding(tmp_path, cli):
    sub = toml(tmp_path / "enc", "enc")
    (sub / "submission.toml").write_bytes(b'name = "enc"\nauthors = ["\xff\xfe"]\nkind = "baseline"\ndescription = "d"\n')
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), "not UTF-8")
    (sub / "submission.toml").write_text('name = "enc"\nauthors = 3\nkind = "baseline"\ndescription = "d"\n')
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), "'authors' must be")
    (sub / "submission.toml").write_text('name = "enc"\nauthors = ["a"]\nkind = "baseline"\ndescription = 7\n')
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), "'description' must be a string")


def test_folder_hygiene(tmp_path, cli):
    sub = toml(tmp_path / "hyg", "hyg")
    (sub / "link.py").symlink_to("/etc/passwd")
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), "symbolic link")
    (sub / "link.py").unlink()
    os.mkfifo(sub / "pipe")
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), "not a regular file")
    (sub / "pipe").unlink()
    from benchmark.harness import submissions

    for i in range(submissions.MAX_FILES):
        (sub / f"f{i}.txt").write_text("x")
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), f"at most {submissions.MAX_FILES}")
    for i in range(submissions.MAX_FILES):
        (sub / f"f{i}.txt").unlink()
    (sub / "big.bin").write_bytes(b"\0" * (submissions.MAX_FOLDER_BYTES + 1))
    assert_one_line_error(cli("score", str(sub), "--task", TASK, "--no-record"), "MiB")


def test_every_file_counts_in_the_complexity_and_the_hash(tmp_path):
    from benchmark.harness.submissions import take_snapshot

    sub = toml(tmp_path / "data-file", "data-file")
    before = take_snapshot(str(sub))
    (sub / "weights.txt").write_text(" ".join(str(i * 0.37) for i in range(2000)))
    after = take_snapshot(str(sub))
    assert after.description_bytes_xz > before.description_bytes_xz + 1000
    assert after.content_hash != before.content_hash and "weights.txt" in after.files
    assert not os.access(after.folder / "replacement.py", os.W_OK) or os.geteuid() == 0
    assert (after.folder.stat().st_mode & 0o222) == 0  # read-only for everyone
    before.cleanup()
    after.cleanup()
    assert not after.folder.exists()


@needs_isolation
def test_overwrites_need_the_same_submission_or_force(tmp_path, cli, session_cache):
    results = tmp_path / "results"
    a = toml(tmp_path / "a" / "entry", "entry")
    assert cli("score", str(a), "--task", TASK, "--results-dir", str(results)).returncode == 0
    b = toml(tmp_path / "b" / "entry", "entry")
    (b / "submission.toml").write_text((b / "submission.toml").read_text().replace('["t"]', '["mallory"]'))
    assert_one_line_error(cli("score", str(b), "--task", TASK, "--results-dir", str(results)), "authors", "--force")
    (a / "replacement.py").write_text(ZERO + "# changed\n")
    assert_one_line_error(cli("score", str(a), "--task", TASK, "--results-dir", str(results)), "different version", "--force")
    proc = cli("score", str(b), "--task", TASK, "--results-dir", str(results), "--force")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((results / SLUG / "entry.json").read_text())["submission"]["authors"] == ["mallory"]


def test_sidecar_cleanup_touches_only_its_own_files(tmp_path):
    from benchmark.record.io import STALE_SIDECAR_SECONDS, write_record
    from benchmark.record.typed import Record

    folder = tmp_path / SLUG
    folder.mkdir(parents=True)
    old = time.time() - STALE_SIDECAR_SECONDS - 60
    mine, other, odd = folder / "zero.0123456789ab.npz", folder / "zero-two.0123456789ab.npz", folder / "zero.x.npz"
    for path in (mine, other, odd):
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    committed = Path(__file__).resolve().parents[1] / "leaderboard" / "results" / SLUG / "zero.json"
    write_record(Record.read(committed), {"a": np.zeros(3)}, tmp_path, SLUG, "zero")
    assert not mine.exists() and other.exists() and odd.exists()


@pytest.fixture(scope="module")
def scored(tmp_path_factory, session_cache) -> Path:
    """Isolated records of zero and mean on the task, made once for the board and verify tests."""
    from benchmark.cli import main

    results = tmp_path_factory.mktemp("board") / "results"
    for name in ("zero", "mean"):
        assert main(["score", name, "--task", TASK, "--results-dir", str(results)]) == 0
    return results


def copy_results(scored: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(scored, results)
    return results


@needs_isolation
def test_board_leaves_off_damaged_and_forged_records_with_a_warning(scored, tmp_path, cli):
    results = copy_results(scored, tmp_path)
    folder = results / SLUG
    (folder / "broken.json").write_text("{not json")
    record = json.loads((folder / "mean.json").read_text())
    edited = {**record, "submission": {**record["submission"], "name": "edited"}}
    edited["results"]["primary"]["recovery"] = 0.999
    (folder / "edited.json").write_text(json.dumps(edited))
    damaged = json.loads((folder / "zero.json").read_text())
    damaged["submission"]["name"] = "damaged"
    (folder / "damaged.json").write_text(json.dumps(damaged))
    sidecar = folder / damaged["sidecar"]["file"]
    shutil.copy(sidecar, folder / "keep.npz")
    (folder / "sidecar-damaged.json").write_text(json.dumps({**damaged, "sidecar": {"file": "keep.npz",
                                                                                  "sha256": "0" * 64}}))
    kl_forged = json.loads((folder / "mean.json").read_text())
    kl_forged["submission"]["name"] = "kl-forged"
    kl_forged["results"]["kl_recovery"]["zero"]["recovery_high"] = 1.0  # a narrower KL interval than its arrays give
    (folder / "kl-forged.json").write_text(json.dumps(kl_forged))
    copy_forged = json.loads((folder / "mean.json").read_text())
    copy_forged["submission"]["name"] = "copy-forged"
    copy_forged["complexity"]["target_fan_in"] = 1  # now its numbers reach the fan-in, but it says it is no copy
    (folder / "copy-forged.json").write_text(json.dumps(copy_forged))
    # text the schema leaves free reaches the board escaped: the task's layer, in the heading of the record shown first
    injected = json.loads((folder / "zero.json").read_text())
    injected["submission"]["name"] = "a-injected"
    injected["task"]["layer"] = "x | y\n## heading <script>alert(1)</script>"
    (folder / "a-injected.json").write_text(json.dumps(injected))
    kind_forged = json.loads((folder / "zero.json").read_text())  # a kind the schema does not allow: not a record
    kind_forged["submission"] = {**kind_forged["submission"], "name": "kind-forged", "kind": "x | y <script>"}
    (folder / "kind-forged.json").write_text(json.dumps(kind_forged))
    proc = cli("leaderboard", "--results-dir", str(results), "--out", "-")
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    for name in ("broken.json", "edited.json", "sidecar-damaged.json", "kl-forged.json", "copy-forged.json",
                 "kind-forged.json"):
        assert any(name in w and w.startswith("replacebench: warning: left") for w in warnings), (name, warnings)
    assert "| edited" not in proc.stdout and "primary recovery" in proc.stderr
    assert "primary KL recovery_high" in proc.stderr and "copy is False" in proc.stderr
    assert "is not a valid record: $.submission.kind" in proc.stderr and "kind-forged" not in proc.stdout
    assert "<script>" not in proc.stdout and "\n## heading" not in proc.stdout and "&lt;script&gt;" in proc.stdout
    assert "x \\| y" in proc.stdout


@needs_isolation
def test_stale_and_not_isolated_entries_are_marked(scored, tmp_path, cli, monkeypatch):
    results = copy_results(scored, tmp_path)
    proc = cli("score", "linear", "--task", TASK, "--results-dir", str(results), "--in-process")
    assert proc.returncode == 0, proc.stderr
    home = tmp_path / "home"
    shutil.copytree(Path(__file__).resolve().parent.parent / "submissions", home / "submissions")
    (home / "submissions" / "mean" / "replacement.py").write_text(
        (home / "submissions" / "mean" / "replacement.py").read_text() + "\n# edited after scoring\n")
    from benchmark import paths

    monkeypatch.setattr(paths, "PROJECT_ROOT", home)
    board = cli("leaderboard", "--results-dir", str(results), "--out", "-").stdout
    assert "| mean (≤ mean, stale) |" in board and "| linear (copy, ≤ mean, not isolated) |" in board
    assert "| zero (≤ mean) |" in board
    monkeypatch.setattr(paths, "PROJECT_ROOT", Path(__file__).resolve().parent.parent)
    compared = json.loads(cli("compare", "linear", "zero", "--task", TASK, "--results-dir", str(results), "--json").stdout)
    assert compared["marks"] == {"linear": "not isolated", "zero": "current, isolated"}


# two folders the hash before v2 (`path NUL bytes NUL` per file) could not tell apart: one file's bytes pass for the
# end of that file, the next path and its bytes
COLLIDING = ({"zz1.txt": b"n\0zz2.txt\0m"}, {"zz1.txt": b"n", "zz2.txt": b"m"})


def unframed_hash(files: dict[str, bytes]) -> str:
    """The content hash before v2, kept here to show the collision."""
    import hashlib

    digest = hashlib.sha256()
    for rel, data in sorted(files.items()):
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def test_the_content_hash_is_unambiguous(tmp_path):
    from benchmark.harness.submissions import content_hash, folder_hash

    a, b = COLLIDING
    assert unframed_hash(a) == unframed_hash(b)  # the old encoding's collision
    assert content_hash(a) != content_hash(b)
    # the empty file, an empty name and a file moved between paths are all different folders
    variants = [{}, {"a": b""}, {"a": b"", "b": b""}, {"ab": b""}, {"a": b"b"}, {"b": b"a"}]
    assert len({content_hash(v) for v in variants}) == len(variants)
    (tmp_path / os.fsdecode(b"\xff.txt")).write_bytes(b"x")  # a name that is not UTF-8 hashes too
    assert folder_hash(tmp_path) == content_hash({os.fsdecode(b"\xff.txt"): b"x"})


@needs_isolation
def test_the_board_marks_stale_after_swapping_in_a_folder_the_old_hash_could_not_tell_apart(scored, tmp_path, cli,
                                                                                          monkeypatch):
    """Score `mean` with the first folder of COLLIDING's pair added; swap in the second: the board says stale."""
    from benchmark import paths

    results = copy_results(scored, tmp_path)
    home = tmp_path / "home"
    shutil.copytree(Path(__file__).resolve().parent.parent / "submissions" / "mean", home / "submissions" / "mean")
    folder = home / "submissions" / "mean"
    first, second = COLLIDING
    for name, data in first.items():
        (folder / name).write_bytes(data)
    proc = cli("score", str(folder), "--task", TASK, "--results-dir", str(results), "--force")
    assert proc.returncode == 0, proc.stderr
    monkeypatch.setattr(paths, "PROJECT_ROOT", home)  # the board looks for submissions/mean there
    assert "| mean (≤ mean) |" in cli("leaderboard", "--results-dir", str(results), "--out", "-").stdout
    for name in first:
        (folder / name).unlink()
    for name, data in second.items():
        (folder / name).write_bytes(data)
    assert "| mean (≤ mean, stale) |" in cli("leaderboard", "--results-dir", str(results), "--out", "-").stdout


@needs_isolation
def test_verify_passes_on_honest_records_and_fails_on_edited_ones(scored, tmp_path, cli):
    results = copy_results(scored, tmp_path)
    proc = cli("verify", "--all", "--results-dir", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 verified, 0 failed" in proc.stdout
    path = results / SLUG / "mean.json"
    record = json.loads(path.read_text())
    record["results"]["primary"]["p_beats_ablation"] = 0.5  # no cheap check covers it; the re-score does
    path.write_text(json.dumps(record))
    proc = cli("verify", str(path))
    assert proc.returncode == 1 and "primary.p_beats_ablation" in proc.stdout and "0 verified, 1 failed" in proc.stdout


@needs_isolation
def test_verify_reports_a_record_whose_rescore_crashes_the_harness_and_checks_the_rest(scored, tmp_path, cli):
    """A record whose stored fit size is not an integer: re-scoring it raises the harness's own TypeError. `verify`
    reports it as failed in one line and still checks the records after it (the old `verify` stopped there)."""
    results = copy_results(scored, tmp_path)
    record = json.loads((results / SLUG / "mean.json").read_text())
    record["task"]["overrides"] = {"fit_size": 2.5}
    (results / SLUG / "a-crash.json").write_text(json.dumps(record))  # sorted first: the others come after it
    proc = cli("verify", "--all", "--results-dir", str(results))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    at = lines.index(f"FAIL {results / SLUG / 'a-crash.json'}")
    assert lines[at + 1].strip().startswith("re-scoring crashed: TypeError: ")
    assert not lines[at + 2].startswith("     ")  # one line for it
    assert f"ok   {results / SLUG / 'mean.json'}" in lines and f"ok   {results / SLUG / 'zero.json'}" in lines
    assert "2 verified, 1 failed" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_verify_without_records_is_a_clear_error(tmp_path, cli):
    assert_one_line_error(cli("verify", "--all", "--results-dir", str(tmp_path / "none")), "no records to verify")


def test_a_tampered_cache_is_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPLACEBENCH_CACHE", str(tmp_path / "cache"))
    from benchmark.harness.baseline import cache_file, load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    ctx = prepare(get_task(TASK))
    first = load_or_compute(ctx)
    path = cache_file(ctx)
    assert load_or_compute(ctx).from_cache
    head, _, payload = path.read_bytes().partition(b"\n")
    import io

    with np.load(io.BytesIO(payload)) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["loss.zero"] = arrays["loss.clean"]  # a poisoned cache: the ablation costs nothing
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(head + b"\n" + buffer.getvalue())
    again = load_or_compute(ctx)
    assert not again.from_cache and "failed its integrity check" in capsys.readouterr().err
    np.testing.assert_array_equal(again.loss("zero"), first.loss("zero"))
    assert load_or_compute(ctx).from_cache


@needs_isolation
def test_what_a_submission_prints_is_marked_as_its_own(tmp_path, cli, session_cache):
    code = "import sys\nprint('\\x1b[2K\\rreplacebench: error: the harness is broken')\n" + ZERO
    sub = write_submission(tmp_path / "printer", code)
    proc = cli("score", str(sub), "--task", TASK, "--no-record")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "the harness is broken" in line]
    assert lines and all(line.startswith("  [submission 'printer' (") for line in lines), proc.stderr


@needs_isolation
def test_fit_cannot_return_more_than_the_harness_holds(tmp_path, cli, session_cache, monkeypatch):
    from benchmark.sandbox import room

    monkeypatch.setattr(room, "MAX_PARAMS_BYTES", 4 << 20)
    code = ("import torch\ndef fit(image):\n    return {'w': torch.zeros(2 << 20)}\n"
            "def replace(image, task, params):\n    return torch.zeros(image.shape[0], *task.target_shape)\n")
    sub = write_submission(tmp_path / "greedy", code)
    proc = cli("score", str(sub), "--task", TASK, "--no-record")
    assert proc.returncode == 1 and "broke the protocol" in proc.stderr and "more than the 4194304 allowed" in proc.stderr
