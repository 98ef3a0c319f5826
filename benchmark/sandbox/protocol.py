"""Messages between the harness and a submission's child: a JSON header, then raw float32 arrays.

A frame is `MAGIC | uint32 header length | header JSON | array bytes`, where
`header["arrays"] = [[name, shape], ...]` lists the float32 arrays that follow,
C-contiguous, in that order. Only float32 arrays and JSON cross: no pickles,
no objects, no tensor subclasses.

The reading side trusts nothing it receives: the magic, a header of at most
MAX_HEADER_BYTES, names and shapes of the right form, a payload of at most the
caller's `max_bytes`, and a deadline on every read and write (a child that
stops answering cannot hang the harness).
"""

from __future__ import annotations

import json
import os
import re
import select
import struct
import time
from typing import Any

import numpy as np

from .framing import MAGIC, frame_header

MAX_HEADER_BYTES = 1 << 20
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
MAX_ARRAYS = 256
MAX_DIMS = 8

Arrays = dict[str, np.ndarray]


class ChannelClosed(Exception):
    """The other side closed its end (a child that exited or was killed)."""


class ChannelTimeout(Exception):
    """The deadline passed before the message was complete."""


class ProtocolViolation(Exception):
    """The other side sent something that is not a well-formed message."""


class Channel:
    """One end of a pair of pipes. `deadline` is a `time.monotonic()` value, or None for no limit."""

    def __init__(self, read_fd: int, write_fd: int, blocking: bool = False):
        self.read_fd, self.write_fd = read_fd, write_fd
        if not blocking:
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)

    def _wait(self, fd: int, for_write: bool, deadline: float | None) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise ChannelTimeout()
        ready = select.select([], [fd], [], remaining) if for_write else select.select([fd], [], [], remaining)
        if not any(ready):
            raise ChannelTimeout()

    def _write_all(self, data: memoryview, deadline: float | None) -> None:
        while len(data):
            try:
                written = os.write(self.write_fd, data)
            except BlockingIOError:
                self._wait(self.write_fd, True, deadline)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed() from None
            data = data[written:]

    def _read_into(self, buffer: memoryview, deadline: float | None) -> None:
        while len(buffer):
            try:
                got = os.readv(self.read_fd, [buffer])
            except BlockingIOError:
                self._wait(self.read_fd, False, deadline)
                continue
            except ConnectionResetError:
                raise ChannelClosed() from None
            if got == 0:
                raise ChannelClosed()
            buffer = buffer[got:]

    def send(self, header: dict[str, Any], arrays: Arrays | None = None, deadline: float | None = None) -> None:
        arrays = {k: np.asarray(v, dtype=np.float32, order="C") for k, v in (arrays or {}).items()}
        listing = [[k, list(v.shape)] for k, v in arrays.items()]
        self._write_all(memoryview(frame_header({**header, "arrays": listing})), deadline)
        for value in arrays.values():
            if value.size:
                self._write_all(memoryview(value).cast("B"), deadline)

    def receive(self, max_bytes: int, deadline: float | None = None) -> tuple[dict[str, Any], Arrays]:
        prefix = bytearray(8)
        self._read_into(memoryview(prefix), deadline)
        if prefix[:4] != MAGIC:
            raise ProtocolViolation("a message did not start with the protocol's magic bytes")
        (length,) = struct.unpack("<I", prefix[4:])
        if length > MAX_HEADER_BYTES:
            raise ProtocolViolation(f"a message header of {length} bytes exceeds {MAX_HEADER_BYTES}")
        body = bytearray(length)
        self._read_into(memoryview(body), deadline)
        try:
            header = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolViolation("a message header is not JSON") from None
        listing = header.pop("arrays", None) if isinstance(header, dict) else None
        shapes = _check_listing(listing)
        total = sum(4 * int(np.prod(shape, dtype=np.int64)) for _, shape in shapes)
        if total > max_bytes:
            raise ProtocolViolation(f"a message carries {total} bytes of arrays, more than the {max_bytes} allowed")
        arrays: Arrays = {}
        for name, shape in shapes:
            value = np.empty(shape, dtype=np.float32)
            if value.size:
                self._read_into(memoryview(value).cast("B"), deadline)
            arrays[name] = value
        return header, arrays


def _check_listing(listing: Any) -> list[tuple[str, tuple[int, ...]]]:
    if not isinstance(listing, list) or len(listing) > MAX_ARRAYS:
        raise ProtocolViolation("a message header does not list its arrays")
    out: list[tuple[str, tuple[int, ...]]] = []
    for item in listing:
        ok = isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and NAME.match(item[0])
        shape = item[1] if ok else None
        if not ok or not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                type(d) is int and 0 <= d < (1 << 31) for d in shape):
            raise ProtocolViolation("a message lists an array with a malformed name or shape")
        if item[0] in {name for name, _ in out}:
            raise ProtocolViolation(f"a message lists array '{item[0]}' twice")
        out.append((item[0], tuple(shape)))
    return out
