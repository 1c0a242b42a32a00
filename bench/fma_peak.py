"""Measured FMA peak of one core, in GFLOP/s, with the same vector intrinsics as the Numba kernels.

16 independent accumulators (more than FMA latency x FMA ports on current x86) updated in a loop
with no memory traffic.  Run: ``flock /tmp/fp-bench.lock python bench/fma_peak.py``.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from fastpoint.backends.numba_kernels.simd import lanes, vadd, vfma, vsplat, vstore


@njit(cache=True)
def _fma_loop(a, steps):
    x = vsplat(a, 1.0)
    m = vsplat(a, 0.9999999)
    c0 = vsplat(a, 0.0)
    c1, c2, c3, c4, c5, c6, c7 = c0, c0, c0, c0, c0, c0, c0
    c8, c9, c10, c11, c12, c13, c14, c15 = c0, c0, c0, c0, c0, c0, c0, c0
    for _ in range(steps):
        c0 = vfma(c0, m, x)
        c1 = vfma(c1, m, x)
        c2 = vfma(c2, m, x)
        c3 = vfma(c3, m, x)
        c4 = vfma(c4, m, x)
        c5 = vfma(c5, m, x)
        c6 = vfma(c6, m, x)
        c7 = vfma(c7, m, x)
        c8 = vfma(c8, m, x)
        c9 = vfma(c9, m, x)
        c10 = vfma(c10, m, x)
        c11 = vfma(c11, m, x)
        c12 = vfma(c12, m, x)
        c13 = vfma(c13, m, x)
        c14 = vfma(c14, m, x)
        c15 = vfma(c15, m, x)
    s = vadd(vadd(vadd(c0, c1), vadd(c2, c3)), vadd(vadd(c4, c5), vadd(c6, c7)))
    s = vadd(s, vadd(vadd(vadd(c8, c9), vadd(c10, c11)), vadd(vadd(c12, c13), vadd(c14, c15))))
    vstore(a, 0, s)
    return 16 * 2 * lanes(a) * steps


def fma_peak(dtype=np.float32, seconds: float = 0.3, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of about ``seconds`` each, in GFLOP/s (one thread)."""
    a = np.zeros(64, dtype)
    _fma_loop(a, 10)
    steps = 1_000_000
    start = time.perf_counter()
    _fma_loop(a, steps)
    steps = max(1000, int(steps * seconds / (time.perf_counter() - start)))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        flops = _fma_loop(a, steps)
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


if __name__ == "__main__":
    for dt in (np.float32, np.float64):
        print(f"{np.dtype(dt).name}: {fma_peak(dt):.1f} GFLOP/s per core")
