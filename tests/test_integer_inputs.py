"""Integer inputs (token ids) cross to a submission as int64, exactly; answers cross back as float32 only.

Every id here lies beyond 2^24, where float32 stops holding every integer: had an array crossed as float32,
`BASE + k` would arrive as a multiple of 2^17 (the float32 spacing at 2^40) and these tests would fail.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import torch
from helpers import write_submission

from benchmark.errors import SubmissionError
from benchmark.harness.passes import as_array
from benchmark.harness.submissions import take_snapshot
from benchmark.sandbox.framing import frame_header
from benchmark.sandbox.limits import limits_for
from benchmark.sandbox.process import isolation_problem
from benchmark.sandbox.protocol import (
    ALIGN,
    INPUT_DTYPES,
    Channel,
    ProtocolViolation,
    SharedInputs,
    SharedView,
)
from benchmark.sandbox.room import IsolatedSubmission
from benchmark.sandbox.worker import TaskView
from benchmark.tasks import get_task

BASE = 2**40  # float32(BASE + 1) == BASE
needs_isolation = pytest.mark.skipif(isolation_problem() is not None, reason=f"no process isolation: {isolation_problem()}")


def token_arrays() -> dict[str, np.ndarray]:
    """int64 ids that float32 would round, next to float32 values, with odd sizes so offsets must be aligned."""
    rng = np.random.default_rng(0)
    ids = BASE + rng.integers(0, 113, size=(5, 3))  # [b, 3]
    return {
        "odd": rng.standard_normal(3).astype(np.float32),  # 12 bytes: the next array's offset must be rounded up
        "tokens": ids.astype(np.int64),
        "extremes": np.array([np.iinfo(np.int64).min, -1, 0, 1, 2**24 + 1, 2**53 + 1, np.iinfo(np.int64).max]),
        "strided": (BASE + np.arange(24, dtype=np.int64)).reshape(4, 6)[:, ::2],  # not C-contiguous
        "empty": np.zeros((0, 3), np.int64),
        "image": rng.standard_normal((5, 2, 2)).astype(np.float32),
    }


def assert_exact(got: dict[str, np.ndarray], sent: dict[str, np.ndarray]) -> None:
    assert list(got) == list(sent)
    for key, value in sent.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert (got["tokens"] - BASE).min() >= 0 and len(np.unique(got["tokens"] - BASE)) > 1


def test_int64_round_trips_exactly_through_the_pipe(pair):
    harness, child = pair
    sent = token_arrays()
    harness.send({"op": "replace"}, sent, deadline=time.monotonic() + 5)
    header, got = child.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5, accept=INPUT_DTYPES)
    assert header == {"op": "replace"}
    assert_exact(got, sent)


@pytest.mark.parametrize("owned", [False, True])
def test_int64_round_trips_exactly_through_shared_memory(pair, owned):
    harness, child_side = pair
    shared = SharedInputs()
    child = Channel(child_side.read_fd, child_side.write_fd, shared=SharedView(os.dup(shared.fd)))
    sent = token_arrays()
    listing = shared.place({k: np.asarray(v) for k, v in sent.items()})
    assert [row[2] for row in listing] == ["float32", "int64", "int64", "int64", "int64", "float32"]
    assert all(row[3] % ALIGN == 0 for row in listing) and listing[1][3] == ALIGN  # 12 bytes, rounded up
    harness.send({"op": "fit", "owned": owned}, sent, deadline=time.monotonic() + 5, shared=shared)
    _, got = child.receive(max_bytes=1 << 20, accept=INPUT_DTYPES)
    assert_exact(got, sent)
    assert all(value.flags.aligned for value in got.values())
    assert (got["tokens"].base is not None) == owned  # owned: a view of the mapping; else the child's own copy
    shared.close()


def test_listings_without_a_dtype_mean_float32(pair):
    """The format from before int64 crossed: `[name, shape]` and `[name, shape, offset]`."""
    harness, child = pair
    value = np.arange(6, dtype=np.float32)
    os.write(harness.write_fd, frame_header({"op": "x", "arrays": [["a", [2, 3]]]}) + value.tobytes())
    _, got = child.receive(max_bytes=1 << 20, accept=INPUT_DTYPES)
    assert got["a"].dtype == np.float32
    np.testing.assert_array_equal(got["a"], value.reshape(2, 3))


@pytest.mark.parametrize("dtype", ["float64", "object", "<i8", "i8", "<f4", "int", "Int64", "int64 ", "INT64",
                                   "torch.int64", "int32", "uint64", "bool", "", "bogus" * 100])
@pytest.mark.parametrize("where", ["pipe", "shared"])
def test_a_dtype_outside_the_closed_set_is_refused(pair, dtype, where):
    harness, child = pair
    item = ["a", [2], dtype] + ([0] if where == "shared" else [])
    os.write(harness.write_fd, frame_header({"op": "replace", "arrays": [item]}) + bytes(16))
    with pytest.raises(ProtocolViolation, match="only float32 and int64 cross"):
        child.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5, accept=INPUT_DTYPES)


@pytest.mark.parametrize("item, message", [
    (["a", [2], 5], "shared memory"),  # an int where a dtype may stand is the old offset form: this side reads no shm
    (["a", [2], 5, 0], "malformed offset"),  # a dtype must be a string
    (["a", [2], None, 0], "malformed offset"),
    (["a", [2], ["int64"]], "malformed offset"),
    (["a", [2], "int64", "0"], "malformed offset"),
    (["a", [2], "int64", 0, 0], "malformed name or shape"),  # five items
    (["a", [200_000], "int64"], "more than"),  # 1.6 MB as int64 (0.8 MB had it been counted as float32)
])
def test_malformed_dtype_listings_are_refused(pair, item, message):
    harness, child = pair
    os.write(harness.write_fd, frame_header({"op": "replace", "arrays": [item]}))
    with pytest.raises(ProtocolViolation, match=message):
        child.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5, accept=INPUT_DTYPES)


def test_shared_offsets_must_be_aligned(pair):
    harness, child_side = pair
    shared = SharedInputs()
    child = Channel(child_side.read_fd, child_side.write_fd, shared=SharedView(os.dup(shared.fd)))
    shared.place({"x": np.zeros(1024, np.int64)})
    os.write(harness.write_fd, frame_header({"op": "replace", "arrays": [["a", [2], "int64", 4]]}))
    with pytest.raises(ProtocolViolation, match="not a multiple of 64"):
        child.receive(max_bytes=1 << 20, accept=INPUT_DTYPES)
    shared.close()


def test_the_harness_refuses_an_int64_answer(pair):
    harness, child = pair
    child.send({"ok": True}, {"out": np.full((2, 1), BASE, np.int64)})  # the child's sender keeps int64 as it is
    with pytest.raises(ProtocolViolation, match="'out' as int64, which this side does not accept"):
        harness.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5)
    assert len(os.read(harness.read_fd, 64)) == 16  # refused before its payload was read; drain it
    os.write(child.write_fd, frame_header({"ok": True, "arrays": [["out", [2], "float32"]]}) + bytes(8))
    _, got = harness.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5)  # float32 is what it takes
    assert got["out"].dtype == np.float32


def test_as_array_keeps_integers_as_int64_and_floats_as_float32():
    ids = torch.tensor([[BASE + 1, BASE + 3, 5]])
    assert as_array(ids).dtype == np.int64 and as_array(ids).tolist() == [[BASE + 1, BASE + 3, 5]]
    assert as_array(ids.int()).dtype == np.int64
    assert as_array(torch.ones(2, dtype=torch.float64)).dtype == np.float32
    assert as_array(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32


# -- a real submission, through the room ------------------------------------------------------------------------

READS_IDS = f"""
import torch

