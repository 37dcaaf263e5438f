"""Process-wide CPU settings that editing's speed depends on.

Both change how the whole process computes or allocates, so the owners of a process set them:
the :class:`~editgan.editor.Editor` (server, CLI, benchmarks), training, and the large
benchmark's child processes.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

RETAIN_ENV = "EDITGAN_RETAIN_FREED_MEMORY"  # "0": leave glibc's allocator as it is
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def flush_subnormals() -> None:
    """Flush subnormal floats to zero (process-wide, CPU). Adam's moments and the gradients through a
    segmenter trained on standardized maps go subnormal, and each operation on one is far slower on
    x86: measured, 500 segmenter training steps 28 s → 300 s, a 30-step demo edit 5 s → 55 s."""
    torch.set_flush_denormal(True)


def retain_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    glibc serves every block above its mmap threshold (at most 32 MiB) with freshly mapped pages and
    unmaps them when freed, so each step of a large edit maps, faults in and unmaps its activations
    again (zero-fills and first touches led the profile of a 512² step).
    Measured the same day (`editgan bench`, large part, 2 threads): a config-f edit step at 256²
    4.2 → 1.9 s, 512² 6.3 → 3.1 s, 1024² 11.1 → 4.5 s. The price: the process keeps the memory of
    its largest step until it exits (peak RSS 512² 2.7 → 3.9 GiB, 1024² 4.7 → 6.3 GiB; over five
    512² edits of other sizes in one process it stayed at the largest one's).

    Returns whether it applied: not off glibc (musl's mallopt does nothing), nor with
    ``EDITGAN_RETAIN_FREED_MEMORY=0``.
    """
    if os.environ.get(RETAIN_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # no mmap-backed blocks (all from the heap), and never trim the heap's free top
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
