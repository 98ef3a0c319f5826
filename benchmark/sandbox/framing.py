"""The start of every protocol frame, with nothing but the standard library (see `protocol`).

The child writes a frame with this before it may import anything that starts
threads (numpy does), to report a jail that failed.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAGIC = b"RBF1"


def frame_header(header: dict[str, Any]) -> bytes:
    """MAGIC | uint32 little-endian length | the JSON header (which lists the arrays that follow)."""
    body = json.dumps({"arrays": [], **header}).encode()
    return MAGIC + struct.pack("<I", len(body)) + body