BASE = {BASE}


def fit(tokens, image, target):
    if tokens.dtype != torch.int64 or image.dtype != torch.float32 or target.dtype != torch.float32:
        raise TypeError(f"fit got {{tokens.dtype}}, {{image.dtype}}, {{target.dtype}}")
    return {{"low": (tokens - BASE).sum(0).float()}}  # [3]


def replace(tokens, image, params):
    if tokens.dtype != torch.int64 or image.dtype != torch.float32 or tokens.device.type != "cpu":
        raise TypeError(f"replace got {{tokens.dtype}} on {{tokens.device}}, {{image.dtype}}")
    low = (tokens - BASE).float()  # [b, 3], exact small integers
    return (low @ torch.tensor([1.0, 50.0, 0.0]) + params["low"][2] + image.sum(1))[:, None]  # [b, 1]
"""

SENDS_INT64 = f"""
import sys

import numpy as np
import torch

_worker = sys.modules["benchmark.sandbox.worker"]  # the child's own copy: patching it changes only what it sends
_worker.tensor_to_array = lambda value, who, shape: np.full(shape, {BASE}, dtype=np.int64)
_worker.params_to_arrays = lambda value, who: {{"ids": np.full(3, {BASE}, dtype=np.int64)}}


def fit(tokens):
    return {{}}


def replace(tokens):
    return torch.zeros(tokens.shape[0], 1)
"""


def token_task():
    """A task whose inputs are token ids and an image (only its inputs matter to the room)."""
    task = dataclasses.replace(get_task("digits-mlp/fc1:17"), inputs=("tokens", "image"))
    view = TaskView(id=task.id, model=task.model, layer=task.layer, units=task.units, inputs=task.inputs,
                    target_shape=(1,))
    return task, view


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_isolation), False])
def test_a_submission_receives_int64_ids_and_float32_activations(tmp_path, isolate):
    task, view = token_task()
    rng = np.random.default_rng(1)
    tokens = torch.as_tensor(BASE + rng.integers(0, 113, size=(6, 3)))  # [b, 3] int64
    image = torch.as_tensor(rng.standard_normal((6, 4)), dtype=torch.float32)  # [b, 4]
    inputs = {"tokens": as_array(tokens), "image": as_array(image)}
    snapshot = take_snapshot(str(write_submission(tmp_path / "ids", READS_IDS)))
    try:
        with IsolatedSubmission(snapshot, limits_for("digits"), isolate=isolate) as room:
            room.load(task)
            params = room.fit(inputs, np.zeros((6, 1), np.float32), view)
            room.start_replace(view, params)
            out = room.replace(inputs, (6, 1))
    finally:
        snapshot.cleanup()
    low = (tokens - BASE).numpy()
    np.testing.assert_array_equal(params["low"], low.sum(0).astype(np.float32))
    expected = low[:, 0] + 50 * low[:, 1] + low[:, 2].sum() + image.numpy().sum(1)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)
    assert out.dtype == np.float32 and len(np.unique(low)) > 1


@needs_isolation
def test_a_child_that_answers_with_int64_breaks_the_protocol(tmp_path):
    task, view = token_task()
    inputs = {"tokens": np.full((2, 3), BASE, np.int64)}
    snapshot = take_snapshot(str(write_submission(tmp_path / "sends-int", SENDS_INT64)))
    try:
        with IsolatedSubmission(snapshot, limits_for("digits")) as room:
            room.load(task)
            with pytest.raises(SubmissionError, match=r"\(fit\) broke the protocol: .*'ids' as int64"):
                room.fit(inputs, None, view)
            room.start_replace(view, {})
            with pytest.raises(SubmissionError, match=r"\(replace\) broke the protocol: .*'out' as int64"):
                room.replace(inputs, (2, 1))
    finally:
        snapshot.cleanup()
