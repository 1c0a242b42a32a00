"""Measured machine limits: the denominators of "% of peak" (FMA GFLOP/s) and "% of bandwidth" (GB/s).

Both come from small C routines (csrc/measure.c) and are cached per process and thread count.
Without the C extension there is no trustworthy way to reach the FMA peak from Python, so the peak
is ``None`` (and the % columns stay empty); the bandwidth falls back to a NumPy triad, which is
slower than the C loop (it makes a temporary), and is labelled as such.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np

#: bytes moved by the triad: three arrays, large enough to leave the per-core caches far behind
TRIAD_BYTES = 192 << 20

_peak: Dict[int, Optional[float]] = {}
_triad: Dict[int, Tuple[float, str]] = {}


def _lib():
    from ..backends.c import lib

    return lib


def fma_peak(threads: int, seconds: float = 0.3, again: bool = False) -> Optional[float]:
    """float32 FMA peak in GFLOP/s at ``threads`` threads (best of 3), or None without the C extension.

    ``again`` measures once more and keeps the better figure: other processes can only lower it.
    """
    if threads not in _peak or again:
        lib = _lib()
        value = None if lib is None else float(lib.fp_measure_fma_peak(threads, seconds))
        old = _peak.get(threads)
        _peak[threads] = value if old is None or (value is not None and value > old) else old
    return _peak[threads]


def _numpy_triad(nbytes: int) -> float:
    n = nbytes // 24
    b = np.ones(n)
    c = np.full(n, 2.0)
    a = np.empty(n)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        took = time.perf_counter() - start
        best = max(best, 24 * n / took * 1e-9)
    return best


def triad(threads: int, nbytes: int = TRIAD_BYTES, again: bool = False) -> Tuple[float, str]:
    """STREAM-triad bandwidth in GB/s at ``threads`` threads and how it was measured (``again``: as above)."""
    if threads not in _triad or again:
        lib = _lib()
        if lib is not None:
            value = (float(lib.fp_measure_triad(threads, nbytes)), "C triad")
        else:
            value = (_numpy_triad(nbytes), "NumPy triad, 1 thread (no C extension)")
        if threads not in _triad or value[0] > _triad[threads][0]:
            _triad[threads] = value
    return _triad[threads]


def machine_limits(thread_counts) -> Dict[str, Dict[str, Optional[float]]]:
    """Peak GFLOP/s and triad GB/s for each thread count, as stored in a benchmark's JSON."""
    return {"fma_peak_gflops": {str(t): fma_peak(t) for t in thread_counts},
            "triad_gbs": {str(t): triad(t)[0] for t in thread_counts}}


def print_measured(thread_counts: List[int]) -> None:
    """The peak and bandwidth lines of ``fastpoint info``."""
    peaks = [(t, fma_peak(t)) for t in thread_counts]
    if all(v is None for _, v in peaks):
        print("peak:     n/a (FMA peak needs the C extension)")
    else:
        print("peak:     " + ", ".join(f"{v:.1f} GFLOP/s at {t} thread{'s' if t > 1 else ''}" for t, v in peaks)
              + " (measured float32 FMA chains)")
    bws = [(t, *triad(t)) for t in thread_counts]
    print("memory:   " + ", ".join(f"{v:.1f} GB/s at {t} thread{'s' if t > 1 else ''}" for t, v, _ in bws)
          + f" ({bws[0][2]}, {TRIAD_BYTES >> 20} MiB)")
