"""What a child sends the harness, from real processes: its output relayed in bounded memory, and frames that
end only in the errors a SubmissionError is made of.

- `_forward` reads a child's stdout/stderr in chunks: a 256 MiB line without a newline costs the harness a few
  MiB (measured as the VmHWM delta of a harness in its own process), and at most FORWARDED_LINE_BYTES of a line
  and FORWARDED_OUTPUT_BYTES in all are relayed.
- `Channel.receive` on frames a fake child writes (random and mutated, seeded) raises ProtocolViolation,
  ChannelClosed or ChannelTimeout, which `Child._exchange` turns into a SubmissionError, or returns; nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from benchmark.sandbox.process import FORWARDED_LINE_BYTES, FORWARDED_OUTPUT_BYTES
from benchmark.sandbox.protocol import ANSWER_DTYPES, Channel, ChannelClosed, ChannelTimeout, ProtocolViolation

WRITER = r"""
import os, sys
mode, size = sys.argv[1], int(sys.argv[2])
if mode == "line":  # one line, no newline
    block = b"x" * (1 << 20)
else:  # short lines
    block = (b"y" * 99 + b"\n") * ((1 << 20) // 100)
for _ in range(size >> 20):
    os.write(1, block)
"""

HARNESS = r"""
import json, os, subprocess, sys
from benchmark.sandbox.process import _forward

def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024

class Sink:
    def __init__(self):
        self.bytes, self.lines = 0, []
    def write(self, text):
        self.bytes += len(text.encode())
        self.lines.append(text[:40] + text[-40:] if len(text) > 80 else text)
    def flush(self):
        pass

read, write = os.pipe()
writer = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], stdout=write)
os.close(write)
sink, before = Sink(), hwm()
_forward(read, sink, lambda: "submission 'x' (replace)")
writer.wait()
print(json.dumps({"hwm_delta": hwm() - before, "relayed": sink.bytes, "lines": sink.lines[-3:],
                  "notices": sum("(more output not shown)" in l for l in sink.lines)}))
"""


def relay(mode: str, size: int) -> dict:
    """Relay `size` bytes a real child writes (one line, or 100-byte lines) in a fresh harness process."""
    out = subprocess.run([sys.executable, "-c", HARNESS, WRITER, mode, str(size)], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout)


def test_one_long_line_costs_the_harness_no_memory_and_is_cut():
    """256 MiB with no newline: the old line-by-line read held all of it (and its decoded copy)."""
    result = relay("line", 256 << 20)
    assert result["hwm_delta"] < 16 << 20, result["hwm_delta"]
    assert result["relayed"] < FORWARDED_LINE_BYTES + 200, result["relayed"]
    assert result["lines"] == [result["lines"][-1]] and result["lines"][-1].endswith("x [line cut]\n"), result


def test_output_in_all_is_capped_and_the_cut_said_once():
    result = relay("lines", 64 << 20)
    assert result["relayed"] < FORWARDED_OUTPUT_BYTES + (1 << 16), result["relayed"]
    assert result["notices"] == 1
    assert result["lines"][-1] == "  [submission 'x' (replace)] (more output not shown)\n"


FUZZER = r"""
import json, os, random, struct, sys

seed, fds = int(sys.argv[1]), [int(f) for f in sys.argv[2:]]
rng = random.Random(seed)
MAGIC = b"RBF1"

def value(depth=0):
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0: return rng.choice([None, True, False])
    if kind == 1: return rng.choice([0, -1, 1 << 31, (1 << 63) - 1, 1 << 64, -(1 << 70), rng.randrange(-9, 1 << 40)])
    if kind == 2: return rng.choice([0.5, 1e308, -0.0, float("nan"), float("inf")])
    if kind == 3: return rng.choice(["", "out", "float32", "int64", "float64", "\u202e", "x" * 300, "\ud800"])
    if kind == 4: return rng.choice([[], {}, [[[]]]])
    if kind in (5, 6): return [value(depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["ok", "arrays", "owned", "message", "traceback", "x"]): value(depth + 1)
            for _ in range(rng.randrange(4))}

def shape():
    return [rng.choice([0, 1, 2, 3, 1 << 16, (1 << 31) - 1, 1 << 31, -1, 2.0, "2", None]) for _ in range(rng.randrange(10))]

