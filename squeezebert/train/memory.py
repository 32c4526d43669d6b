"""Keep the memory a training step frees for the next step, instead of handing it back to the kernel.

glibc's malloc serves each block above its mmap threshold (128 KiB, raised on the fly up to 32 MiB) with a fresh
``mmap`` and unmaps it at ``free``. A training step allocates and frees hundreds of activation and gradient tensors of
1-125 MB, so every step pays the kernel to map and zero the same pages again: in the step profiles (docs/pretraining.md)
copies and fills of large tensors ran at about 1 GB/s. With ``mmap`` off for malloc (large blocks come from the heap)
and the heap never trimmed, freed blocks are reused as they are. Measured on the paper configuration at 32 x 128, bf16
autocast, AMX, 2 threads (``benchmarks/train_step.py --only c,e``, the same settings given to both): our step 10.3 ->
8.4 s, transformers' 10.2 -> 8.0 s. The price: the process keeps its peak memory until it exits, which a training
process reaches again every step anyway. (jemalloc or tcmalloc preloaded, as PyTorch's ``torch.backends.xeon.run_cpu``
launcher does, gives the same effect; this needs no extra library or launcher.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
NEVER_TRIM = 1 << 36  # 64 GiB: above any heap this project grows
TOP_PAD = 1 << 30  # grow the heap 1 GiB at a time: address space only, pages are touched when used

_applied = False


def keep_freed_memory() -> bool:
    """Apply the settings above to this process (once). True where they took effect (glibc); elsewhere (macOS, musl,
    Windows) nothing changes and False is returned."""
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.debug("no mallopt in this C library: freed training memory goes back to the system")
        return False
    _applied = all(mallopt(param, value) == 1 for param, value in
                   ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM), (M_TOP_PAD, TOP_PAD)))
    return _applied
