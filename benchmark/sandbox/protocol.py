"""Messages between the harness and a submission's child: a JSON header, then raw float32 or int64 arrays.

A frame is `MAGIC | uint32 header length | header JSON | array bytes`, where
`header["arrays"] = [[name, shape, dtype], ...]` lists the arrays that follow,
C-contiguous, little-endian, in that order, each `prod(shape) * itemsize(dtype)`
bytes. `dtype` is one of the closed set `DTYPES` ("float32", "int64"), spelt
exactly so; any other value is a ProtocolViolation. A listing without a dtype
(`[name, shape]`, the format before int64 crossed) means float32. Only these
arrays and JSON cross: no pickles, no objects, no tensor subclasses.

Which dtypes a side accepts is the receiver's choice (`receive(accept=...)`):
the child accepts float32 and int64 (token ids cross as integers); the harness
accepts float32 only (`ANSWER_DTYPES`), so a child that answers with any other
dtype has broken the protocol. The sender sends float32 and int64 arrays as
they are and converts every other dtype to float32.

Requests from the harness may instead place their arrays in a shared memory
file (`SharedInputs`, a memfd that can only grow: sealed against shrinking
and against further seals), listed as `[name, shape, dtype, offset]` (or,
float32, `[name, shape, offset]`) with `offset` a multiple of `ALIGN`; the
child copies them out (or, for a request marked `owned`, whose region the harness
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
import math
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
MAX_HEADER_DEPTH = 32
MAX_ARRAY_BYTES = 1 << 62  # no array may list a shape whose nonzero extents, times its itemsize, reach this
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
MAX_ARRAYS = 256
MAX_DIMS = 8

Arrays = dict[str, np.ndarray]

DTYPES = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}  # the closed set of what may cross, by wire name
INPUT_DTYPES = frozenset(DTYPES)  # what the child accepts: float32 activations and int64 token ids
ANSWER_DTYPES = frozenset({"float32"})  # what the harness accepts from a child: float32 only


class ChannelClosed(Exception):
    """The other side closed its end (a child that exited or was killed)."""


class ChannelTimeout(Exception):
    """The deadline passed before the message was complete."""


class ProtocolViolation(Exception):
    """The other side sent something that is not a well-formed message."""


ALIGN = 64  # bytes: every array in the shared input file starts at a multiple of this


def wire_array(value: np.ndarray | Any, order: str = "C") -> np.ndarray:
    """`value` as an array that may cross: a 64-bit integer array as int64, anything else as float32."""
    array = np.asarray(value)
    is_int64 = array.dtype.kind == "i" and array.dtype.itemsize == 8
    return np.asarray(array, dtype=DTYPES["int64" if is_int64 else "float32"], order=order)  # type: ignore[call-overload]


def wire_name(array: np.ndarray) -> str:
    """The wire name of an array's dtype (one of `DTYPES`)."""
    return next(name for name, dtype in DTYPES.items() if array.dtype == dtype)


