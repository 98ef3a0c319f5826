"""Messages between the harness and a submission's child: a JSON header, then raw float32 arrays.

A frame is `MAGIC | uint32 header length | header JSON | array bytes`, where
`header["arrays"] = [[name, shape], ...]` lists the float32 arrays that follow,
C-contiguous, in that order. Only float32 arrays and JSON cross: no pickles,
no objects, no tensor subclasses.

Requests from the harness may instead place their arrays in a shared memory
file (`SharedInputs`, a memfd that can only grow: sealed against shrinking
and against further seals), listed as `[name, shape, offset]`; the child
copies them out (or, for a request marked `owned`, whose region the harness
never writes again, such as `fit`'s, maps them). That saves two copies of every input through the kernel
(InceptionV1 and conv inputs are hundreds of MB per task). Answers always
come through the pipe: the harness never reads memory a child can write.

The reading side trusts nothing it receives: the magic, a header of at most
MAX_HEADER_BYTES, names and shapes of the right form, a payload of at most the
caller's `max_bytes`, and a deadline on every read and write (a child that
stops answering cannot hang the harness).
"""

from __future__ import annotations

import fcntl
import json
import mmap
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


ALIGN = 64


class SharedInputs:
    """The harness's side of the shared input file: it writes each request's arrays there, the child copies."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("replacebench-inputs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        self.size = 0
        self.map: mmap.mmap | None = None

    def place(self, arrays: Arrays) -> list[list[Any]]:
        """Copy `arrays` in (strided to C order in the same copy); their listing with offsets."""
        offsets, end = [], 0
        for value in arrays.values():
            offsets.append(end)
            end += -(-value.size * 4 // ALIGN) * ALIGN
        if end > self.size:
            self.size = max(end, self.size * 3 // 2, 1 << 20)
            os.ftruncate(self.fd, self.size)
            if self.map is not None:
                self.map.close()
            self.map = mmap.mmap(self.fd, self.size)
        listing = []
        for (name, value), offset in zip(arrays.items(), offsets):
            if value.size:
                np.ndarray(value.shape, np.float32, buffer=self.map, offset=offset)[...] = value
            listing.append([name, list(value.shape), offset])
        return listing

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
        os.close(self.fd)


class SharedView:
    """The child's side: maps the shared input file (again when it has grown) and copies arrays out."""

    def __init__(self, fd: int) -> None:
        self.fd, self.size = fd, 0
        self.map: mmap.mmap | None = None

    def array(self, shape: tuple[int, ...], offset: int, owned: bool = False) -> np.ndarray:
        """The array at `offset`: a copy, or (`owned`: the harness will not write that region again) a view."""
        nbytes = 4 * int(np.prod(shape, dtype=np.int64))
        if offset + nbytes > self.size:
            if self.map is not None:
                self.map.close()
            self.size = os.fstat(self.fd).st_size
            self.map = mmap.mmap(self.fd, self.size) if self.size else None
        if offset + nbytes > self.size or self.map is None:
            raise ProtocolViolation("an array lies outside the shared input file")
        view = np.ndarray(shape, np.float32, buffer=self.map, offset=offset)
        return view if owned else view.copy()


class Channel:
    """One end of a pair of pipes. `deadline` is a `time.monotonic()` value, or None for no limit."""

    def __init__(self, read_fd: int, write_fd: int, blocking: bool = False, shared: SharedView | None = None):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.shared = shared  # the child's view of the shared inputs; None: arrays must come through the pipe
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

    def send(self, header: dict[str, Any], arrays: Arrays | None = None, deadline: float | None = None,
             shared: SharedInputs | None = None) -> None:
        """Send a message; with `shared`, its arrays go into the shared input file instead of the pipe."""
        if shared is not None and arrays:
            listing = shared.place({k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
            self._write_all(memoryview(frame_header({**header, "arrays": listing})), deadline)
            return
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
        total = sum(4 * int(np.prod(shape, dtype=np.int64)) for _, shape, _ in shapes)
        if total > max_bytes:
            raise ProtocolViolation(f"a message carries {total} bytes of arrays, more than the {max_bytes} allowed")
        arrays: Arrays = {}
        for name, shape, offset in shapes:
            if offset is not None:
                if self.shared is None:
                    raise ProtocolViolation("a message points into shared memory, which this side does not read")
                arrays[name] = self.shared.array(shape, offset, owned=header.get("owned") is True)
                continue
            value = np.empty(shape, dtype=np.float32)
            if value.size:
                self._read_into(memoryview(value).cast("B"), deadline)
            arrays[name] = value
        return header, arrays


def _check_listing(listing: Any) -> list[tuple[str, tuple[int, ...], int | None]]:
    """[(name, shape, offset in the shared file or None)], each checked for form."""
    if not isinstance(listing, list) or len(listing) > MAX_ARRAYS:
        raise ProtocolViolation("a message header does not list its arrays")
    out: list[tuple[str, tuple[int, ...], int | None]] = []
    for item in listing:
        offset = item[2] if isinstance(item, list) and len(item) == 3 else None
        if offset is not None and (type(offset) is not int or offset < 0):
            raise ProtocolViolation("a message lists an array at a malformed offset")
        ok = isinstance(item, list) and len(item) in (2, 3) and isinstance(item[0], str) and NAME.match(item[0])
        shape = item[1] if ok else None
        if not ok or not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                type(d) is int and 0 <= d < (1 << 31) for d in shape):
            raise ProtocolViolation("a message lists an array with a malformed name or shape")
        if item[0] in {name for name, _, _ in out}:
            raise ProtocolViolation(f"a message lists array '{item[0]}' twice")
        out.append((item[0], tuple(shape), offset))
    return out
