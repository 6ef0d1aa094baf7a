"""Host memory allocator tuning for CPU training (glibc only).

A training step on the CPU frees and re-allocates the same activation buffers (megabytes each) every step.
glibc serves such blocks with mmap, or trims them off the top of the heap when freed, so every step pays
page faults again on fresh memory (measured on this project's CPU: about 7,000 minor faults per fashion_mnist
step at batch 128; see `python -m vaelib bench` and reports/benchmarks/). Raising the mmap and trim thresholds keeps the
freed buffers in the heap for the next step. The numbers the model computes do not change.

This is process-wide and lasts until the process ends: the process keeps memory up to its peak heap
instead of handing it back to the system after every step. Set VAELIB_MALLOC_TUNING=0 to leave the
allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # bytes: blocks below 1 GiB come from the heap, and up to 1 GiB of free heap is kept
OLD_GLIBC_MAX_MMAP_THRESHOLD = 32 << 20  # bytes: older glibc refuses a larger mmap threshold

_tuned = False


ENV = "VAELIB_MALLOC_TUNING"
ON, OFF = ("", "1", "true", "on", "yes"), ("0", "false", "off", "no")


def tuning_enabled() -> bool:
    """False when the user set VAELIB_MALLOC_TUNING=0 (or 'false', 'off', 'no'); any other value than those and
    1/true/on/yes (or unset) is refused, so that a typo never silently means on."""
    value = os.environ.get(ENV, "1").strip().lower()
    if value not in ON + OFF:
        raise ValueError(f"{ENV}={os.environ[ENV]!r} is invalid: allowed 1, true, on, yes (tune, the default) or "
                         "0, false, off, no (leave the allocator alone)")
    return value in ON


def tune_cpu_allocator() -> bool:
    """Keep freed buffers in glibc's heap (mallopt); True if the allocator is tuned after the call.

    Does nothing (returns False) off glibc or when VAELIB_MALLOC_TUNING=0.
    """
    global _tuned
    enabled = tuning_enabled()  # refuses a typo in VAELIB_MALLOC_TUNING even when already tuned
    if _tuned:
        return True
    if not enabled or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, THRESHOLD) or mallopt(M_MMAP_THRESHOLD, OLD_GLIBC_MAX_MMAP_THRESHOLD)):
        return False
    _tuned = bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))  # glibc sets no upper limit on this one
    return _tuned


def allocator_tuned() -> bool:
    """Whether tune_cpu_allocator has taken effect in this process."""
    return _tuned
