"""Depthwise convolution (one input and one output channel per group): a stencil per channel.

Memory-bound by nature (about 2 flop per byte moved at 3x3), so the tiles aim at streaming: each
input vector loaded is used by one FMA per tap and the output is written once.

* NCHW: vectors along grid positions of one channel plane, 4 vectors per tile (4 independent FMA
  chains), the tap weight broadcast.
* NHWC: vectors along channels, 4 pixels per tile, the tap's weight vector shared by the 4 pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cacheload import cache_kernels
from .fpenv import flush_enter, flush_leave
from .pipeline import SimplifyingCompiler
from .prepare import fill_plane
from .simd import lanes, vbroadcast, vfma, vload, vload_m, vmask, vsplat, vstore_lanes
from .store import finish, store_positions
from .workers import next_task, start

NV = 4  # vectors (NCHW) or pixels (NHWC) per tile


@njit(inline="always")
def _tile(xp, q0, left, tapoff, wp, wo, b):
    """4 vectors of outputs at grid positions q0, q0+1, ... (``left`` of them real, the rest masked)."""
    nl = lanes(xp)
    m0 = vmask(xp, left)
    m1 = vmask(xp, left - nl)
    m2 = vmask(xp, left - 2 * nl)
    m3 = vmask(xp, left - 3 * nl)
    a0 = vsplat(xp, b)
    a1, a2, a3 = a0, a0, a0
    for t in range(tapoff.shape[0]):
        o = q0 + tapoff[t]
        wv = vbroadcast(wp, wo + t)
        a0 = vfma(wv, vload_m(xp, o, m0), a0)
        a1 = vfma(wv, vload_m(xp, o + nl, m1), a1)
        a2 = vfma(wv, vload_m(xp, o + 2 * nl, m2), a2)
        a3 = vfma(wv, vload_m(xp, o + 3 * nl, m3), a3)
    return a0, a1, a2, a3


@njit(nogil=True, pipeline_class=SimplifyingCompiler)
def dw_nchw(x, h, w, py, px, hq1, wq, sh, sw, pt, pl, tapoff, wp, bias, y, nc, c_, oh, ow, relu, workers, counter):
    """y (flat N x C x oh x ow) from x (flat N x C x h x w); wp is [c][tap].

    One task per channel plane: the padded, phase-split plane is built in a task-local buffer that
    stays in L2, so the input crosses memory once (a shared prepared copy would add a write and a read).
    """
    nl = lanes(x)
    nr = NV * nl
    ntaps = tapoff.shape[0]
    nph = py.shape[0]
    plane = nph * hq1 * wq
    qtotal = oh * wq
    # planes are handed out in blocks of up to 16 (one atomic per block, not per plane)
    pb = max(1, min(16, nc // (8 * workers)))
    # each worker (see workers.py) takes the next block of planes until none is left
    mxcsr_old = flush_enter()  # this thread's FP mode, put back below (see fpenv)
    xp = np.empty(plane, x.dtype)
    first, me = start(counter, nc, pb)
    while first < nc:
        for task in range(first, min(nc, first + pb)):
            c = task % c_
            for p in range(nph):
                fill_plane(x, task * h * w, h, w, xp, p * hq1 * wq, py[p], px[p], hq1, wq, sh, sw, pt, pl)
            ybase = task * oh * ow
            b = bias[c]
            wo = c * ntaps
            if ow >= 3 * nl:
                # one output row at a time: stores are contiguous, only the row's last chunk is masked
                for oy in range(oh):
                    for ox0 in range(0, ow, nr):
                        left = ow - ox0
                        a0, a1, a2, a3 = _tile(xp, oy * wq + ox0, left, tapoff, wp, wo, b)
                        yo = ybase + oy * ow + ox0
                        vstore_lanes(y, yo, finish(a0, relu), 0, left)
                        vstore_lanes(y, yo + nl, finish(a1, relu), 0, left - nl)
                        vstore_lanes(y, yo + 2 * nl, finish(a2, relu), 0, left - 2 * nl)
                        vstore_lanes(y, yo + 3 * nl, finish(a3, relu), 0, left - 3 * nl)
            else:
                # narrow maps (7x7 to 28x28): a tile spans several grid rows, junk columns included,
                # instead of wasting most lanes of a per-row tile
                for q0 in range(0, qtotal, nr):
                    a0, a1, a2, a3 = _tile(xp, q0, qtotal - q0, tapoff, wp, wo, b)
                    store_positions(y, ybase, finish(a0, relu), q0, wq, ow, qtotal)
                    store_positions(y, ybase, finish(a1, relu), q0 + nl, wq, ow, qtotal)
                    store_positions(y, ybase, finish(a2, relu), q0 + 2 * nl, wq, ow, qtotal)
                    store_positions(y, ybase, finish(a3, relu), q0 + 3 * nl, wq, ow, qtotal)
        first = next_task(counter, me, min(nc, first + pb) - first, pb)
    flush_leave(mxcsr_old)


@njit(inline="always")
def _store_pixel(y, q, v, n, ybase, wq, ow, qtotal, c_, relu):
    if q >= qtotal:
        return
    oy = q // wq
    ox = q - oy * wq
    if ox < ow:
        vstore_lanes(y, ybase + (oy * ow + ox) * c_, finish(v, relu), 0, n)


@njit(nogil=True, pipeline_class=SimplifyingCompiler)
def dw_nhwc(xp, plane, tapoff, wq, qtotal, wp, bias, y, n_, c_, oh, ow, relu, q_block, counter):
    """y (flat N x oh x ow x C); xp is the prepared input (flat N x plane x C); wp is [tap][C padded]."""
    nl = lanes(xp)
    ntaps = tapoff.shape[0]
    cpad = wp.shape[0] // ntaps
    q_tiles = (qtotal + NV - 1) // NV
    q_blocks = (q_tiles + q_block - 1) // q_block
    last = qtotal - 1
    ntasks = n_ * q_blocks
    # each worker (see workers.py) takes the next task until none is left
    mxcsr_old = flush_enter()  # this thread's FP mode, put back below (see fpenv)
    task, me = start(counter, ntasks, 1)
    while task < ntasks:
        qb = task % q_blocks
        n = task // q_blocks
        xbase = n * plane * c_
        ybase = n * oh * ow * c_
        for qt in range(qb * q_block, min(q_tiles, (qb + 1) * q_block)):
            q0 = qt * NV
            r0 = xbase + min(q0, last) * c_
            r1 = xbase + min(q0 + 1, last) * c_
            r2 = xbase + min(q0 + 2, last) * c_
            r3 = xbase + min(q0 + 3, last) * c_
            for cv in range(0, c_, nl):
                n = min(nl, c_ - cv)
                m = vmask(xp, n)  # the last channel vector may end past the input
                a0 = vload(bias, cv)
                a1, a2, a3 = a0, a0, a0
                for t in range(ntaps):
                    d = tapoff[t] * c_ + cv
                    wv = vload(wp, t * cpad + cv)
                    a0 = vfma(wv, vload_m(xp, r0 + d, m), a0)
                    a1 = vfma(wv, vload_m(xp, r1 + d, m), a1)
                    a2 = vfma(wv, vload_m(xp, r2 + d, m), a2)
                    a3 = vfma(wv, vload_m(xp, r3 + d, m), a3)
                _store_pixel(y, q0, a0, n, ybase + cv, wq, ow, qtotal, c_, relu)
                _store_pixel(y, q0 + 1, a1, n, ybase + cv, wq, ow, qtotal, c_, relu)
                _store_pixel(y, q0 + 2, a2, n, ybase + cv, wq, ow, qtotal, c_, relu)
                _store_pixel(y, q0 + 3, a3, n, ybase + cv, wq, ow, qtotal, c_, relu)
        task = next_task(counter, me, 1, 1)
    flush_leave(mxcsr_old)


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
