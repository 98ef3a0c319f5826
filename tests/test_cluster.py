"""Scoring on a Ray cluster (`--cluster local`): records equal a serial run's, shards equal the unsharded pass,
a killed worker is retried then reported, and the cluster-only flags are checked.

The Ray tests start a real local Ray (about 10-20 s each on a 2-core machine) and skip, saying why, where Ray is
not installed (it is the `cluster` extra, not in `[test]`; `.ci/run` installs it). Every record goes to a tmp folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, run_cli, write_submission

#: What may differ between two runs of the same job: how and when it ran, and what its wall times were.
VARIES = ("provenance.execution", "provenance.seconds", "provenance.created", "provenance.baseline_from_cache",
          "provenance.git_dirty", "efficiency.original_seconds_per_example", "efficiency.replace_seconds_per_example")


@pytest.fixture(scope="module")
def ray_installed():
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("Ray is not installed: it is the optional cluster extra, not part of [test]; "
                    "pip install -e '.[cluster]' to run these tests (.ci/run does)")


def leaves(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def records(folder: Path) -> dict[str, tuple[dict, dict[str, np.ndarray]]]:
    out = {}
    for path in sorted(folder.glob("*/*.json")):
        record = json.loads(path.read_text())
        with np.load(path.parent / record["sidecar"]["file"]) as data:
            out[path.parent.name] = (record, {k: data[k] for k in data.files})
    return out


def assert_same_records(serial: Path, cluster: Path) -> None:
    """Every figure, hash and per-example array equal; only provenance of how the job ran (and timings) differ."""
    a, b = records(serial), records(cluster)
    assert a and set(a) == set(b)
    for slug, (ra, arrays_a) in a.items():
        rb, arrays_b = b[slug]
        la, lb = leaves(ra), leaves(rb)
        differ = [k for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k) and not k.startswith(VARIES)]
        assert differ == [], slug
        assert ra["provenance"]["execution"] == {"mode": "serial"}
        assert rb["provenance"]["execution"]["mode"] == "ray"
        assert set(arrays_a) == set(arrays_b)
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=f"{slug} {key}")


def test_cluster_flags_need_cluster(tmp_path):
    for flags in (["--workers", "2"], ["--shards", "2"], ["--job-time-limit", "5"]):
        proc = run_cli("score", "zero", "--task", "digits-mlp/fc1:17", "--results-dir", str(tmp_path), *flags)
        assert proc.returncode == 2 and proc.stderr.startswith("replacebench: error:"), proc.stderr
        assert "--cluster" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("score", "zero", "--task", "digits-mlp/fc1:17", "--cluster", "local", "--in-process",
                   "--results-dir", str(tmp_path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--in-process" in proc.stderr
    assert not any(tmp_path.rglob("*.json"))


def test_cluster_without_ray_is_one_line(tmp_path):
    """Where Ray is not installed (simulated: `import ray` fails), --cluster says how to install it."""
    code = ("import sys; sys.modules['ray'] = None; from benchmark.cli import main; "
            f"sys.exit(main(['score', 'zero', '--task', 'digits-mlp/fc1:17', '--cluster', 'local', '--results-dir', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("replacebench: error: --cluster needs Ray, an optional extra: "
                                   "pip install -e '.[cluster]' (ray==2.60.0).")


def test_core_install_does_not_import_ray():
    code = "import sys, benchmark.cli, benchmark.harness.runner, benchmark.board.verify, benchmark.harness.cluster; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_shard_bounds_start_on_batches():
    from benchmark.harness.cluster import shard_bounds

    assert shard_bounds(10_000, 2, 500) == [(0, 5000), (5000, 10_000)]
    assert shard_bounds(2000, 3, 32) == [(0, 672), (672, 1344), (1344, 2000)]
    assert shard_bounds(40, 8, 32) == [(0, 32), (32, 40)]  # no more pieces than batches
    for n, k, b in ((999, 4, 100), (31, 2, 32), (10_000, 7, 500)):
        bounds = shard_bounds(n, k, b)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(x[1] == y[0] and x[0] % b == 0 for x, y in zip(bounds, bounds[1:]))


@pytest.mark.slow  # ~30 s: two Ray workers on MNIST; the shard logic is tested fast above
def test_two_local_workers_give_the_serial_records_on_mnist(ray_installed, data_dir, session_cache, tmp_path):
    """The CI check: a 2-worker local Ray cluster scores two MNIST tasks; its records equal a serial run's."""
    tasks = "mnist-mlp/fc1:[12][06][19]"  # fc1:169 and fc1:201
    serial = run_cli("score", "zero", "--task", tasks, "--results-dir", str(tmp_path / "serial"), timeout=900)
    assert serial.returncode == 0, serial.stderr
    cluster = run_cli("score", "zero", "--task", tasks, "--results-dir", str(tmp_path / "ray"),
                      "--cluster", "local", "--workers", "2", timeout=900)
    assert cluster.returncode == 0, cluster.stderr
    assert len(list((tmp_path / "ray").glob("*/*.json"))) == 2
    assert_same_records(tmp_path / "serial", tmp_path / "ray")


