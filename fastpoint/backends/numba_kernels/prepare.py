"""The padded, phase-split input copy described in :mod:`.geometry`.

A grid row of a phase plane is three runs: zeros (left padding), input elements ``x[iy, j*sw + px - pl]``
(a contiguous copy when the stride is 1, so it vectorizes), zeros (right padding and junk columns).
The run limits are computed once per row, so the copy loop has no branch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cacheload import cache_kernels
from .pipeline import SimplifyingCompiler
from .simd import lanes, veven, vload, vload_m, vmask, vstore, vstore_lanes, vzero


@njit(inline="always")
def copy_run(src, s, dst, d, n):
    """dst[d:d+n] = src[s:s+n] with vector loads/stores (plain indexing checks for negative indices
    on every element, which keeps LLVM from vectorizing the copy)."""
    nl = lanes(dst)
    j = 0
    while j + nl <= n:
        vstore(dst, d + j, vload(src, s + j))
        j += nl
    if j < n:
        vstore_lanes(dst, d + j, vload_m(src, s + j, vmask(src, n - j)), 0, n - j)


@njit(inline="always")
def copy_even_run(src, s, avail, dst, d, n):
    """dst[d:d+n] = src[s:s+2n:2] (stride 2); ``avail`` elements of src from s on belong to the row.

    Two vector loads and one shuffle per vector of output, instead of one scalar load per element.
    """
    nl = lanes(dst)
    for j in range(0, n, nl):
        rem = avail - 2 * j
        v = veven(vload_m(src, s + 2 * j, vmask(src, rem)), vload_m(src, s + 2 * j + nl, vmask(src, rem - nl)))
        vstore_lanes(dst, d + j, v, 0, min(nl, n - j))


@njit(inline="always")
def zero_run(dst, d, n):
    """dst[d:d+n] = 0, a vector at a time."""
    nl = lanes(dst)
    z = vzero(dst)
    j = 0
    while j + nl <= n:
        vstore(dst, d + j, z)
        j += nl
    if j < n:
        vstore_lanes(dst, d + j, z, 0, n - j)


@njit(inline="always")
def _col_range(px, pl, sw, w, wq):
    """[lo, hi): grid columns j whose input column j*sw + px - pl lies in [0, w)."""
    lo = 0
    if pl > px:
        lo = (pl - px + sw - 1) // sw
    last = w - 1 + pl - px  # largest j*sw allowed
    hi = 0 if last < 0 else last // sw + 1
    hi = min(hi, wq)
    return min(lo, hi), hi


@njit(inline="always")
def fill_plane(x, src, h, w, xp, dst, py, px, hq1, wq, sh, sw, pt, pl):
    """Write one phase plane (hq1 x wq) at xp[dst:] from the (h x w) image at flat x[src:]."""
    lo, hi = _col_range(px, pl, sw, w, wq)
    for r in range(hq1):
        row = dst + r * wq
        iy = r * sh + py - pt
        if iy < 0 or iy >= h:
            zero_run(xp, row, wq)
            continue
        s = src + iy * w + px - pl
        zero_run(xp, row, lo)
        if sw == 1:
            copy_run(x, s + lo, xp, row + lo, hi - lo)
        elif sw == 2:
            copy_even_run(x, s + 2 * lo, w - (2 * lo + px - pl), xp, row + lo, hi - lo)
        else:
            # unsigned indices: no negative-index wraparound test per element
            for j in range(lo, hi):
                xp[np.uint64(row + j)] = x[np.uint64(s + j * sw)]
        zero_run(xp, row + hi, wq - hi)


# The copies run on one thread: they move each input element once (about 1 % of a dense layer's time),
# and a parallel region of their own would add a second thread wake-up per call, which costs
# milliseconds when the machine is busy.
@njit(pipeline_class=SimplifyingCompiler)
def prepare_nchw(x, xp, nc, h, w, py, px, hq1, wq, sh, sw, pt, pl):
    """xp[n, c, phase, r, j] = x[n, c, r*sh + py - pt, j*sw + px - pl], or 0 outside x (x, xp flat)."""
    nph = py.shape[0]
    for job in range(nc * nph):
        p = job % nph
        plane = job // nph
        fill_plane(x, plane * h * w, h, w, xp, job * hq1 * wq, py[p], px[p], hq1, wq, sh, sw, pt, pl)


@njit(pipeline_class=SimplifyingCompiler)
def prepare_nhwc(x, xp, n_, h, w, c_, py, px, hq1, wq, sh, sw, pt, pl):
    """xp[n, phase, r, j, :] = x[n, r*sh + py - pt, j*sw + px - pl, :], or 0 outside x (x, xp flat)."""
    nph = py.shape[0]
    for job in range(n_ * nph * hq1):
        r = job % hq1
        p = (job // hq1) % nph
        n = job // (hq1 * nph)
        row = job * wq * c_
        iy = r * sh + py[p] - pt
        if iy < 0 or iy >= h:
            zero_run(xp, row, wq * c_)
            continue
        lo, hi = _col_range(px[p], pl, sw, w, wq)
        src = ((n * h + iy) * w + px[p] - pl) * c_
        zero_run(xp, row, lo * c_)
        if sw == 1:  # the row's valid pixels are one contiguous run of channels
            copy_run(x, src + lo * c_, xp, row + lo * c_, (hi - lo) * c_)
        else:
            for j in range(lo, hi):
                copy_run(x, src + j * sw * c_, xp, row + j * c_, c_)
        zero_run(xp, row + hi * c_, (wq - hi) * c_)


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
