"""Attack: take 3 GiB under a 1 GiB limit, one way (target.json's "how"), touching every page:

- shared: anonymous MAP_SHARED mappings (RLIMIT_DATA does not count them);
- memfd: a memfd's pages mapped MAP_SHARED;
- noreserve: a private mapping with MAP_NORESERVE;
- numpy: a plain numpy array;
- memfd-write: a memfd's pages written with write(2), never mapped (no address space at all);
- raise: first lift RLIMIT_AS and RLIMIT_DATA to unlimited (if the kernel lets it), then as "shared".

If all of it is taken, replace returns ones, which the score shows.
"""
import json
import mmap
import os

import numpy as np
import torch

HOW = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))["how"]
CHUNK = 256 << 20
KEEP = []


def _touch(view):
    for offset in range(0, len(view), 4096):
        view[offset] = 1


def take():
    if HOW == "raise":
        import resource

        for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            try:
                resource.setrlimit(kind, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            except (ValueError, OSError):
                pass
    for _ in range(12):  # 12 × 256 MiB = 3 GiB
        if HOW in ("shared", "raise"):
            view = mmap.mmap(-1, CHUNK, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        elif HOW == "noreserve":
            view = mmap.mmap(-1, CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)  # MAP_NORESERVE
        elif HOW == "memfd":
            fd = os.memfd_create("hog")
            os.ftruncate(fd, CHUNK)
            view = mmap.mmap(fd, CHUNK, flags=mmap.MAP_SHARED)
        elif HOW == "memfd-write":
            fd = os.memfd_create("hog")
            block = b"\1" * (16 << 20)
            for _ in range(CHUNK // len(block)):
                os.write(fd, block)
            KEEP.append(fd)
            continue
        else:
            KEEP.append(np.ones(CHUNK // 8))
            continue
        _touch(view)
        KEEP.append(view)


def replace(image, task):
    take()
    return torch.ones(image.shape[0], *task.target_shape)
