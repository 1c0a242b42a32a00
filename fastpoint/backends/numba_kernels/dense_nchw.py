"""Dense and grouped convolution, NCHW: a GEMM whose K loop walks input channels and kernel taps.

``Y[co, q] = bias[co] + sum_{ci, t} W[co, ci, t] * Xp[ci, q + tapoff[t]]`` over grid positions q
(see :mod:`.geometry`).  A 1x1 convolution is the case of one tap.

Register tile: MR = 6 output channels x 2 vectors of consecutive positions.  Per step of K it loads
two input vectors and broadcasts six weights, 8 loads for 12 FMAs.  The weights are broadcast where
they lie in the ``(Cout, Cin/groups, KH, KW)`` array: six rows ``ksteps`` apart, each read in order, so
a one-shot call packs nothing (a packing would be one more pass over the weights, as long as the
convolution itself on small maps) and a layer keeps a plain copy.  Only a group's last, partial tile
is packed (``wtail``, ``[ci][tap][MR]`` with zero rows: its missing rows would lie past the group's, or
the array's, end).  The tiles packed as ``[co_tile][ci][tap][MR]`` that layers used before were no
faster, and slower on small maps (r50_3x3_512_7 1T, thread CPU time, loaded box: 3.06 ms packed,
2.14 ms in place; r50_1x1_2048_512_7 0.83 / 0.76; equal within noise on 14x14 to 112x112 maps).
K is cut in L1-sized chunks (see :func:`conv_nchw`); within a chunk the 12 accumulators stay in
registers, and each output is written to Y once, after the last chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import tasks
from .cacheload import cache_kernels
from .fpenv import flush_enter, flush_leave
from .pipeline import SimplifyingCompiler
from .simd import lanes, prefetch, vbroadcast, vfma, vload, vload_m, vmask, vsplat, vstore
from .store import finish, store_positions_at
from .workers import next_task, start

MR = 6


@njit(inline="always")
def _load_acc(acc, a):
    """The 12 accumulators of an MR x 2-vector tile, kept at acc[a:] between K chunks."""
    nl = lanes(acc)
    return (vload(acc, a), vload(acc, a + nl), vload(acc, a + 2 * nl), vload(acc, a + 3 * nl),
            vload(acc, a + 4 * nl), vload(acc, a + 5 * nl), vload(acc, a + 6 * nl), vload(acc, a + 7 * nl),
            vload(acc, a + 8 * nl), vload(acc, a + 9 * nl), vload(acc, a + 10 * nl), vload(acc, a + 11 * nl))


@njit(inline="always")
def _store_acc(acc, a, c):
    nl = lanes(acc)
    c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51 = c
    vstore(acc, a, c00)
    vstore(acc, a + nl, c01)
    vstore(acc, a + 2 * nl, c10)
    vstore(acc, a + 3 * nl, c11)
    vstore(acc, a + 4 * nl, c20)
    vstore(acc, a + 5 * nl, c21)
    vstore(acc, a + 6 * nl, c30)
    vstore(acc, a + 7 * nl, c31)
    vstore(acc, a + 8 * nl, c40)
    vstore(acc, a + 9 * nl, c41)
    vstore(acc, a + 10 * nl, c50)
    vstore(acc, a + 11 * nl, c51)


@njit(inline="always")
def _step(wp, w, rs, b0, b1, c):
    """One step of K: six broadcast weights (``rs`` apart) times the two input vectors, added to the tile ``c``."""
    c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51 = c
    a0 = vbroadcast(wp, w)
    c00 = vfma(a0, b0, c00)
    c01 = vfma(a0, b1, c01)
    a0 = vbroadcast(wp, w + rs)
    c10 = vfma(a0, b0, c10)
    c11 = vfma(a0, b1, c11)
    a0 = vbroadcast(wp, w + 2 * rs)
    c20 = vfma(a0, b0, c20)
    c21 = vfma(a0, b1, c21)
    a0 = vbroadcast(wp, w + 3 * rs)
    c30 = vfma(a0, b0, c30)
    c31 = vfma(a0, b1, c31)
    a0 = vbroadcast(wp, w + 4 * rs)
    c40 = vfma(a0, b0, c40)
    c41 = vfma(a0, b1, c41)
    a0 = vbroadcast(wp, w + 5 * rs)
    c50 = vfma(a0, b0, c50)
    c51 = vfma(a0, b1, c51)
    return (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)


@njit(inline="always")
def _tile(bpanel, bo, steps, wp, w, ws, rs, acc, a):
    """Add ``steps`` steps of the K reduction to one MR x 2-vector tile kept at acc[a:].

    ``bpanel[bo:]`` holds the chunk's input, 2 vectors per step, contiguous (see :func:`_pack_panel`).
    The tile's weights of step k are ``wp[w + k * ws + i * rs]``, i < MR (rows in place: ws = 1,
    rs = ksteps; the packed partial tile: ws = MR, rs = 1).
    The 12 accumulators live in registers for the whole chunk; acc holds them between chunks.
    """
    nl = lanes(acc)
    c = _load_acc(acc, a)
    for k in range(steps):
        c = _step(wp, w, rs, vload(bpanel, bo + k * 2 * nl), vload(bpanel, bo + k * 2 * nl + nl), c)
        w += ws
    _store_acc(acc, a, c)


@njit(inline="always")
def _tile_direct(xp, xq, koff, m0, m1, steps, wp, w, ws, rs, acc, a, pf):
    """:func:`_tile` reading the input in place: step k loads ``xp[xq + koff[k]:]`` (masks m0, m1).

    For layers with few channel tiles (IN_PLACE_CO_TILES), a packed copy is read only a few times: the
    copy costs more than it saves (unet_head_64_2_256: packing took 3/4 of the kernel's time).
    """
    nl = lanes(acc)
    c = _load_acc(acc, a)
    for k in range(steps):
        o = xq + koff[k]
        prefetch(xp, o + pf)
        prefetch(xp, o + pf + nl)
        c = _step(wp, w, rs, vload_m(xp, o, m0), vload_m(xp, o + nl, m1), c)
        w += ws
    _store_acc(acc, a, c)


@njit(inline="always")
def _pack_panel(xp, xq, koff, k0, k1, m0, m1, bpanel, bo):
    """Copy steps [k0, k1) of one position tile into a contiguous panel (BLIS's packed B).

    Step k (channel ci, tap t) reads ``xp[xq + koff[k]:][:2 vectors]`` with ``koff[k] = ci * plane +
    tapoff[t]``: one vector pair per channel plane, a new page per step.  Packed, the kernel's loads
    are sequential (prefetcher- and TLB-friendly) and unmasked; the copy is paid once per tile and
    reused by every channel tile of the block.
    """
    nl = lanes(xp)
    for k in range(k0, k1):
        o = xq + koff[k]
        d = bo + (k - k0) * 2 * nl
        vstore(bpanel, d, vload_m(xp, o, m0))
        vstore(bpanel, d + nl, vload_m(xp, o + nl, m1))


@njit(inline="always")
def _pack_block(xp, xbase, koff, ksteps, qt0, qt1, qtotal, bpanel):
    """Pack position tiles [qt0, qt1) for all ``ksteps`` steps, into panels of ``ksteps`` x 2 vectors each.

    Channel (step) outer, tiles inner: each channel plane is read as one run of (qt1 - qt0) x 2
    vectors.  Tile-outer order (:func:`_pack_panel` per tile) reads 2 vectors from every plane in turn,
    so K concurrent streams of 128 bytes each: more than the hardware prefetcher tracks on small-K,
    large-map layers (mb2_pw_32_16_112, unet_head_64_2_256), which then waited on memory.
    """
    nl = lanes(xp)
    nr = 2 * nl
    full = min(qt1, qtotal // nr)  # tiles whose 2 vectors lie inside the input; the rest is masked
    for k in range(ksteps):
        o = xbase + koff[k]
        for qt in range(qt0, full):
            d = ((qt - qt0) * ksteps + k) * nr
            vstore(bpanel, d, vload(xp, o + qt * nr))
            vstore(bpanel, d + nl, vload(xp, o + qt * nr + nl))
        for qt in range(max(qt0, full), qt1):
            q0 = qt * nr
            d = ((qt - qt0) * ksteps + k) * nr
            vstore(bpanel, d, vload_m(xp, o + q0, vmask(xp, qtotal - q0)))
            vstore(bpanel, d + nl, vload_m(xp, o + q0 + nl, vmask(xp, qtotal - q0 - nl)))


@njit(inline="always")
def _store_tile(y, acc, a, ybase, step, rows, q0, wq, ow, qtotal, relu):
    """Write ``rows`` rows (output channels, ``step`` apart in y) of the tile kept at acc[a:]."""
    nl = lanes(y)
    nr = 2 * nl
    oy0 = q0 // wq
    ox0 = q0 - oy0 * wq
    oy1 = (q0 + nl) // wq
    ox1 = q0 + nl - oy1 * wq
    for i in range(rows):
        v0 = finish(vload(acc, a + i * nr), relu)
        store_positions_at(y, ybase + i * step, v0, q0, oy0, ox0, wq, ow, qtotal)
        if q0 + nl < qtotal:
            v1 = finish(vload(acc, a + i * nr + nl), relu)
            store_positions_at(y, ybase + i * step, v1, q0 + nl, oy1, ox1, wq, ow, qtotal)


@njit(nogil=True, pipeline_class=SimplifyingCompiler)
def conv_nchw(xp, plane, koff, wq, qtotal, wp, wtail, bp, y, n_, cin, cout, groups, oh, ow, relu,
              co_block, q_block, kc, in_place, counter):
    """y (flat N x Cout x oh x ow) from the prepared input xp (flat N x Cin x plane).

    Loops, outer to inner, as in BLIS: tasks are (image, group, block of ``co_block`` channel tiles,
    block of ``q_block`` position tiles) and run in parallel; per position tile, K is cut in chunks
    of ``kc`` steps whose input is packed (kc x 2 vectors, sized to stay in L1) and then used by
    every channel tile of the block (weights: ``co_block`` panels, kept in L2).  Partial sums of the
    block live in a small task-local buffer (co_block x MR x 2 vectors).  ``in_place`` (K in one
    chunk only): the tiles read xp itself, nothing is packed.  ``wp``: the weights, flat Cout x Cin/groups
    x KH x KW; ``wtail``: each group's last channel tile packed, when it is partial (``[group][ci][tap][MR]``;
    see the module doc).
    """
    nl = lanes(xp)
    nr = 2 * nl
    cin_g = cin // groups
    cout_g = cout // groups
    co_tiles = (cout_g + MR - 1) // MR
    q_tiles = (qtotal + nr - 1) // nr
    ksteps = koff.shape[0]
    panel = ksteps * MR
    tail = co_tiles - 1 if cout_g % MR != 0 else co_tiles  # the packed tile, if any
    step = oh * ow
    pf = 4 * nr  # in-place tiles prefetch 4 tiles ahead in each plane (8 and 16: slower, docs/numba.md)
    ntasks, co_blocks, q_blocks = tasks.count(n_, groups, co_tiles, co_block, q_tiles, q_block)
    # each worker (see workers.py) takes the next task until none is left
    mxcsr_old = flush_enter()  # this thread's FP mode, put back below (see fpenv)
    acc = np.empty(co_block * MR * nr, xp.dtype)
    bpanel = np.empty((q_block * ksteps if ksteps <= kc else kc) * nr, xp.dtype)
    task, me = start(counter, ntasks, 1)
    while task < ntasks:
        n, g, cb, qb = tasks.split(task, groups, co_blocks, q_blocks)
        xbase = (n * cin + g * cin_g) * plane
        ct0 = cb * co_block
        ct1 = min(co_tiles, ct0 + co_block)
        qt0 = qb * q_block
        qt1 = min(q_tiles, qt0 + q_block)
        if ksteps <= kc:
            # K fits one chunk: pack all the block's position tiles once, then let the channel
            # tiles be the outer loop, so each output row is written as one run of positions
            # instead of 32-position pieces spread over all the block's rows (much of the time
            # of small-K layers went into those scattered writes)
            if in_place == 0:
                _pack_block(xp, xbase, koff, ksteps, qt0, qt1, qtotal, bpanel)
            for ct in range(ct0, ct1):
                co = ct * MR
                for qt in range(qt0, qt1):
                    for i in range(MR):
                        b = vsplat(xp, bp[(g * co_tiles + ct) * MR + i])
                        vstore(acc, i * nr, b)
                        vstore(acc, i * nr + nl, b)
                    if in_place == 0:
                        bo = (qt - qt0) * ksteps * nr
                        if ct < tail:
                            _tile(bpanel, bo, ksteps, wp, (g * cout_g + co) * ksteps, 1, ksteps, acc, 0)
                        else:
                            _tile(bpanel, bo, ksteps, wtail, g * panel, MR, 1, acc, 0)
                    else:
                        q0 = qt * nr
                        m0, m1 = vmask(xp, qtotal - q0), vmask(xp, qtotal - q0 - nl)
                        if ct < tail:
                            _tile_direct(xp, xbase + q0, koff, m0, m1, ksteps, wp, (g * cout_g + co) * ksteps,
                                         1, ksteps, acc, 0, pf)
                        else:
                            _tile_direct(xp, xbase + q0, koff, m0, m1, ksteps, wtail, g * panel, MR, 1, acc, 0, pf)
                    _store_tile(y, acc, 0, (n * cout + g * cout_g + co) * step, step, min(MR, cout_g - co),
                                qt * nr, wq, ow, qtotal, relu)
            task = next_task(counter, me, 1, 1)
            continue
        for qt in range(qt0, qt1):
            q0 = qt * nr
            left = qtotal - q0
            m0 = vmask(xp, left)  # the last tile may end past the input: masked loads never touch that memory
            m1 = vmask(xp, left - nl)
            for i in range((ct1 - ct0) * MR):
                b = vsplat(xp, bp[(g * co_tiles + ct0) * MR + i])
                vstore(acc, i * nr, b)
                vstore(acc, i * nr + nl, b)
            for k0 in range(0, ksteps, kc):
                k1 = min(ksteps, k0 + kc)
                _pack_panel(xp, xbase + q0, koff, k0, k1, m0, m1, bpanel, 0)
                for ct in range(ct0, ct1):
                    a = (ct - ct0) * MR * nr
                    if ct < tail:
                        _tile(bpanel, 0, k1 - k0, wp, (g * cout_g + ct * MR) * ksteps + k0, 1, ksteps, acc, a)
                    else:
                        _tile(bpanel, 0, k1 - k0, wtail, g * panel + k0 * MR, MR, 1, acc, a)
            oy0 = q0 // wq
            ox0 = q0 - oy0 * wq
            oy1 = (q0 + nl) // wq
            ox1 = q0 + nl - oy1 * wq
            for ct in range(ct0, ct1):
                co = ct * MR
                ybase = (n * cout + g * cout_g + co) * step
                for i in range(min(MR, cout_g - co)):
                    a = ((ct - ct0) * MR + i) * nr
                    v0 = finish(vload(acc, a), relu)
                    store_positions_at(y, ybase + i * step, v0, q0, oy0, ox0, wq, ow, qtotal)
                    if q0 + nl < qtotal:
                        v1 = finish(vload(acc, a + nl), relu)
                        store_positions_at(y, ybase + i * step, v1, q0 + nl, oy1, ox1, wq, ow, qtotal)
        task = next_task(counter, me, 1, 1)
    flush_leave(mxcsr_old)


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
