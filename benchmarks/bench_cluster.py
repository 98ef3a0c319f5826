"""Scaling out with Ray: wall time of whole CLI commands, 1 against 2 (or more) local workers, in the same run.

    REPLACEBENCH_DATA=../shared/data python benchmarks/bench_cluster.py mnist [--workers 1 2]
    REPLACEBENCH_DATA=../shared/data python benchmarks/bench_cluster.py inception [--images 2000] [--shards 1 2]

- mnist: `score zero --all` (every digits/MNIST task) serially once (this also fills a fresh baseline cache),
  then with `--cluster local --workers N` for each N; the records of every run must equal the serial ones.
- inception: `score zero --task inceptionv1/mixed3b:curves` on random weights (published format, fetched from a
  file:// URL) and the 103 sample images repeated to `--images` eval images, `--no-cache`, with
  `--cluster local --workers 2 --shards K` for each K; the per-example arrays and figures are compared.

Every command runs in a fresh process and includes starting Ray (timed alone as `ray start`). The timings are of
whatever machine runs this; on a shared one they are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
VARIES = ("provenance.execution", "provenance.seconds", "provenance.created", "provenance.baseline_from_cache",
          "provenance.git_dirty", "efficiency.original_seconds_per_example", "efficiency.replace_seconds_per_example")


def cli(*args: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return seconds


def ray_start_seconds(workers: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import ray, logging; ray.init(num_cpus={workers}, include_dashboard=False, "
                    "logging_level=logging.ERROR); ray.get(ray.remote(lambda: 1).remote()); ray.shutdown()"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def leaves(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def compare(a: Path, b: Path) -> dict[str, object]:
    """Records of two runs: leaves that differ (outside how/when they ran), largest per-example difference."""
    differ, worst, n = [], 0.0, 0
    for path in sorted(a.glob("*/*.json")):
        other = b / path.parent.name / path.name
        ra, rb = json.loads(path.read_text()), json.loads(other.read_text())
        la, lb = leaves(ra), leaves(rb)
        differ += [f"{path.parent.name}: {k}" for k in sorted(set(la) | set(lb))
                   if la.get(k) != lb.get(k) and not k.startswith(VARIES)]
        with np.load(path.parent / ra["sidecar"]["file"]) as x, np.load(other.parent / rb["sidecar"]["file"]) as y:
            for key in x.files:
                worst = max(worst, float(np.max(np.abs(x[key].astype(np.float64) - y[key].astype(np.float64)), initial=0)))
        n += 1
    return {"records": n, "differing_fields": differ, "max_abs_array_difference": worst}


def bench_mnist(args: argparse.Namespace, work: Path) -> dict[str, object]:
    env = {"REPLACEBENCH_CACHE": str(work / "cache")}
    out: dict[str, object] = {"serial_cold_s": cli("score", "zero", "--all", "--results-dir", str(work / "serial"), env=env)}
    out["serial_warm_s"] = cli("score", "zero", "--all", "--results-dir", str(work / "serial-warm"), env=env)
    out["tasks"] = len(list((work / "serial").glob("*/*.json")))
    for n in args.workers:
        out[f"ray_start_{n}_s"] = ray_start_seconds(n)
        out[f"ray_{n}_workers_s"] = cli("score", "zero", "--all", "--results-dir", str(work / f"ray{n}"),
                                        "--cluster", "local", "--workers", str(n), env=env)
        out[f"ray_{n}_workers_vs_serial"] = compare(work / "serial", work / f"ray{n}")
    first = args.workers[0]
    for n in args.workers[1:]:
        out[f"speedup_{n}_over_{first}"] = out[f"ray_{first}_workers_s"] / out[f"ray_{n}_workers_s"]
    return out


def bench_inception(args: argparse.Namespace, work: Path) -> dict[str, object]:
    from helpers_inception import install_random_weights, repeat_images

    shared = Path(os.environ.get("REPLACEBENCH_DATA", ROOT.parent / "shared" / "data"))
    env = {"REPLACEBENCH_CACHE": str(work / "cache"), "REPLACEBENCH_DATA": str(work / "data")}
    os.environ["REPLACEBENCH_CACHE"] = env["REPLACEBENCH_CACHE"]
    install_random_weights(work / "cache", work / "data", shared / "inceptionv1" / "old_imagenet_labels.txt")
    images = repeat_images(shared / "imagenet-sample", work / "images", args.images + args.fit_size)
    common = ["score", "zero", "--task", args.task, "--imagenet", str(images), "--eval-size", str(args.images),
              "--fit-size", str(args.fit_size), "--no-cache", "--cluster", "local", "--workers", str(args.workers)]
    out: dict[str, object] = {"images": args.images, "workers": args.workers,
                              "ray_start_s": ray_start_seconds(args.workers)}
    for k in args.shards:
        out[f"shards_{k}_s"] = cli(*common, "--shards", str(k), "--results-dir", str(work / f"shards{k}"), env=env)
    first = args.shards[0]
    for k in args.shards[1:]:
        out[f"speedup_{k}_over_{first}_shards"] = out[f"shards_{first}_s"] / out[f"shards_{k}_s"]
        out[f"shards_{k}_vs_{first}"] = compare(work / f"shards{first}", work / f"shards{k}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("mnist")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p = sub.add_parser("inception")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--fit-size", type=int, default=100)
    p.add_argument("--task", default="inceptionv1/mixed3b:curves")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    figures = bench_mnist(args, work) if args.what == "mnist" else bench_inception(args, work)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
