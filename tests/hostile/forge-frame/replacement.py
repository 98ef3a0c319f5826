"""Attack: write its own answer frame on the protocol pipe (`target.json` beside this file picks which), then exit.

"deep": a header nested 200,000 deep (json's recursion); "overflow": a shape whose product wraps int64;
"zero": a shape with a zero whose other extents overflow (numpy's 'array is too big'); "garbage": not a frame.
"""
import json
import os
import struct

MAGIC = b"RBF1"


def frame(body: bytes) -> bytes:
    return MAGIC + struct.pack("<I", len(body)) + body


def forged(kind: str) -> bytes:
    if kind == "deep":
        return frame(b'{"ok": true, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b', "arrays": []}')
    big = (1 << 31) - 1
    shape = [1 << 16] * 4 if kind == "overflow" else [0, big, big, big]  # 2**64 wraps to 0 in int64
    if kind == "garbage":
        return b"\xff" * 64
    return frame(json.dumps({"ok": True, "arrays": [["out", shape]]}).encode())


def replace(image, task):
    kind = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))["frame"]
    data = forged(kind)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            pipe = os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            flags = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        except OSError:
            continue
        if pipe and fd > 2 and flags & 3 == os.O_WRONLY:
            try:
                os.write(fd, data)
            except OSError:
                pass
    os._exit(0)
