"""Dense and grouped convolution, NHWC: vectors along output channels.

``Y[q, co] = bias[co] + sum_{t, ci} Xp[q + tapoff[t], ci] * W[t, ci, co]`` over grid positions q
(see :mod:`.geometry`); a 1x1 convolution is one tap and reads x itself.

Register tile: MR = 6 output pixels x 2 vectors of consecutive output channels.  Per step of K it
broadcasts one input value per pixel (channels are contiguous, so each pixel's row streams) and
loads two weight vectors: 8 loads for 12 FMAs.  Weights are packed per tile as
``[co_tile][tap][ci][NR]`` with zero columns padding the last tile, so weight loads are never masked;
only the stores of the last channel tile are.

A one-shot call (``wsrc``: the caller's weights, flat ``(Cout, Cin/groups, KH, KW)``) packs each task's
block of channel tiles into a buffer of the worker's just before using it, when the block differs from
the worker's last one (weight_pack.py): the weights are read once, and the packed values are the
prepacked layer's, so the results are too, bit for bit.
"""

from __future__ import annotations

from numba import njit

from . import tasks
from .cacheload import cache_kernels
from .fpenv import flush_enter, flush_leave
from .pipeline import SimplifyingCompiler
from .simd import lanes, vbroadcast, vfma, vload, vstore_lanes
from .store import finish
from .weight_pack import pack_tiles
from .workers import next_task, start

MR = 6


@njit(inline="always")
def _tile(xp, r0, r1, r2, r3, r4, r5, c, tapoff, cin_g, wp, w, bp, b):
    """One MR x 2-vector tile; ``r*`` are the flat offsets of the tile's pixels (tap 0, channel 0)."""
    nl = lanes(xp)
    c00 = vload(bp, b)
    c01 = vload(bp, b + nl)
    c10, c20, c30, c40, c50 = c00, c00, c00, c00, c00
    c11, c21, c31, c41, c51 = c01, c01, c01, c01, c01
    for t in range(tapoff.shape[0]):
        d = tapoff[t] * c
        for ci in range(cin_g):
            b0 = vload(wp, w)
            b1 = vload(wp, w + nl)
            a = vbroadcast(xp, r0 + d + ci)
            c00 = vfma(a, b0, c00)
            c01 = vfma(a, b1, c01)
            a = vbroadcast(xp, r1 + d + ci)
            c10 = vfma(a, b0, c10)
            c11 = vfma(a, b1, c11)
            a = vbroadcast(xp, r2 + d + ci)
            c20 = vfma(a, b0, c20)
            c21 = vfma(a, b1, c21)
            a = vbroadcast(xp, r3 + d + ci)
            c30 = vfma(a, b0, c30)
            c31 = vfma(a, b1, c31)
            a = vbroadcast(xp, r4 + d + ci)
            c40 = vfma(a, b0, c40)
            c41 = vfma(a, b1, c41)
            a = vbroadcast(xp, r5 + d + ci)
            c50 = vfma(a, b0, c50)
            c51 = vfma(a, b1, c51)
            w += 2 * nl
    return c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51


@njit(inline="always")
def _pixel_offset(q, wq, ow, qtotal, cout):
    """Offset of grid position q's output pixel in y, or -1 for a junk position (not stored)."""
    if q >= qtotal:
        return -1
    oy = q // wq
    ox = q - oy * wq
    return -1 if ox >= ow else (oy * ow + ox) * cout


@njit(inline="always")
def _store_pixel(y, po, v0, v1, n0, n1, ybase, relu):
    """Write the channels [0, n0 + n1) of the pixel at offset po (skipped when po < 0)."""
    if po < 0:
        return
    o = ybase + po
    vstore_lanes(y, o, finish(v0, relu), 0, n0)
    if n1 > 0:
        vstore_lanes(y, o + lanes(y), finish(v1, relu), 0, n1)


