"""Keep the resident size near the memory budget on glibc.

glibc raises its mmap threshold after the first large buffer is freed, so later multi-MiB part
buffers come from per-thread heaps and stay resident once freed: RSS grew to 4x the part
budget in measurements. Pinning the threshold keeps every buffer of 1 MiB or more in its own
mapping, returned to the kernel on free. Elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Final

_M_MMAP_THRESHOLD: Final = -3
_THRESHOLD_BYTES: Final = 1 << 20


@cache
def return_large_buffers_to_os() -> bool:
    """Ask glibc to mmap buffers of 1 MiB and more; True when it agreed. Idempotent."""
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    try:
        mallopt = ctypes.CDLL(library).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES))
