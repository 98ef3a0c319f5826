"""Hostile submissions (tests/hostile/*), each trying one attack through the real CLI, isolated.

The CLI's `main` runs in this process (so one zygote serves every test); the submissions run in real child
processes in their own namespaces, exactly as from the shell.

Each must end in a clear error (exit 1, one line naming the submission, its own traceback at most, no record)
or in the score its honest output earns (here: the zero ablation's, exactly), and leave every tracked file,
the board and the baseline cache as they were.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from benchmark.sandbox.memcg import MemoryGroup
from benchmark.sandbox.process import isolation_problem

HOSTILE = Path(__file__).parent / "hostile"
TASK = "digits-mlp/fc1:17"
SLUG = "digits-mlp__fc1-17"

_problem = isolation_problem()
pytestmark = pytest.mark.skipif(_problem is not None, reason=f"no process isolation here: {_problem}")


def file_hashes(root: Path, names: list[str] | None = None) -> dict[str, str]:
    paths = [root / n for n in names] if names is not None else [p for p in root.rglob("*") if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def project_files() -> dict[str, str]:
    """Every tracked file and everything under leaderboard/, by content."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return {**file_hashes(ROOT, tracked), **file_hashes(ROOT / "leaderboard")}


@pytest.fixture(scope="module")
def warm_cache(session_cache: Path) -> Path:
    """The task's baseline, cached before any hostile code runs (as it would be on a board): scored once, before this
    module's first test; `run_hostile` checks that no run changes the cache."""
    from benchmark.cli import main

    assert main(["score", "zero", "--task", TASK, "--no-record"]) == 0
    return session_cache


def run_hostile(cli, name: str, tmp_path: Path, cache: Path, config: dict | None = None, *extra: str):
    folder = tmp_path / name
    if not folder.exists():
        shutil.copytree(HOSTILE / name, folder)
    if config is not None:
        (folder / "target.json").write_text(json.dumps(config))
    results = tmp_path / "results"
    before, cache_before = project_files(), file_hashes(cache)
    source_before = file_hashes(folder)
    proc = cli("score", str(folder), "--task", TASK, "--results-dir", str(results), *extra)
    assert project_files() == before, "a tracked file or the board changed"
    assert file_hashes(cache) == cache_before, "the baseline cache changed"
    assert file_hashes(folder) == source_before, "the submission folder changed"
    return proc, results


def assert_honest_zero(proc: subprocess.CompletedProcess, results: Path, name: str) -> dict:
    """Exit 0, one record (its own), and exactly the zero ablation's per-example losses."""
    assert proc.returncode == 0, proc.stderr
    records = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
    assert records == [f"{SLUG}/{name}.json"], records
    record = json.loads((results / SLUG / f"{name}.json").read_text())
    with np.load(results / SLUG / record["sidecar"]["file"]) as arrays:
        np.testing.assert_array_equal(arrays["loss.replaced"], arrays["loss.zero"])
    assert record["results"]["primary"]["recovery"] == 0.0
    assert record["isolation"]["level"] == "namespaces"
    return record


