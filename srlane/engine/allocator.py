"""The host allocator for CPU training: freed memory kept for the next step instead of returned.

A CPU training step allocates and frees the same large activations every iteration (the stem's
output alone is 131 MB at batch 8, 800x320). glibc serves blocks above its mmap threshold (at
most 32 MB) with fresh ``mmap`` pages and unmaps them on free, so every step pays a page fault per
4 KiB page touched again: 7-8% of an R18 step on a 2-core Xeon. With mmap off and trimming
deferred, freed blocks stay in the heap and are reused.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEEP_UP_TO = 2**31 - 1  # bytes of free memory at the heap's top kept before trimming (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Ask glibc (Linux) to serve large blocks from the heap and keep freed memory; True when
    done, False where the C library is not glibc. The setting holds for the process and the
    loader workers it forks; the heap then stays at its peak size until the process ends."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
