"""The float32 protocol between the harness and a child: round trips, and everything a hostile side might send."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time

import numpy as np
import pytest

from benchmark.sandbox.framing import MAGIC, frame_header
from benchmark.sandbox.protocol import (
    MAX_HEADER_BYTES,
    Channel,
    ChannelClosed,
    ChannelTimeout,
    ProtocolViolation,
    SharedInputs,
    SharedView,
)


def test_arrays_round_trip_exactly(pair):
    harness, child = pair
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((3, 4, 5)).astype(np.float32), "scalar": np.float32(2.5),
              "empty": np.zeros((0, 7), np.float32), "strided": rng.standard_normal((6, 6)).astype(np.float32)[:, ::2]}
    child.send({"ok": True, "note": "hi"}, arrays)
    header, got = harness.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5)
    assert header == {"ok": True, "note": "hi"}
    assert list(got) == list(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], np.asarray(value))
        assert got[key].shape == np.shape(value) and got[key].dtype == np.float32


def raw(channel: Channel, data: bytes) -> None:
    os.write(channel.write_fd, data)


@pytest.mark.parametrize("frame, message", [
    (b"XXXX" + struct.pack("<I", 2) + b"{}", "magic"),
    (MAGIC + struct.pack("<I", MAX_HEADER_BYTES + 1), "exceeds"),
    (MAGIC + struct.pack("<I", 5) + b"nope!", "not JSON"),
    (frame_header({"ok": True, "arrays": "x"}), "does not list"),
    (frame_header({"ok": True, "arrays": [["a", [2]], ["a", [2]]]}), "twice"),
    (frame_header({"ok": True, "arrays": [["a", [-1]]]}), "malformed"),
    (frame_header({"ok": True, "arrays": [["a", [2.5]]]}), "malformed"),
    (frame_header({"ok": True, "arrays": [["../x", [2]]]}), "malformed"),
    (frame_header({"ok": True, "arrays": [["a", [1 << 20, 1 << 10]]]}), "more than"),
    (frame_header({"ok": True, "arrays": [["a", [2], 0]]}), "shared memory"),
    (frame_header({"ok": True, "arrays": [["a", [2], -8]]}), "offset"),
])
def test_malformed_messages_are_refused(pair, frame, message):
    harness, child = pair
    raw(child, frame)
    with pytest.raises(ProtocolViolation, match=message):
        harness.receive(max_bytes=1 << 20, deadline=time.monotonic() + 5)


def test_a_silent_or_closed_peer_cannot_hang_the_harness(pair):
    harness, child = pair
    start = time.monotonic()
    with pytest.raises(ChannelTimeout):
        harness.receive(max_bytes=100, deadline=start + 0.3)
    assert time.monotonic() - start < 2
    raw(child, MAGIC + struct.pack("<I", 100) + b"{")  # a header that never finishes
    with pytest.raises(ChannelTimeout):
        harness.receive(max_bytes=100, deadline=time.monotonic() + 0.3)
    os.close(child.write_fd)
    with pytest.raises(ChannelClosed):
        harness.receive(max_bytes=100, deadline=time.monotonic() + 5)


def test_a_child_that_does_not_read_cannot_block_a_send(pair):
    harness, _ = pair
    big = {"x": np.zeros(4 << 20, np.float32)}  # far more than a pipe holds
    with pytest.raises(ChannelTimeout):
        harness.send({"op": "replace"}, big, deadline=time.monotonic() + 0.3)


def test_shared_inputs_reach_the_child_and_cannot_be_shrunk_or_sealed(pair):
    harness, child_side = pair
    shared = SharedInputs()
    child = Channel(child_side.read_fd, child_side.write_fd, shared=SharedView(os.dup(shared.fd)))
    rng = np.random.default_rng(1)
    channels_last = rng.standard_normal((4, 5, 6, 3)).astype(np.float32).transpose(0, 3, 1, 2)  # strided view
    for batch in range(2):
        arrays = {"image": channels_last + batch, "conv1": rng.standard_normal((4, 7)).astype(np.float32)}
        harness.send({"op": "replace"}, arrays, deadline=time.monotonic() + 5, shared=shared)
        header, got = child.receive(max_bytes=1 << 30)
        assert header == {"op": "replace"}
        for key in arrays:
            np.testing.assert_array_equal(got[key], arrays[key])
    first = got["image"].copy()
    harness.send({"op": "replace"}, {"image": channels_last * 0}, deadline=time.monotonic() + 5, shared=shared)
    np.testing.assert_array_equal(got["image"], first)  # what the child received is its own copy
    assert not child.receive(max_bytes=1 << 30)[1]["image"].any()
    seals = fcntl.fcntl(shared.fd, fcntl.F_GET_SEALS)
    assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_SEAL
    with pytest.raises(PermissionError):
        os.ftruncate(child.shared.fd, 0)  # the child cannot pull memory from under the harness's mapping
    with pytest.raises(PermissionError):
        fcntl.fcntl(child.shared.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW)
    raw(harness, frame_header({"op": "replace", "arrays": [["x", [10], 1 << 30]]}))
    with pytest.raises(ProtocolViolation, match="outside the shared input file"):
        child.receive(max_bytes=1 << 40)
    shared.close()


def test_frame_header_is_json_with_its_listing():
    frame = frame_header({"ok": False, "jail_error": "x"})
    assert frame[:4] == MAGIC
    (length,) = struct.unpack("<I", frame[4:8])
    assert json.loads(frame[8:]) == {"arrays": [], "ok": False, "jail_error": "x"} and length == len(frame) - 8