@pytest.mark.slow
def test_two_local_workers_equal_the_serial_run(ray_installed, data_dir, session_cache, tmp_path):
    """`score zero --task 'mnist-mlp/fc1:*' --cluster local --workers 2`: the records of a serial run, then `verify
    --all --cluster local` passes them (it ignores provenance.execution)."""
    tasks = "mnist-mlp/fc1:*"
    serial = run_cli("score", "zero", "--task", tasks, "--results-dir", str(tmp_path / "serial"), timeout=900)
    assert serial.returncode == 0, serial.stderr
    cluster = run_cli("score", "zero", "--task", tasks, "--results-dir", str(tmp_path / "ray"),
                      "--cluster", "local", "--workers", "2", timeout=900)
    assert cluster.returncode == 0, cluster.stderr
    assert len(list((tmp_path / "ray").glob("*/*.json"))) == 6  # fc1:13, :6, :212, :159, :201, :top5
    assert_same_records(tmp_path / "serial", tmp_path / "ray")
    execution = records(tmp_path / "ray")["mnist-mlp__fc1-13"][0]["provenance"]["execution"]
    assert execution == {"mode": "ray", "address": "local", "workers": 2, "shard": None}
    verify = run_cli("verify", "--all", "--results-dir", str(tmp_path / "ray"), "--cluster", "local", "--workers", "2",
                     timeout=900)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "6 verified, 0 failed" in verify.stdout


@pytest.mark.slow
def test_shards_equal_the_unsharded_pass(ray_installed, data_dir, session_cache, tmp_path):
    """`linear` (a fit step) on mnist-mlp/fc1:13 in 3 shards: fit once, arrays and statistics of the serial run."""
    task = "mnist-mlp/fc1:13"
    serial = run_cli("score", "linear", "--task", task, "--results-dir", str(tmp_path / "serial"), timeout=900)
    assert serial.returncode == 0, serial.stderr
    sharded = run_cli("score", "linear", "--task", task, "--results-dir", str(tmp_path / "sharded"),
                      "--cluster", "local", "--workers", "2", "--shards", "3", timeout=900)
    assert sharded.returncode == 0, sharded.stderr
    assert_same_records(tmp_path / "serial", tmp_path / "sharded")
    record = records(tmp_path / "sharded")["mnist-mlp__fc1-13"][0]
    assert record["provenance"]["execution"]["shard"] == {"count": 3, "bounds": [[0, 3500], [3500, 6500], [6500, 10_000]]}
    assert record["complexity"]["fitted_parameters"] == records(tmp_path / "serial")["mnist-mlp__fc1-13"][0]["complexity"]["fitted_parameters"]


SLOW_REPLACE = """
import time
import numpy as np

def replace(image):
    time.sleep(60)
    return np.zeros((image.shape[0], 1), dtype=np.float32)
"""


