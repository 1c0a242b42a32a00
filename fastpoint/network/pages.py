"""Fresh memory for what a load writes once and keeps: the weights and their packed forms.

NumPy asks the kernel for transparent huge pages on every allocation of 4 MiB or more
(``madvise(MADV_HUGEPAGE)``). For weights written once at load that is a lottery on a VM: a huge page
is 2 MiB of guest memory that the host may not have backed yet, while 4 KiB pages mostly come from
the guest's recently freed (backed) ones. Faulting 4 KiB pages one by one costs a trap each, so a
block whose size is known is mapped with ``MAP_POPULATE``: every page in one call. Measured on the
session's 2-vCPU VM, each variant in a fresh process, alternating, 128 MiB written once, thread CPU
time over 8 runs: huge pages 7-747 ms (median ~120), 4 KiB pages faulted one by one 75-96 ms,
populated 43-53 ms. So blocks are anonymous mappings advised ``MADV_NOHUGEPAGE``, populated when
asked; where the platform has neither (not Linux), NumPy's allocation.
"""

from __future__ import annotations

import mmap

import numpy as np

from ..backends.c import _aligned_bytes

_NO_HUGE = getattr(mmap, "MADV_NOHUGEPAGE", None)
_POPULATE = getattr(mmap, "MAP_POPULATE", None)
_MAPPED = 1 << 20  # smaller blocks: NumPy's (the heap; no huge pages below 4 MiB anyway)


def fresh_bytes(nbytes: int, populate: bool = False) -> np.ndarray:
    """``nbytes`` writable, 64-byte aligned bytes (page aligned where mapped); ``populate``: with every
    page already faulted in (for memory that will all be written)."""
    if _NO_HUGE is not None and nbytes >= _MAPPED:
        try:
            # private: mmap's default, MAP_SHARED, is shared memory (shmem pages, which fault in slower:
            # 9-88 ms against 6-7 per 13 MiB written, fresh processes on the session's VM) and stays
            # shared with a child forked after the load, which would then write into our packed weights
            if populate and _POPULATE is not None:  # 4 KiB pages: THP is "madvise" or "never" by default
                m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | _POPULATE)
            else:
                m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
                m.madvise(_NO_HUGE)
            return np.frombuffer(m, np.uint8)  # the array keeps the mapping alive
        except (OSError, ValueError):
            pass
    return _aligned_bytes(nbytes)
