"""Fresh memory for what a load writes once and keeps: the weights and their packed forms.

NumPy asks the kernel for transparent huge pages on every allocation of 4 MiB or more
(``madvise(MADV_HUGEPAGE)``). For weights that is the wrong trade on a VM: a huge page is 2 MiB of
guest memory that the host may never have backed, zeroed in one go, while 4 KiB pages come from the
guest's own recently freed (already backed) ones. Measured on the session's 2-vCPU VM (fresh
processes, 128 MiB written once, thread CPU time): huge pages 110-610 ms, 4 KiB pages 60-110 ms
(576 faults against 32768: the faults are not what costs, fresh host memory is). So the load's blocks
are anonymous mappings advised ``MADV_NOHUGEPAGE`` where the platform has it; elsewhere NumPy's
allocation.
"""

from __future__ import annotations

import mmap

import numpy as np

ALIGN = 64
_NO_HUGE = getattr(mmap, "MADV_NOHUGEPAGE", None)


def fresh_bytes(nbytes: int) -> np.ndarray:
    """``nbytes`` writable, 64-byte aligned bytes (page aligned where mapped), untouched until written."""
    if _NO_HUGE is not None and nbytes >= 1 << 20:
        try:
            m = mmap.mmap(-1, nbytes)
            m.madvise(_NO_HUGE)
            return np.frombuffer(m, np.uint8)  # the array keeps the mapping alive
        except (OSError, ValueError):
            pass
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]
