"""The zygote: one process per harness that has imported numpy and torch, and forks each child from itself.

Importing torch takes about 3 s; forking a process that has already imported
it takes milliseconds. The zygote holds nothing but the harness's own
trusted modules (it never loads a model, data or submission code), so a
fork of it knows nothing secret. A fork has a single thread, as unshare(2)
needs for a new user namespace, and then goes on exactly like a child started
from scratch (`child.run`).

Protocol on its Unix socket (one JSON message per datagram):
- zygote → harness, once: {"ready": true};
- harness → zygote: {"spawn": spec} with SCM_RIGHTS descriptors for
  (read_fd, write_fd, sync_write, sync_read, status_fd, shared_fd, stderr), in that order;
- zygote → harness: {"pid": pid} of the fork (its own session and process group).

The zygote dies with the harness (PR_SET_PDEATHSIG), each fork dies with the
zygote, and exited forks are reaped automatically (SIGCHLD ignored).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys

FD_NAMES = ("read_fd", "write_fd", "sync_write", "sync_read", "status_fd", "shared_fd")
MAX_MESSAGE = 1 << 20
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _fork_child(spec: dict, fds: list[int], control: socket.socket) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:  # the fork: never return into the zygote's loop
        control.close()
        os.setsid()
        _die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the intermediate waits for PID 1
        *protocol, stderr = fds
        os.dup2(stderr, 1)
        os.dup2(stderr, 2)
        os.close(stderr)
        spec = {**spec, **dict(zip(FD_NAMES, protocol))}
        from .child import run

        run(spec)
    except BaseException:  # noqa: B036 - report and leave, whatever happened
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def main() -> None:
    _die_with_parent()
    control = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    import numpy  # noqa: F401 - the point of the zygote: imported once
    import torch  # noqa: F401

    from . import child, jail, protocol, worker  # noqa: F401

    try:
        control.send(json.dumps({"ready": True}).encode())
    except OSError:  # the harness already left (a user error before the first child): nothing to serve, nothing to say
        return
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, len(FD_NAMES) + 1)
        except OSError:
            return
        if not message:
            return  # the harness closed its end
        request = json.loads(message)
        if len(fds) != len(FD_NAMES) + 1:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"error": f"expected {len(FD_NAMES) + 1} descriptors, got {len(fds)}"}).encode())
            continue
        pid = _fork_child(request["spawn"], fds, control)
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    main()