class SharedInputs:
    """The harness's side of the shared input file: it writes each request's arrays there, the child copies."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("replacebench-inputs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        self.size = 0
        self.map: mmap.mmap | None = None

    def place(self, arrays: Arrays) -> list[list[Any]]:
        """Copy `arrays` (float32 or int64) in, strided to C order in the same copy; their listing
        `[name, shape, dtype, offset]`, each offset a multiple of ALIGN."""
        offsets, end = [], 0
        for value in arrays.values():
            offsets.append(end)
            end += -(-value.nbytes // ALIGN) * ALIGN
        if end > self.size:
            # The child holds the file too and may grow it (it cannot shrink it: sealed); growing it past what the
            # harness wrote would make this ftruncate a shrink (EPERM). Either is the child breaking the protocol.
            if os.fstat(self.fd).st_size != self.size:
                raise ProtocolViolation("the child changed the size of the shared input file")
            self.size = max(end, self.size * 3 // 2, 1 << 20)
            try:
                os.ftruncate(self.fd, self.size)
            except OSError as exc:
                raise ProtocolViolation(f"the shared input file could not be resized ({exc.strerror}); "
                                        "the child changed it") from None
            if self.map is not None:
                self.map.close()
            self.map = mmap.mmap(self.fd, self.size)
        listing = []
        for (name, value), offset in zip(arrays.items(), offsets):
            if value.size:
                np.ndarray(value.shape, value.dtype, buffer=self.map, offset=offset)[...] = value
            listing.append([name, list(value.shape), wire_name(value), offset])
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

    def array(self, shape: tuple[int, ...], dtype: np.dtype, offset: int, owned: bool = False) -> np.ndarray:
        """The `dtype` array at `offset`: a copy, or (`owned`: the harness will not write that region again) a view."""
        if offset % ALIGN:
            raise ProtocolViolation(f"an array in the shared input file starts at {offset}, not a multiple of {ALIGN}")
        nbytes = dtype.itemsize * math.prod(shape)  # exact: a Python int never overflows
        if offset + nbytes > self.size:
            if self.map is not None:
                self.map.close()
            self.size = os.fstat(self.fd).st_size
            self.map = mmap.mmap(self.fd, self.size) if self.size else None
        if offset + nbytes > self.size or self.map is None:
            raise ProtocolViolation("an array lies outside the shared input file")
        view = np.ndarray(shape, dtype, buffer=self.map, offset=offset)
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
        """Send a message; with `shared`, its arrays go into the shared input file instead of the pipe.

        int64 arrays cross as int64, every other dtype as float32 (`wire_array`)."""
        if shared is not None and arrays:
            listing = shared.place({k: wire_array(v, order="K") for k, v in arrays.items()})  # place orders it
            self._write_all(memoryview(frame_header({**header, "arrays": listing})), deadline)
            return
        arrays = {k: wire_array(v) for k, v in (arrays or {}).items()}
        listing = [[k, list(v.shape), wire_name(v)] for k, v in arrays.items()]
        self._write_all(memoryview(frame_header({**header, "arrays": listing})), deadline)
        for value in arrays.values():
            if value.size:
                self._write_all(memoryview(value).cast("B"), deadline)

    def receive(self, max_bytes: int, deadline: float | None = None,
                accept: frozenset[str] = ANSWER_DTYPES) -> tuple[dict[str, Any], Arrays]:
        """One message: its header and its arrays, of the dtypes in `accept` only (by default float32, what the
        harness takes from a child), at most `max_bytes` of them (sizes counted with each dtype's itemsize)."""
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
            header = parse_header(bytes(body))
            listing = header.pop("arrays", None) if isinstance(header, dict) else None
            shapes = _check_listing(listing, accept)
        except ProtocolViolation:
            raise
        except Exception as exc:  # anything else the other side's bytes provoke is its violation, never our crash
            raise ProtocolViolation(f"a message header could not be read ({type(exc).__name__})") from None
        total = sum(dtype.itemsize * math.prod(shape) for _, shape, dtype, _ in shapes)  # exact, no int64 wrap
        if total > max_bytes:
            raise ProtocolViolation(f"a message carries {total} bytes of arrays, more than the {max_bytes} allowed")
        arrays: Arrays = {}
        for name, shape, dtype, offset in shapes:
            if offset is not None:
                if self.shared is None:
                    raise ProtocolViolation("a message points into shared memory, which this side does not read")
                arrays[name] = self.shared.array(shape, dtype, offset, owned=header.get("owned") is True)
                continue
            try:
                value = np.empty(shape, dtype=dtype)
            except (ValueError, MemoryError) as exc:
                raise ProtocolViolation(f"array '{name}' could not be allocated ({type(exc).__name__})") from None
            if value.size:
                self._read_into(memoryview(value).cast("B"), deadline)
            arrays[name] = value
        return header, arrays


Listed = tuple[str, tuple[int, ...], np.dtype, int | None]

def header_depth(body: bytes) -> int:
    """How deep `body`'s JSON nests: the maximum over its bytes of the running count of '[' '{' minus ']' '}'
    outside strings. Linear and vectorised (no backtracking, no recursion): a quote is a string's edge unless an
    odd run of backslashes precedes it; a byte is inside a string when an odd number of edges precede it."""
    b = np.frombuffer(body, dtype=np.uint8)  # [n]
    if not b.size:
        return 0
    at = np.arange(b.size)
    backslash = b == ord("\\")
    last_other = np.maximum.accumulate(np.where(backslash, -1, at))  # [n] the last non-backslash at or before i
    run_before = np.concatenate(([0], at[:-1] - last_other[:-1]))  # [n] backslashes just before i
    edge = (b == ord('"')) & (run_before % 2 == 0)
    inside = (np.cumsum(edge) - edge) % 2 == 1  # edges strictly before i: odd means inside a string
    step = (np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))) * ~inside
    return int(np.cumsum(step).max())


def parse_header(body: bytes) -> Any:
    """A header's JSON, checked to nest at most MAX_HEADER_DEPTH deep (`header_depth`) before it is parsed (`json`
    recurses once per level: 200,000 levels would end in RecursionError). Size: the caller's MAX_HEADER_BYTES."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("a message header is not UTF-8") from None
    if header_depth(body) > MAX_HEADER_DEPTH:
        raise ProtocolViolation(f"a message header nests deeper than {MAX_HEADER_DEPTH} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolViolation("a message header is not JSON") from None


def _check_listing(listing: Any, accept: frozenset[str]) -> list[Listed]:
    """[(name, shape, dtype, offset in the shared file or None)], each checked for form.

    An item is `[name, shape]`, `[name, shape, dtype]`, `[name, shape, offset]` or `[name, shape, dtype, offset]`:
    a dtype, when listed, is a string right after the shape (absent: float32); an offset is a non-negative int
    (or null: the pipe)."""
    if not isinstance(listing, list) or len(listing) > MAX_ARRAYS:
        raise ProtocolViolation("a message header does not list its arrays")
    out: list[Listed] = []
    for item in listing:
        ok = isinstance(item, list) and 2 <= len(item) <= 4 and isinstance(item[0], str) and NAME.match(item[0])
        shape = item[1] if ok else None
        if not ok or not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                type(d) is int and 0 <= d < (1 << 31) for d in shape):
            raise ProtocolViolation("a message lists an array with a malformed name or shape")
        rest = item[2:]
        name = rest.pop(0) if rest and isinstance(rest[0], str) else "float32"
        if name not in DTYPES:
            raise ProtocolViolation(f"a message lists array '{item[0]}' with dtype {name[:32]!r}; "
                                    f"only {' and '.join(DTYPES)} cross")
        if name not in accept:
            raise ProtocolViolation(f"a message lists array '{item[0]}' as {name}, which this side does not accept "
                                    f"(only {', '.join(sorted(accept))})")
        if DTYPES[name].itemsize * math.prod(max(d, 1) for d in shape) >= MAX_ARRAY_BYTES:
            # numpy refuses such a shape even with a zero in it ('array is too big'); exact, in Python ints
            raise ProtocolViolation(f"a message lists array '{item[0]}' with shape {shape}, too big for any array")
        offset = rest.pop(0) if rest else None
        if rest or (offset is not None and (type(offset) is not int or offset < 0)):
            raise ProtocolViolation("a message lists an array at a malformed offset")
        if item[0] in {n for n, _, _, _ in out}:
            raise ProtocolViolation(f"a message lists array '{item[0]}' twice")
        out.append((item[0], tuple(shape), DTYPES[name], offset))
    return out
