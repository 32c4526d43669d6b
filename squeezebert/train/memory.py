"""Keep the memory a training step frees for the next step, instead of handing it back to the kernel.

glibc's malloc serves each block above its mmap threshold (128 KiB, raised on the fly up to 32 MiB) with a fresh
``mmap`` and unmaps it at ``free``. A training step allocates and frees hundreds of activation and gradient tensors
of 1-125 MB, so every step pays the kernel to map and zero the same pages again: in the step profiles
(docs/pretraining.md) copies and fills of large tensors ran at about 1 GB/s. With ``mmap`` off for malloc (large
blocks come from the heap) and the heap left untrimmed (unless 2 GiB sit free at its top), freed blocks are reused as
they are: a training step of the paper configuration at 32 x 128 on an AMX Xeon ran 1.2-1.3x faster
(``benchmarks/train_step.py`` against ``--system-malloc``; figures in docs/pretraining.md). The price: the process
keeps its peak memory until it exits, which a training process reaches again every step anyway. (jemalloc or
tcmalloc preloaded, as PyTorch's ``torch.backends.xeon.run_cpu`` launcher does, gives the same effect; this needs no
extra library or launcher.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc's malloc.h); values are C ints
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
NEVER_TRIM = 2**31 - 1  # the largest int: the heap is trimmed only when 2 GiB sit free at its top
TOP_PAD = 1 << 30  # grow the heap 1 GiB at a time: address space only, pages are touched when used
OPT_OUT = "SQUEEZEBERT_SYSTEM_MALLOC"  # set to 1 to leave malloc as it is (e.g. a Trainer inside a long-lived server)

_applied: bool | None = None  # None: not tried yet in this process


def keep_freed_memory() -> bool:
    """Apply the settings above to this process (tried once: every training run calls it). True where they took
    effect (glibc); False where the C library has no mallopt (macOS, musl, Windows) or with
    ``SQUEEZEBERT_SYSTEM_MALLOC=1``."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.debug("no mallopt in this C library: freed training memory goes back to the system")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    results = [mallopt(param, value) for param, value in
               ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM), (M_TOP_PAD, TOP_PAD))]
    _applied = all(r == 1 for r in results)  # glibc returns 1 on success; musl's stub returns 0
    return _applied
