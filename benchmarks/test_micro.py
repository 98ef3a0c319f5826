"""Micro-benchmarks through pytest-benchmark: the statistics, the sandbox protocol's round trip, and the replaced
pass against a plain forward pass.

    pytest benchmarks --benchmark-only                        # the table (min, max, mean, median, IQR, OPS, rounds)
    pytest benchmarks --benchmark-only --benchmark-save=NAME  # also .benchmarks/<machine>/NNNN_NAME.json (ignored)
    pytest-benchmark compare 0001 0002                        # two saved runs side by side

Not part of the default `pytest` run (testpaths = tests). The other files here are scripts (`python
benchmarks/bench_*.py`) that time whole runs against naive references; these time the inner pieces:

- `recovery_stats` at n = 10,000 (three ablations, closed-form intervals), on skewed synthetic losses;
- one `Channel` request and answer over real pipes: a float32 MNIST-sized batch [500, 1, 28, 28] out, [500, 1]
  back, echoed by a thread that plays the child (framing, checks and copies, no process switch to a sandbox);
- on digits-mlp/fc1:17 (900 eval images, no data download): the eval pass with `zero` spliced in through its
  isolated child, and the same batches through the plain model, so their ratio is what replacing costs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (benchmark/cli.py), before torch loads

from bench_stats import synthetic_losses  # noqa: E402 (benchmarks/ is on sys.path when pytest collects it)

from benchmark import stats  # noqa: E402
from benchmark.sandbox.protocol import Channel  # noqa: E402

DIGITS_TASK = "digits-mlp/fc1:17"


def test_recovery_stats_n10k(benchmark):
    clean, ablated, replaced = synthetic_losses(10_000)
    result = benchmark(stats.recovery_stats, clean, ablated, replaced)
    assert set(result) == {"zero", "mean", "resample"} and all(r.defined for r in result.values())


@pytest.fixture()
def channels() -> Iterator[tuple[Channel, threading.Thread]]:
    """The harness's end, and a thread on the other end that answers each request with a [b, 1] output."""
    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    harness, child = Channel(a_read, a_write), Channel(b_read, b_write)

    def echo() -> None:
        while True:
            header, arrays = child.receive(max_bytes=1 << 30)
            if header.get("op") == "stop":
                return
            child.send({"ok": True}, {"out": np.zeros((arrays["image"].shape[0], 1), np.float32)})

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    yield harness, thread
    harness.send({"op": "stop"})
    thread.join(5)
    for fd in (a_read, a_write, b_read, b_write):
        os.close(fd)


def test_protocol_round_trip_mnist_batch(benchmark, channels):
    harness, _ = channels
    batch = {"image": np.random.default_rng(0).standard_normal((500, 1, 28, 28)).astype(np.float32)}

    def round_trip() -> np.ndarray:
        harness.send({"op": "replace"}, batch, deadline=time.monotonic() + 30)
        _, out = harness.receive(max_bytes=500 * 4, deadline=time.monotonic() + 30)
        return out["out"]

    assert benchmark(round_trip).shape == (500, 1)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    """digits-mlp/fc1:17 prepared, its baseline computed into a throwaway cache, and `zero` loaded in its room."""
    from benchmark.sandbox.process import isolation_problem

    problem = isolation_problem()
    if problem is not None:
        pytest.skip(f"no process isolation here: {problem}")
    os.environ["REPLACEBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # never the user's cache
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare
    from benchmark.harness.submissions import take_snapshot
    from benchmark.sandbox.limits import limits_for
    from benchmark.sandbox.room import IsolatedSubmission
    from benchmark.tasks import get_task

    ctx = prepare(get_task(DIGITS_TASK))
    baseline = load_or_compute(ctx)
    snapshot = take_snapshot(str(Path(__file__).resolve().parent.parent / "submissions" / "zero"))
    try:
        with IsolatedSubmission(snapshot, limits_for(ctx.task.dataset)) as room:
            room.load(ctx.task)
            room.start_replace(ctx.view(), None)
            yield ctx, room, baseline
    finally:
        snapshot.cleanup()


def test_replaced_pass_digits(benchmark, digits):
    from benchmark.harness.scoring import replaced_pass

    ctx, room, baseline = digits
    outputs, _, _ = benchmark(replaced_pass, ctx, room, baseline)
    np.testing.assert_array_equal(outputs["loss.replaced"], baseline.loss("zero"))  # zero's pass is the zero ablation


def test_plain_forward_digits(benchmark, digits):
    import torch

    from benchmark.harness.passes import batches, logits_from

    ctx, _, _ = digits

    def plain() -> int:
        with torch.no_grad():
            return sum(len(logits_from(ctx, batch.activation)) for batch in batches(ctx, "eval"))

    assert benchmark(plain) == len(ctx.eval_indices)
