"""Allocator settings for processes that run the model many times: keep freed memory in the
process instead of handing it back.

A sandwich step allocates and frees the same few-MB activation tensors hundreds of times (every
subnet's forward and backward: the stem's output alone is 128 × 64 × 24 × 20 floats, 15.7 MB).
glibc serves blocks that large from fresh `mmap`s, or grows and trims the heap around them, so a
process can fault in and zero those pages again on every step. In a bare forward + backward loop
of the largest subnet (batch 128, AVX-512 kind) that is 192k minor page faults per 10 iterations
and 65.6 ms an iteration; with the mmap threshold fixed at glibc's 32 MB ceiling and no trimming,
none and 43.6 ms; the search's accuracy oracle 336 → 287 ms a subnet (`benchmarks/alloc_faults.py`).
A training process suffers less (its allocation history keeps more of the heap mapped): whole
3-epoch default-recipe runs, paired, 0.93× the wall time with the setting, identical losses
(allocation does not touch the arithmetic); the step alone, each variant in a fresh process,
0.80–1.07×, median 0.955× over four pairs (README, "The allocator").

This is process-wide allocator tuning, like `torch.set_num_threads`: it is applied where a
process starts running the model's math many times (training, `eval`, the accuracy oracle), and
is a no-op away from glibc (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_NEVER = (1 << 31) - 1  # an int: the largest value mallopt takes


def keep_freed_memory() -> bool:
    """Serve allocations up to 32 MB from the heap and never return freed heap memory to the OS.

    Returns whether the settings were applied (False where the C library is not glibc). The
    price is that a training process keeps its peak heap mapped until it exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) == 1