@njit(nogil=True, pipeline_class=SimplifyingCompiler)
def conv_nhwc(xp, plane, tapoff, wq, qtotal, wp, bp, y, n_, cin, cout, groups, oh, ow, relu,
              co_block, q_block, wsrc, idx, wbufs, counter):
    """y (flat N x oh x ow x Cout) from the prepared input xp (flat N x plane x Cin).

    Tasks are (image, group, block of ``co_block`` channel tiles, block of ``q_block`` pixel tiles);
    within a task each pixel tile (6 input rows) stays in L1 while the block's weight panels, kept
    in L2, stream past it.  With a non-empty ``wsrc`` (a one-shot call; ``wp`` unused) each task's weight
    block is packed from ``wsrc`` (steps in ``idx`` order) into the worker's row of ``wbufs`` (kept by the
    launcher: a row of ``co_block`` panels per worker).
    """
    nl = lanes(xp)
    nr = 2 * nl
    cin_g = cin // groups
    cout_g = cout // groups
    co_tiles = (cout_g + nr - 1) // nr
    q_tiles = (qtotal + MR - 1) // MR
    ntaps = tapoff.shape[0]
    panel = ntaps * cin_g * nr
    last = qtotal - 1
    ntasks, co_blocks, q_blocks = tasks.count(n_, groups, co_tiles, co_block, q_tiles, q_block)
    fused = wsrc.shape[0] > 0
    have = -1  # the (group, channel block) in wbuf
    # each worker (see workers.py) takes the next task until none is left
    mxcsr_old = flush_enter()  # this thread's FP mode, put back below (see fpenv)
    task, me = start(counter, ntasks, 1)
    wbuf = wbufs[me if fused else 0]
    while task < ntasks:
        n, g, cb, qb = tasks.split(task, groups, co_blocks, q_blocks)
        if fused and g * co_blocks + cb != have:  # consecutive tasks mostly share it (tasks.py)
            have = g * co_blocks + cb
            pack_tiles(wsrc, g, cb * co_block, min(co_tiles, (cb + 1) * co_block), cout_g, ntaps * cin_g, nr, idx,
                       wbuf)
        xbase = n * plane * cin + g * cin_g
        ybase = n * oh * ow * cout + g * cout_g
        for qt in range(qb * q_block, min(q_tiles, (qb + 1) * q_block)):
            q0 = qt * MR
            # pixels past the end read the last real one (in bounds) and are not stored
            r0 = xbase + min(q0, last) * cin
            r1 = xbase + min(q0 + 1, last) * cin
            r2 = xbase + min(q0 + 2, last) * cin
            r3 = xbase + min(q0 + 3, last) * cin
            r4 = xbase + min(q0 + 4, last) * cin
            r5 = xbase + min(q0 + 5, last) * cin
            p0 = _pixel_offset(q0, wq, ow, qtotal, cout)
            p1 = _pixel_offset(q0 + 1, wq, ow, qtotal, cout)
            p2 = _pixel_offset(q0 + 2, wq, ow, qtotal, cout)
            p3 = _pixel_offset(q0 + 3, wq, ow, qtotal, cout)
            p4 = _pixel_offset(q0 + 4, wq, ow, qtotal, cout)
            p5 = _pixel_offset(q0 + 5, wq, ow, qtotal, cout)
            for ct in range(cb * co_block, min(co_tiles, (cb + 1) * co_block)):
                if fused:
                    src, w = wbuf, (ct - cb * co_block) * panel
                else:
                    src, w = wp, (g * co_tiles + ct) * panel
                c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51 = _tile(
                    xp, r0, r1, r2, r3, r4, r5, cin, tapoff, cin_g, src, w, bp, (g * co_tiles + ct) * nr)
                left = cout_g - ct * nr
                n0 = min(nl, left)
                n1 = min(nl, max(0, left - nl))
                yb = ybase + ct * nr
                _store_pixel(y, p0, c00, c01, n0, n1, yb, relu)
                _store_pixel(y, p1, c10, c11, n0, n1, yb, relu)
                _store_pixel(y, p2, c20, c21, n0, n1, yb, relu)
                _store_pixel(y, p3, c30, c31, n0, n1, yb, relu)
                _store_pixel(y, p4, c40, c41, n0, n1, yb, relu)
                _store_pixel(y, p5, c50, c51, n0, n1, yb, relu)
        task = next_task(counter, me, 1, 1)
    flush_leave(mxcsr_old)


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
