"""Attack: fit by least squares, return {}, and hand the weights to replace through one channel outside the
protocol (target.json's "channel"): POSIX record locks (fcntl), open-file-description locks (ofd) or flock locks
on files both children see, a file in /tmp or /dev/shm, an abstract Unix socket, a key in the session or user
keyring.

fit keeps its side open (a detached grandchild holds it) and waits a moment before it returns; replace starts
a reader at import and polls. A closed channel leaves replace with nothing: zeros.
"""
import ctypes
import fcntl
import json
import os
import socket
import struct
import sys
import threading
import time

import numpy as np
import torch

CHANNEL = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))["channel"]
SHARED = sys.executable  # a file every child sees, read-only
BASE = 1 << 30  # lock offsets: BASE + bit
F_OFD_GETLK, F_OFD_SETLK = 36, 37
GETLK, SETLK = (F_OFD_GETLK, F_OFD_SETLK) if CHANNEL == "ofd" else (fcntl.F_GETLK, fcntl.F_SETLK)
LIBRARY = os.path.dirname(os.__file__)
FLOCKED = sorted(os.path.join(LIBRARY, n) for n in os.listdir(LIBRARY) if n.endswith(".py"))[:64]  # one bit each
FOUND = {}
libc = ctypes.CDLL(None, use_errno=True)


def _bits(data):
    return np.unpackbits(np.frombuffer(data, np.uint8))


def _lock_query(fd, offset):
    query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
    return struct.unpack("hhqqi4x", fcntl.fcntl(fd, GETLK, query))[0] != fcntl.F_UNLCK


def _key_id(name):
    for ring in (-3, -4):  # session, user keyring
        kid = libc.syscall(249, b"user", name.encode(), None, ctypes.c_int(ring))  # request_key
        if kid > 0:
            return kid
    return -1


def send(data):
    """Open the channel with `data` (length-prefixed) in a grandchild that lives on after fit returns."""
    payload = struct.pack("<I", len(data)) + data
    if CHANNEL in ("tmp", "shm"):
        with open({"tmp": "/tmp/smuggled", "shm": "/dev/shm/smuggled"}[CHANNEL], "wb") as handle:
            handle.write(payload)
        return
    if CHANNEL == "keyring":
        for ring in (-3, -4):  # KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING
            libc.syscall(248, b"user", b"smuggled", payload, len(payload), ctypes.c_int(ring))  # add_key
        return
    if os.fork() == 0:  # the holder: detached, no parent-death signal
        os.setsid()
        if os.fork():
            os._exit(0)
        if CHANNEL in ("fcntl", "ofd"):
            fd = os.open(SHARED, os.O_RDONLY)
            for i, bit in enumerate(_bits(payload)):
                if bit:
                    fcntl.fcntl(fd, SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, BASE + i, 1, 0))
        elif CHANNEL == "flock":  # too few files for the weights: a marker, 0xA5A5... over 64 files
            held = []
            for i, bit in enumerate(_bits(b"\xa5" * 8)):
                if bit:
                    held.append(os.open(FLOCKED[i], os.O_RDONLY))
                    fcntl.flock(held[-1], fcntl.LOCK_SH)
        elif CHANNEL == "socket":
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(b"\0replacebench-smuggled")
            server.listen(4)
            while True:
                server.accept()[0].sendall(payload)
        time.sleep(3600)
        os._exit(0)
    os.wait()


def receive():
    """The payload, or None."""
    if CHANNEL in ("tmp", "shm"):
        try:
            raw = open({"tmp": "/tmp/smuggled", "shm": "/dev/shm/smuggled"}[CHANNEL], "rb").read()
        except OSError:
            return None
    elif CHANNEL == "keyring":
        kid = _key_id("smuggled")
        if kid < 0:
            return None
        buffer = ctypes.create_string_buffer(1 << 16)
        size = libc.syscall(250, 11, kid, buffer, len(buffer))  # KEYCTL_READ
        raw = buffer.raw[:size] if size > 0 else b""
    elif CHANNEL == "socket":
        try:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(b"\0replacebench-smuggled")
            raw = b"".join(iter(lambda: client.recv(1 << 16), b""))
        except OSError:
            return None
    elif CHANNEL == "flock":
        bits = []
        for path in FLOCKED:
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                bits.append(0)
            except OSError:
                bits.append(1)
            finally:
                os.close(fd)
        if np.packbits(np.array(bits, np.uint8)).tobytes() != b"\xa5" * 8:
            return None
        return np.ones(65, np.float32).tobytes()  # the marker arrived: any non-zero output shows it
    else:  # fcntl, ofd
        fd = os.open(SHARED, os.O_RDONLY)
        head = np.array([_lock_query(fd, BASE + i) for i in range(32)], np.uint8)
        size = struct.unpack("<I", np.packbits(head).tobytes())[0]
        if size == 0 or size > 1 << 16:
            return None
        bits = np.array([_lock_query(fd, BASE + 32 + i) for i in range(8 * size)], np.uint8)
        raw = struct.pack("<I", size) + np.packbits(bits).tobytes()
    if len(raw) < 4 or struct.unpack("<I", raw[:4])[0] != len(raw) - 4:
        return None
    return raw[4:]


def _poll():  # 3 s: a holder that outlives fit (detached) is there from the start
    for _ in range(30):
        data = receive()
        if data:
            FOUND["w"] = torch.from_numpy(np.frombuffer(data, np.float32).copy())
            return
        time.sleep(0.1)


READER = threading.Thread(target=_poll, daemon=True)
READER.start()


def _design(image):
    return torch.cat([image.reshape(image.shape[0], -1).double(), torch.ones(image.shape[0], 1, dtype=torch.float64)], 1)


def fit(image, target):
    w = torch.linalg.lstsq(_design(image), target.double()).solution.float()
    send(w.numpy().tobytes())
    time.sleep(1)  # a reader running at the same time has its chance
    return {}


def replace(image, task):
    READER.join(timeout=10)
    if "w" in FOUND:
        print(f"fit-smuggle: received {FOUND['w'].numel()} weights through {CHANNEL}")
        w = FOUND["w"].double().reshape(-1, *task.target_shape)
        return torch.relu(_design(image) @ w).float()
    return torch.zeros(image.shape[0], *task.target_shape)
