"""Depthwise NCHW on small planes (7x7 to 28x28 maps): vectors across channels, not along a row.

Along a row, a 7-wide map fills 7 of 16 lanes and each channel plane costs a padded copy, a few
masked tiles and their bookkeeping; on mb2_dw_960_7 that per-plane overhead was most of the time
(0.12 ms against C's 0.03 ms).  Here, as in the C kernel (csrc/dwconv, docs/depthwise.md
"NCHW: transposed tiles"), a task takes ``lanes`` channels of one image, copies them transposed into
an L1 tile laid out ``[row][column][lane]`` (zero padding written once per worker, never
overwritten), computes every output pixel as one full vector over the channels (a tap is one
vector load and one FMA with that tap's weight vector), and writes the results back transposed.

Weights are packed ``[channel block][tap][lanes]`` and the bias ``[channel block * lanes]``, both
zero-padded, so the partial last block needs no masks: its spare lanes compute junk that is never
stored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cacheload import cache_kernels
from .fpenv import flush_enter, flush_leave
from .pipeline import SimplifyingCompiler
from .simd import lanes, vfma, vload, vstore, vtranspose
from .store import finish
from .workers import next_task, start

PX = 4  # output pixels per register tile: 4 independent FMA chains sharing each weight load


@njit(inline="always")
def _pixels(tile, p0, p1, p2, p3, toff, wpk, wo, bv, nl):
    a0 = bv
    a1, a2, a3 = bv, bv, bv
    for t in range(toff.shape[0]):
        d = toff[t] * nl
        wv = vload(wpk, wo + t * nl)
        a0 = vfma(wv, vload(tile, p0 + d), a0)
        a1 = vfma(wv, vload(tile, p1 + d), a1)
        a2 = vfma(wv, vload(tile, p2 + d), a2)
        a3 = vfma(wv, vload(tile, p3 + d), a3)
    return a0, a1, a2, a3


@njit(inline="always")
def _pixels_row3(tile, p0, rows, rowstep, wpk, wo, bv, nl):
    """:func:`_pixels` for 3-wide kernels at stride 1 and dilation 1 along rows: the 4 pixels' 12 taps
    of a kernel row read 6 neighbouring tile pixels, so each is loaded once (6 loads, not 12)."""
    a0 = bv
    a1, a2, a3 = bv, bv, bv
    for ky in range(rows):
        b = p0 + ky * rowstep
        w0 = vload(wpk, wo + 3 * ky * nl)
        w1 = vload(wpk, wo + (3 * ky + 1) * nl)
        w2 = vload(wpk, wo + (3 * ky + 2) * nl)
        v0 = vload(tile, b)
        v1 = vload(tile, b + nl)
        v2 = vload(tile, b + 2 * nl)
        v3 = vload(tile, b + 3 * nl)
        v4 = vload(tile, b + 4 * nl)
        v5 = vload(tile, b + 5 * nl)
        a0 = vfma(w2, v2, vfma(w1, v1, vfma(w0, v0, a0)))
        a1 = vfma(w2, v3, vfma(w1, v2, vfma(w0, v1, a1)))
        a2 = vfma(w2, v4, vfma(w1, v3, vfma(w0, v2, a2)))
        a3 = vfma(w2, v5, vfma(w1, v4, vfma(w0, v3, a3)))
    return a0, a1, a2, a3


@njit(nogil=True, pipeline_class=SimplifyingCompiler)
def dw_nchw_small(x, h, w, c_, n_, sh, sw, hp, wp, pix2tile, ident, toff, row3, wpk, bp, y, oh, ow, relu,
                  counter):
    """y (flat N x C x oh x ow) from x (flat N x C x h x w).

    ``hp x wp`` is the padded input window the outputs read, ``pix2tile[p]`` the tile pixel of input
    pixel p (``hp * wp`` when outside the window; ``lanes`` spare entries at the end), ``ident`` is
    ``arange(lanes)``, ``toff[t]`` tap t's offset in tile pixels (``ky * dh * wp + kx * dw``);
    ``row3`` is ``kh`` when the kernel is 3 wide with stride and dilation 1 along rows, else 0.
    """
    nl = lanes(x)
    cb_ = (c_ + nl - 1) // nl
    ntasks = n_ * cb_
    npix = oh * ow
    hw = h * w
    rowstep = (toff[3] - toff[0]) * nl if row3 > 1 else 0  # tile elements between kernel rows
    mxcsr_old = flush_enter()  # this thread's FP mode, put back below (see fpenv)
    # padding stays zero: only the interior is rewritten; one spare pixel at the end receives the
    # input pixels outside the window the outputs read
    tile = np.zeros((hp * wp + 1 + PX) * nl, x.dtype)  # + PX: _pixels_row3 reads past a short last group
    out = np.empty(npix * nl, x.dtype)
    task, me = start(counter, ntasks, 1)
    while task < ntasks:
        n = task // cb_
        cb = task - n * cb_
        c0 = cb * nl
        nreal = min(nl, c_ - c0)
        # transpose in, 16 (float32) plane pixels of the lane-block's channels at a time: lane k of
        # tile pixel pix2tile[p] = channel c0 + k at plane pixel p
        src = (n * c_ + c0) * hw
        for p0 in range(0, hw, nl):
            vtranspose(x, src + p0, hw, nreal, min(nl, hw - p0), tile, 0, nl, pix2tile, p0)
        wo = cb * toff.shape[0] * nl
        bv = vload(bp, c0)
        for oy in range(oh):
            rb = oy * sh * wp
            for ox in range(0, ow, PX):
                # a short last group repeats its last pixel (computed, stored once)
                p0 = (rb + ox * sw) * nl
                p1 = (rb + min(ox + 1, ow - 1) * sw) * nl
                p2 = (rb + min(ox + 2, ow - 1) * sw) * nl
                p3 = (rb + min(ox + 3, ow - 1) * sw) * nl
                if row3 > 0:
                    a0, a1, a2, a3 = _pixels_row3(tile, p0, row3, rowstep, wpk, wo, bv, nl)
                else:
                    a0, a1, a2, a3 = _pixels(tile, p0, p1, p2, p3, toff, wpk, wo, bv, nl)
                q = (oy * ow + ox) * nl
                vstore(out, q, finish(a0, relu))
                if ox + 1 < ow:
                    vstore(out, q + nl, finish(a1, relu))
                if ox + 2 < ow:
                    vstore(out, q + 2 * nl, finish(a2, relu))
                if ox + 3 < ow:
                    vstore(out, q + 3 * nl, finish(a3, relu))
        # transpose out: lane k of pixel vectors p0.. -> output plane of channel c0 + k
        dst = (n * c_ + c0) * npix
        for p0 in range(0, npix, nl):
            vtranspose(out, p0 * nl, nl, min(nl, npix - p0), nreal, y, dst + p0, npix, ident, 0)
        task = next_task(counter, me, 1, 1)
    flush_leave(mxcsr_old)


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