def _descendants_named(root: int, title: str) -> list[int]:
    """PIDs under process `root` whose command line starts with `title` (Ray names a busy worker ray::<function>)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            pid, ancestors = int(entry.name), []
            parent = int(entry.name)
            while parent > 1 and parent != root:
                status = (Path("/proc") / str(parent) / "status").read_text()
                parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
                ancestors.append(parent)
        except (OSError, StopIteration, ValueError):
            continue
        if cmdline.startswith(title) and root in ancestors:
            found.append(pid)
    return found


@pytest.mark.slow
def test_killed_worker_is_retried_then_reported(ray_installed, data_dir, session_cache, tmp_path):
    """Every attempt's worker is SIGKILLed mid-job: Ray retries it once (--retries 1), then the job fails, no record."""
    from benchmark.harness.cluster import Cluster, ClusterOptions, score_on_cluster
    from benchmark.harness.runner import RunOptions
    from benchmark.harness.submissions import take_snapshot
    from benchmark.tasks import get_task

    folder = write_submission(tmp_path / "sleeper", SLOW_REPLACE)
    snapshot = take_snapshot(str(folder))
    results = tmp_path / "results"
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            for pid in _descendants_named(os.getpid(), "ray::score_job"):
                if pid not in killed:
                    time.sleep(1.0)  # let it get going
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    try:
        with Cluster(ClusterOptions(address="local", workers=1, retries=1, job_time_limit=300)) as cluster:
            thread.start()
            outcomes = list(score_on_cluster(cluster, [get_task("digits-mlp/fc1:17")], snapshot,
                                             RunOptions(data_dir=str(data_dir)), results))
    finally:
        stop.set()
        thread.join(timeout=5)
        snapshot.cleanup()
    assert len(outcomes) == 1 and outcomes[0].record is None
    assert "worker died" in outcomes[0].error and "1 retries" in outcomes[0].error
    assert len(killed) == 2  # the first attempt and its one retry
    assert not results.exists() or not any(results.rglob("*"))


@pytest.mark.slow
def test_job_over_its_wall_limit_is_cancelled(ray_installed, data_dir, session_cache, tmp_path):
    folder = write_submission(tmp_path / "sleeper", SLOW_REPLACE)
    proc = run_cli("score", str(folder), "--task", "digits-mlp/fc1:17", "--results-dir", str(tmp_path / "r"),
                   "--cluster", "local", "--workers", "1", "--job-time-limit", "20", timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "wall limit of 20 s" in proc.stderr and "1 of 1 job(s) failed" in proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))


@pytest.mark.slow
def test_ctrl_c_cancels_every_job(ray_installed, data_dir, session_cache, tmp_path):
    """SIGINT while two jobs run: exit 130, no record, and no job left running.

    The CLI starts with SIGINT at its default, as under a terminal: a suite launched in the background inherits
    SIGINT ignored, and a process that ignores it rightly ignores Ctrl-C (this test once failed that way)."""
    folder = write_submission(tmp_path / "sleeper", SLOW_REPLACE)
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "score", str(folder), "--task", "digits-mlp/fc1:*",
                             "--results-dir", str(tmp_path / "r"), "--cluster", "local", "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while len(_descendants_named(proc.pid, "ray::score_job")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    jobs = _descendants_named(proc.pid, "ray::score_job")
    assert len(jobs) == 2
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; no record was written" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))
    time.sleep(2)
    assert not [pid for pid in jobs if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::score_job")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_scoring_on_the_cluster(ray_installed, data_dir, session_cache, tmp_path):
    """Where a GPU exists: each job asks Ray for one, and scores on it (the record says cuda)."""
    proc = run_cli("score", "zero", "--task", "mnist-cnn/conv2:61", "--device", "cuda", "--results-dir", str(tmp_path),
                   "--cluster", "local", "--workers", "2", timeout=900)
    assert proc.returncode == 0, proc.stderr
    record = records(tmp_path)["mnist-cnn__conv2-61"][0]
    assert record["provenance"]["device"].startswith("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_inception_replaced_pass_against_a_plain_forward(data_dir, tmp_path):
    """benchmarks/bench_inception_speed.py --device cuda: the replaced pass and a plain forward, timed together."""
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_inception_speed.py"), "--device", "cuda",
                           "--images", "64", "--repeats", "2", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, env={**os.environ, "REPLACEBENCH_DATA": str(data_dir)})
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert figures["device"].startswith("cuda") and figures["images"] == 64
    assert 0 < figures["replaced_over_plain"] < float("inf")
