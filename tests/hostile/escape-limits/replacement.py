"""Attack: leave processes behind, fork without bound, open a socket to 127.0.0.1, and fill the disk.

Anything that works is reported by returning a non-zero output, which the scores show; target.json names the
loopback port a test server listens on and a marker the leftover processes carry.
"""
import json
import os
import socket
import subprocess

import torch

config = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))
ESCAPED = []

# processes that should outlive the run: a detached sleeper, and children of a double fork
try:
    subprocess.Popen(["sleep", config["marker"]], start_new_session=True)
except OSError as exc:
    print(f"escape-limits: sleep: {exc}")
forked = 0
try:
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            os.execvp("sleep", ["sleep", config["marker"]])
        forked += 1
except OSError as exc:
    print(f"escape-limits: fork stopped after {forked}: {exc.strerror}")
if forked >= 300:
    ESCAPED.append("processes")
try:
    socket.create_connection(("127.0.0.1", config["port"]), timeout=2).sendall(b"escaped")
    ESCAPED.append("network")
except OSError as exc:
    print(f"escape-limits: socket: {exc.strerror}")
written = 0
try:
    with open("/tmp/fill", "wb") as handle:
        for _ in range(2048):
            handle.write(b"\0" * (1 << 20))
            written += 1
except OSError as exc:
    print(f"escape-limits: file stopped at {written} MiB: {exc.strerror}")
if written >= 2048:
    ESCAPED.append("file size")
print(f"escape-limits: escaped {ESCAPED}")


def replace(image, task):
    return torch.full((image.shape[0], *task.target_shape), float(len(ESCAPED)))