def listing():
    items = []
    for _ in range(rng.randrange(4)):
        item = [rng.choice(["out", "out", "x", "", "1a", 3]), shape()]
        if rng.random() < 0.5: item.append(rng.choice(["float32", "int64", "float64", 0, 64, -64, None]))
        if rng.random() < 0.3: item.append(rng.choice([0, 64, 3, -1, None, 1 << 62]))
        items.append(item)
    return rng.choice([items, items, items, value(), None])

def frame():
    header = {"ok": rng.choice([True, False, 1, None]), "arrays": listing()}
    extra = value(1)
    if rng.random() < 0.3 and isinstance(extra, dict): header.update(extra)
    if rng.random() < 0.1: header = value()
    try:
        body = json.dumps(header).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):
        body = b"{}"
    if rng.random() < 0.1: body = b"[" * rng.choice([33, 1000, 200000]) + body
    length = struct.pack("<I", len(body))
    if rng.random() < 0.1: length = struct.pack("<I", rng.choice([0, 1, len(body) + 7, (1 << 32) - 1, 1 << 20]))
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 4, 24, 100])))
    data = bytearray(MAGIC + length + body + payload)
    for _ in range(rng.choice([0, 0, 1, 3])):  # flipped bytes
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.1: data = data[:rng.randrange(len(data) + 1)]  # cut short
    return bytes(data)

for fd in fds:
    try:
        os.write(fd, frame())
    except OSError:
        pass
    os.close(fd)
"""


@pytest.mark.parametrize("seed", range(4))
def test_random_and_mutated_frames_from_a_child_end_only_in_protocol_errors(seed):
    """100 frames per seed, each on its own pipe from a real fake-child process; the harness side reads each."""
    pipes = [os.pipe() for _ in range(100)]
    child = subprocess.Popen([sys.executable, "-c", FUZZER, str(seed), *(str(w) for _, w in pipes)],
                             pass_fds=[w for _, w in pipes])
    outcomes: dict[str, int] = {}
    k = -1
    for _, write in pipes:
        os.close(write)
    try:
        for k, (read, _) in enumerate(pipes):
            channel = Channel(read, os.open(os.devnull, os.O_WRONLY))
            try:
                header, arrays = channel.receive(1 << 20, time.monotonic() + 10, accept=ANSWER_DTYPES)
                # what _exchange checks next: an answer is a dict with a bool 'ok'
                kind = "answer" if isinstance(header, dict) and isinstance(header.get("ok"), bool) else "no ok"
            except (ProtocolViolation, ChannelClosed, ChannelTimeout) as exc:  # each a SubmissionError in _exchange
                kind = type(exc).__name__
            outcomes[kind] = outcomes.get(kind, 0) + 1
            os.close(read)
            os.close(channel.write_fd)
    finally:
        for read, _ in pipes[k + 1:]:  # a failure above: the fuzzer's writes end at once (EPIPE)
            os.close(read)
        child.wait(timeout=60)
    assert child.returncode == 0, "the fuzzer itself failed"
    assert outcomes.get("ChannelTimeout", 0) == 0, outcomes
    assert outcomes.get("ProtocolViolation", 0) > 20, outcomes  # the fuzzer reaches the checks


def test_header_depth_is_exact_on_json_and_linear_on_hostile_strings():
    """Brackets inside strings (escaped quotes too) do not count; 500,000 escaped quotes take linear time."""
    import random

    from benchmark.sandbox.protocol import header_depth

    rng = random.Random(0)

    def value(d: int = 0):
        kind = rng.randrange(6 if d < 6 else 3)
        if kind == 0:
            return 1
        if kind in (1, 2):
            return "".join(rng.choice('[]{}"\\a') for _ in range(rng.randrange(6)))
        if kind == 3:
            return [value(d + 1) for _ in range(rng.randrange(3))]
        return {rng.choice(["[", '"{', "k"]): value(d + 1) for _ in range(rng.randrange(3))}

    def depth(v) -> int:
        inner = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if inner is None else 1 + max((depth(x) for x in inner), default=0)

    for _ in range(2000):
        v = value()
        assert header_depth(json.dumps(v).encode()) == depth(v), json.dumps(v)
    start = time.monotonic()
    assert header_depth(b'"' + b'\\"' * 500_000) == 0 and header_depth(b"[" * 1_000_000) == 1_000_000
    assert time.monotonic() - start < 5
