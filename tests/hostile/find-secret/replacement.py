"""Attack: find the board's held-out secret, then it could undo the held-out transforms and look labels up.

It knows the secret's format (a marker prefix, from target.json) and where the maintainer keeps it (the host path,
from target.json), not the secret. It searches its environment, every process's environment and command line it
can see, that host path, and every readable file under / below 1 MiB (not /proc, /sys, /dev), for 30 s at most.
Whatever it finds, it reports on stderr and shows in the losses (the unit pushed by 50).
"""
import json
import os
import sys
import time

import torch

CONFIG = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))
MARKER = bytes.fromhex(CONFIG["marker_hex"])  # hex, so that its own config does not hold the marker
FOUND = []
SEARCHED = 0


def look(where, data):
    if MARKER in data:
        FOUND.append(where)


for key, value in os.environ.items():
    look(f"env {key}", f"{key}={value}".encode())
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            try:
                look(f"/proc/{pid}/{name}", open(f"/proc/{pid}/{name}", "rb").read())
            except OSError:
                pass
try:
    look("the host path", open(CONFIG["path"], "rb").read())
except OSError as exc:
    print(f"find-secret: the host path: {type(exc).__name__}", file=sys.stderr)
deadline = time.monotonic() + 30
for root, dirs, files in os.walk("/") if CONFIG.get("walk", True) else ():
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    if time.monotonic() > deadline:
        break
    for name in files:
        path = os.path.join(root, name)
        try:
            if os.path.islink(path) or os.path.getsize(path) > 1 << 20:
                continue
            with open(path, "rb") as handle:
                look(path, handle.read())
            SEARCHED += 1
        except OSError:
            pass
print(f"find-secret: searched {SEARCHED} files; " + (f"FOUND in {FOUND}" if FOUND else "nothing"), file=sys.stderr)


def replace(image, task):
    out = torch.zeros(image.shape[0], *task.target_shape)
    if FOUND:
        out += 50.0
    return out