def assert_submission_error(proc: subprocess.CompletedProcess, results: Path, name: str, *fragments: str) -> None:
    """Exit 1, a first line naming the submission, nothing of the harness's own code, no record."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith(f"  [submission '{name}'")]
    assert lines and lines[0].startswith(f"replacebench: submission '{name}'"), proc.stderr
    assert "benchmark/" not in "\n".join(lines), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert not results.exists() or not any(results.rglob("*.json"))


@pytest.mark.parametrize("name", ["stack-walk", "gc-model", "import-harness", "read-checkpoint", "patch-harness",
                                  "answer-key"])
def test_reaching_for_the_model_or_the_answers_finds_nothing(name, tmp_path, cli, warm_cache, data_dir):
    proc, results = run_hostile(cli, name, tmp_path, warm_cache, {"data_dir": str(data_dir)})
    assert_honest_zero(proc, results, name)


def test_weights_kept_in_a_global_do_not_reach_replace(tmp_path, cli, warm_cache):
    proc, results = run_hostile(cli, "global-smuggle", tmp_path, warm_cache)
    assert assert_honest_zero(proc, results, "global-smuggle")["complexity"]["fitted_parameters"] == 0


#: Two channels run by default (a lock and a file system: ~10 s each); every one with `pytest -m slow`.
@pytest.mark.parametrize("channel", [pytest.param(c, marks=pytest.mark.slow) for c in ("fcntl", "ofd", "socket", "shm", "keyring")]
                         + ["flock", "tmp"])
def test_nothing_but_what_fit_returns_reaches_replace(channel, tmp_path, cli, warm_cache):
    """fit returns {} and passes its weights on through kernel state (locks on a file both children see, an
    abstract socket held by a detached grandchild, a file, a key): replace finds nothing, 0 fitted numbers."""
    proc, results = run_hostile(cli, "fit-smuggle", tmp_path, warm_cache, {"channel": channel})
    assert "fit-smuggle: received" not in proc.stderr, proc.stderr
    assert assert_honest_zero(proc, results, "fit-smuggle")["complexity"]["fitted_parameters"] == 0


#: The control: outside the harness (fit and replace in two processes that share /tmp and live on), the channel
#: carries the weights, with the attack's own timings. flock by default; the others with `pytest -m slow`.
@pytest.mark.parametrize("channel", ["flock"] + [pytest.param(c, marks=pytest.mark.slow) for c in ("fcntl", "ofd", "tmp")])
def test_the_fit_to_replace_channels_carry_the_weights_outside_the_harness(channel, tmp_path):
    import os
    import signal
    import sys
    import uuid

    folder = tmp_path / "fit-smuggle"
    shutil.copytree(HOSTILE / "fit-smuggle", folder)
    (folder / "target.json").write_text(json.dumps({"channel": channel}))
    tag = f"smuggle-control-{uuid.uuid4().hex}"  # in every process's command line, holders included
    setup = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import replacement as r; torch.manual_seed(0); "
             "x = torch.rand(40, 1, 8, 8); y = torch.relu(x.flatten(1)[:, :3].sum(1, keepdim=True) - 1); ")
    try:
        log = tmp_path / "fit.log"  # a file, not a pipe: the holder keeps fit's output open as long as it lives
        with log.open("w") as out:
            fit = subprocess.run([sys.executable, "-c", setup + "print(r.fit(x, y))", str(folder), tag],
                                 stdout=out, stderr=subprocess.STDOUT, timeout=120)
        assert fit.returncode == 0 and log.read_text().strip() == "{}", log.read_text()
        code = setup + "from types import SimpleNamespace as S; print(float(r.replace(x, S(target_shape=(1,))).abs().sum()))"
        replace = subprocess.run([sys.executable, "-c", code, str(folder), tag], capture_output=True, text=True, timeout=120)
        assert replace.returncode == 0, replace.stderr
        assert "fit-smuggle: received" in replace.stdout and f"through {channel}" in replace.stdout, replace.stdout
        assert float(replace.stdout.split()[-1]) > 0
    finally:
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                if tag.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        if channel == "tmp":
            Path("/tmp/smuggled").unlink(missing_ok=True)


def test_weights_kept_in_prose_do_not_reach_the_code(tmp_path, cli, warm_cache):
    """Comments, docstrings and the metadata cost nothing in the description length, so the code never sees them."""
    import sys

    import torch
    from safetensors.numpy import load_file

    from benchmark.harness.description import measure
    from benchmark.harness.submissions import read_folder

    state = load_file(str(ROOT / "checkpoints" / "digits-mlp.safetensors"))
    unit = [*state["fc1_linear.weight"][17].tolist(), float(state["fc1_linear.bias"][17])]
    folder = tmp_path / "prose-smuggle"
    shutil.copytree(HOSTILE / "prose-smuggle", folder)
    template = measure(read_folder(folder))
    for name in ("replacement.py", "submission.toml"):
        path = folder / name
        path.write_text(path.read_text().replace("WEIGHTS", "w=[" + ",".join(map(repr, unit)) + "]"))
    assert measure(read_folder(folder)) == template  # the weights in prose are free
    # Run as written, outside the harness, the attack works: it copies the unit exactly.
    probe = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import replacement as r; "
             "from types import SimpleNamespace as S; torch.manual_seed(0); x = torch.rand(5, 1, 8, 8); "
             "print(r.replace(x, S(target_shape=(1,))).flatten().tolist())")
    out = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, check=True)
    torch.manual_seed(0)
    x = torch.rand(5, 1, 8, 8).numpy().reshape(5, 64)
    expected = np.maximum(x.astype(np.float64) @ np.asarray(unit[:-1]) + unit[-1], 0)
    np.testing.assert_allclose(json.loads(out.stdout.splitlines()[-1]), expected, rtol=1e-5, atol=1e-6)
    assert "found 65 numbers" in out.stdout
    # Scored, it finds nothing: the zero ablation, and its record is not a copy.
    proc, results = run_hostile(cli, "prose-smuggle", tmp_path, warm_cache)
    record = assert_honest_zero(proc, results, "prose-smuggle")
    assert "found" not in proc.stderr
    # the weights in prose are not counted: it stores what its code stores without them (its own strings and names)
    assert record["complexity"]["stored_bits"] == template.stored_bits(0)


def test_the_cache_cannot_be_poisoned(tmp_path, cli, warm_cache):
    proc, results = run_hostile(cli, "poison-cache", tmp_path, warm_cache, {"cache": str(warm_cache)})
    assert_honest_zero(proc, results, "poison-cache")
    assert "rewrote" not in proc.stderr


def test_records_cannot_be_forged(tmp_path, cli, warm_cache):
    folders = [str(ROOT / "leaderboard" / "results"), str(tmp_path / "results")]
    proc, results = run_hostile(cli, "forge-board", tmp_path, warm_cache, {"folders": folders})
    record = assert_honest_zero(proc, results, "forge-board")  # its own honest record, and no other
    assert "forged" not in record
    # Each write either failed (the project's tree is mounted read-only in the child) or landed in the child's own
    # private /tmp (a clone under /tmp, and this test's tmp_path, are hidden there): wherever the clone lives, nothing
    # it wrote reaches the host. run_hostile already checked that the board and every tracked file are unchanged.
    for folder in folders:
        attempt = f"forge-board: wrote into {folder}" in proc.stdout + proc.stderr or \
            f"forge-board: {folder}: " in proc.stdout + proc.stderr
        assert attempt, f"the submission did not report its attempt on {folder}: {proc.stderr[-2000:]}"
        assert not (Path(folder) / "forged-task").exists(), f"a forged folder appeared under {folder}"
        forged = [p for p in Path(folder).rglob("*.json") if '"forged"' in p.read_text()]
        assert forged == [], f"forged records reached the host: {forged}"


def test_code_cannot_rewrite_itself_and_the_hash_is_taken_before_it_runs(tmp_path, cli, warm_cache):
    from benchmark.harness.submissions import folder_hash

    expected = folder_hash(HOSTILE / "self-rewrite")
    proc, results = run_hostile(cli, "self-rewrite", tmp_path, warm_cache)
    record = assert_honest_zero(proc, results, "self-rewrite")
    assert record["submission"]["content_hash"] == expected == record["provenance"]["submission_hash"]
    assert "Read-only file system" in proc.stderr


def test_no_network_no_leftover_processes_no_fork_bomb_no_disk_filling(tmp_path, cli, warm_cache):
    connections: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                connections.append(conn.recv(100))
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    marker = str(900000 + uuid.uuid4().int % 99999)
    try:
        proc, results = run_hostile(cli, "escape-limits", tmp_path, warm_cache, {"port": server.getsockname()[1], "marker": marker})
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert_honest_zero(proc, results, "escape-limits")  # every escape failed: it returned 0
    assert "fork stopped after" in proc.stderr and "Network is unreachable" in proc.stderr
    assert "file stopped at" in proc.stderr
    assert connections == []
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes outlived the run: {left}"


@pytest.mark.parametrize("name, extra, fragments", [
    ("tensor-subclass", (), ["torch.Tensor subclass"]),
    ("sparse-output", (), ["sparse"]),
    ("nested-output", (), ["nested"]),
    ("huge-output", (), ["magnitude", "±10000"]),
    ("exit-zero", (), ["raised SystemExit"]),
    ("os-exit", (), ["exited with status 0"]),
    ("raise-interrupt", (), ["raised KeyboardInterrupt"]),
    ("fake-user-error", (), ["raised UserError: the harness is broken", "Traceback"]),
    ("infinite-loop", ("--time-limit", "4"), ["time limit of 4 s"]),
    ("memory-hog", ("--memory-limit", "2G"), ["replace()"]),
])
def test_misbehaviour_is_one_submission_error(name, extra, fragments, tmp_path, cli, warm_cache):
    proc, results = run_hostile(cli, name, tmp_path, warm_cache, None, *extra)
    assert_submission_error(proc, results, name, *fragments)
    assert "replacebench: error:" not in proc.stderr  # never the harness's own message


@pytest.mark.parametrize("how", ["shared", "memfd", "noreserve", "numpy", "memfd-write", "raise"])
def test_the_memory_limit_counts_every_mapping(how, tmp_path, cli, warm_cache):
    """3 GiB under a 1 GiB limit: shared anonymous, memfd and MAP_NORESERVE mappings count as much as a numpy
    array (RLIMIT_AS); a memfd written but never mapped is no mapping, and only a memory cgroup bounds it."""
    if how == "memfd-write" and MemoryGroup.create(1 << 30) is None:
        pytest.skip("no memory cgroup can be made here: RLIMIT_AS alone does not bound unmapped memfd pages")
    proc, results = run_hostile(cli, "memory-escape", tmp_path, warm_cache, {"how": how}, "--memory-limit", "1G")
    assert_submission_error(proc, results, "memory-escape", "(replace)", "memory limit")
    assert "replacebench: error:" not in proc.stderr
    first = [line for line in proc.stderr.splitlines() if line.startswith("replacebench:")]
    assert len(first) == 1, proc.stderr


@pytest.mark.parametrize("name, fragment", [("exit-zero", "raised SystemExit"), ("os-exit", "exited with status 0")])
def test_stimuli_runs_the_submission_isolated_too(name, fragment, tmp_path, cli):
    """`stimuli` goes through the same room as `score`: the same honest exits."""
    folder = tmp_path / name
    shutil.copytree(HOSTILE / name, folder)
    proc = cli("stimuli", str(folder), "--task", "inceptionv1/mixed3b:379")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"replacebench: submission '{name}' (replace)") and fragment in proc.stderr


# -- the harness's own robustness: what a child sends back ------------------------------------------------------------
@pytest.mark.parametrize("frame", ["deep", "overflow", "zero", "garbage"])
def test_a_forged_answer_frame_is_one_submission_error(frame, tmp_path, cli, warm_cache):
    """Headers nested 200,000 deep, shapes that overflow int64 or numpy: the child broke the protocol, no more."""
    proc, results = run_hostile(cli, "forge-frame", tmp_path, warm_cache, {"frame": frame})
    assert_submission_error(proc, results, "forge-frame", "broke the protocol")
    assert "Traceback" not in proc.stderr and "replacebench: error:" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_growing_the_shared_input_file_is_one_submission_error(tmp_path, cli, warm_cache):
    proc, results = run_hostile(cli, "grow-shared", tmp_path, warm_cache)
    assert_submission_error(proc, results, "grow-shared", "broke the protocol", "shared input file")
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_one_long_line_is_cut_and_the_output_bounded(tmp_path, cli, warm_cache):
    """64 MiB on one line: at most FORWARDED_LINE_BYTES of it shown, marked cut; the score is the honest zero's."""
    from benchmark.sandbox.process import FORWARDED_LINE_BYTES

    proc, results = run_hostile(cli, "loud-line", tmp_path, warm_cache)
    assert_honest_zero(proc, results, "loud-line")
    assert len(proc.stderr.encode()) < 2 * FORWARDED_LINE_BYTES, len(proc.stderr)
    assert proc.stderr.count("[line cut]") == 1


