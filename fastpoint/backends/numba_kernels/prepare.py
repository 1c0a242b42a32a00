"""The padded, phase-split input copy described in :mod:`.geometry` (parallel, one grid row per step)."""

from __future__ import annotations

from numba import njit, prange


@njit(cache=True, parallel=True)
def prepare_nchw(x, xp, py, px, hq1, wq, sh, sw, pt, pl):
    """xp[n, c, phase, r, j] = x[n, c, r*sh + py - pt, j*sw + px - pl], or 0 outside x."""
    n_, c_, h, w = x.shape
    nph = py.shape[0]
    rows = n_ * c_ * nph * hq1
    for job in prange(rows):
        r = job % hq1
        plane = job // hq1  # (n, c, phase) flattened
        p = plane % nph
        nc = plane // nph
        n = nc // c_
        c = nc % c_
        dst = job * wq
        iy = r * sh + py[p] - pt
        if iy < 0 or iy >= h:
            for j in range(wq):
                xp[dst + j] = 0
            continue
        for j in range(wq):
            ix = j * sw + px[p] - pl
            xp[dst + j] = x[n, c, iy, ix] if 0 <= ix < w else 0


@njit(cache=True, parallel=True)
def prepare_nhwc(x, xp, py, px, hq1, wq, sh, sw, pt, pl):
    """xp[n, phase, r, j, :] = x[n, r*sh + py - pt, j*sw + px - pl, :], or 0 outside x."""
    n_, h, w, c_ = x.shape
    nph = py.shape[0]
    rows = n_ * nph * hq1
    for job in prange(rows):
        r = job % hq1
        p = (job // hq1) % nph
        n = job // (hq1 * nph)
        iy = r * sh + py[p] - pt
        for j in range(wq):
            dst = (job * wq + j) * c_
            ix = j * sw + px[p] - pl
            if iy < 0 or iy >= h or ix < 0 or ix >= w:
                for c in range(c_):
                    xp[dst + c] = 0
            else:
                for c in range(c_):
                    xp[dst + c] = x[n, iy, ix, c]