FORGED_LINE_STARTS = ("replacebench: submission", "::", "\u202e")


def test_forged_lines_and_control_characters_never_reach_the_terminal(tmp_path, cli, warm_cache):
    """Newlines, C0/C1 controls (CSI U+009B), bidi and zero-width characters, U+2028/2029/0085: every line the
    submission wrote or raised is printed prefixed, each unsafe character replaced, so no `::` starts a line."""
    proc, results = run_hostile(cli, "forge-message", tmp_path, warm_cache)
    assert_submission_error(proc, results, "forge-message", "raised ValueError: boom?replacebench: submission scored")
    lines = proc.stderr.splitlines()  # str.splitlines splits at U+2028, U+0085, \x1c... too: none may be left
    assert len(lines) == len(proc.stderr.split("\n")) - 1, "a line separator other than \\n was printed"
    headline = "replacebench: submission 'forge-message' (replace): replace() raised ValueError: boom?replacebench"
    assert sum(line.startswith(headline) for line in lines) == 1, proc.stderr
    own = ("  [submission 'forge-message' (replace)] ", "[submission] ", headline, "The submission's traceback:")
    assert all(line.startswith(own) for line in lines), proc.stderr
    assert sum(line.startswith(own[0]) for line in lines) == 8  # 4 lines printed, on stdout and on stderr
    assert "[submission] ValueError: boom" in lines and "[submission] ::error file=README.md::forged" in lines
    for line in proc.stdout.splitlines() + lines:
        assert not line.startswith(("::", "replacebench: submission scored")), line
    for char in "\x1b\x9b\x85\r\u202e\u2066\u2069\u200b\ufeff\u2028\u2029":
        assert char not in proc.stderr + proc.stdout, repr(char)


@pytest.mark.parametrize("key, value", [("description", "ok\u202eevil"), ("authors", "a\nb"), ("description", "\x9b2K")])
def test_metadata_with_control_or_bidi_characters_is_refused(key, value, tmp_path, cli, warm_cache):
    """What the board and the terminal show of a submission.toml holds none of them: a one-line user error."""
    folder = tmp_path / "forge-message"
    shutil.copytree(HOSTILE / "forge-message", folder)
    toml = folder / "submission.toml"
    toml.write_text("\n".join(line if not line.startswith(key) else f"{key} = {json.dumps(value)}"
                              for line in toml.read_text().splitlines()) + "\n")
    proc = cli("score", str(folder), "--task", TASK, "--no-record")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "format (bidi, zero-width)" in proc.stderr, proc.stderr
