"""Dense and grouped convolution, NCHW: a GEMM whose K loop walks input channels and kernel taps.

``Y[co, q] = bias[co] + sum_{ci, t} W[co, ci, t] * Xp[ci, q + tapoff[t]]`` over grid positions q
(see :mod:`.geometry`).  A 1x1 convolution is the case of one tap.

Register tile: MR = 6 output channels x 2 vectors of consecutive positions.  Per step of K it loads
two input vectors and broadcasts six weights, 8 loads for 12 FMAs.  Weights are packed per tile as
``[co_tile][ci][tap][MR]`` (zero rows pad the last tile), so the broadcasts stream through memory.
K is not blocked: the 12 accumulators live in registers across the whole reduction and each output
is written once (no read-modify-write of Y); the input rows a tile reads come from L1/L2.
"""

from __future__ import annotations

from numba import njit, prange

from .simd import lanes, vbroadcast, vfma, vload_m, vmask, vsplat
from .store import finish, store_positions

MR = 6


@njit(cache=True, inline="always")
def _tile(xp, xbase, koff, wp, wbase, bp, bbase, q0, n0, n1):
    """Accumulate one MR x 2-vector tile over the full K = cin_g * taps reduction.

    ``koff[k]`` is where step k (channel ci, tap t) reads: ``ci * plane + tapoff[t]``; one flat loop
    over K keeps the loop overhead at one add and one compare per 12 FMAs, also for 1x1 kernels.
    """
    nl = lanes(xp)
    m0 = vmask(xp, n0)  # the last tile may end past the input: masked loads never touch that memory
    m1 = vmask(xp, n1)
    xq = xbase + q0
    c00 = vsplat(xp, bp[bbase + 0])
    c10 = vsplat(xp, bp[bbase + 1])
    c20 = vsplat(xp, bp[bbase + 2])
    c30 = vsplat(xp, bp[bbase + 3])
    c40 = vsplat(xp, bp[bbase + 4])
    c50 = vsplat(xp, bp[bbase + 5])
    c01, c11, c21, c31, c41, c51 = c00, c10, c20, c30, c40, c50
    w = wbase
    for k in range(koff.shape[0]):
        o = xq + koff[k]
        b0 = vload_m(xp, o, m0)
        b1 = vload_m(xp, o + nl, m1)
        a = vbroadcast(wp, w)
        c00 = vfma(a, b0, c00)
        c01 = vfma(a, b1, c01)
        a = vbroadcast(wp, w + 1)
        c10 = vfma(a, b0, c10)
        c11 = vfma(a, b1, c11)
        a = vbroadcast(wp, w + 2)
        c20 = vfma(a, b0, c20)
        c21 = vfma(a, b1, c21)
        a = vbroadcast(wp, w + 3)
        c30 = vfma(a, b0, c30)
        c31 = vfma(a, b1, c31)
        a = vbroadcast(wp, w + 4)
        c40 = vfma(a, b0, c40)
        c41 = vfma(a, b1, c41)
        a = vbroadcast(wp, w + 5)
        c50 = vfma(a, b0, c50)
        c51 = vfma(a, b1, c51)
        w += MR
    return c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51


@njit(cache=True, inline="always")
def _store_row(y, ybase, v0, v1, q0, wq, ow, qtotal, relu):
    nl = lanes(y)
    store_positions(y, ybase, finish(v0, relu), q0, wq, ow, qtotal)
    if q0 + nl < qtotal:
        store_positions(y, ybase, finish(v1, relu), q0 + nl, wq, ow, qtotal)


@njit(cache=True, parallel=True)
def conv_nchw(xp, plane, koff, wq, qtotal, wp, bp, y, n_, cin, cout, groups, oh, ow, relu,
              co_block, q_block):
    """y (flat N x Cout x oh x ow) from the prepared input xp (flat N x Cin x plane).

    Tasks are (image, group, block of ``co_block`` channel tiles, block of ``q_block`` position tiles):
    the weight block stays in L2 while the task's position tiles stream past it, and each position
    tile's input rows are reused from L1 by every channel tile of the block.
    """
    nl = lanes(xp)
    nr = 2 * nl
    cin_g = cin // groups
    cout_g = cout // groups
    co_tiles = (cout_g + MR - 1) // MR
    q_tiles = (qtotal + nr - 1) // nr
    co_blocks = (co_tiles + co_block - 1) // co_block
    q_blocks = (q_tiles + q_block - 1) // q_block
    panel = koff.shape[0] * MR
    for task in prange(n_ * groups * co_blocks * q_blocks):
        qb = task % q_blocks
        rest = task // q_blocks
        cb = rest % co_blocks
        rest //= co_blocks
        g = rest % groups
        n = rest // groups
        xbase = (n * cin + g * cin_g) * plane
        for qt in range(qb * q_block, min(q_tiles, (qb + 1) * q_block)):
            q0 = qt * nr
            left = qtotal - q0
            n0 = min(nl, left)
            n1 = min(nl, max(0, left - nl))
            for ct in range(cb * co_block, min(co_tiles, (cb + 1) * co_block)):
                c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51 = _tile(
                    xp, xbase, koff, wp, (g * co_tiles + ct) * panel,
                    bp, (g * co_tiles + ct) * MR, q0, n0, n1)
                co = ct * MR
                rows = min(MR, cout_g - co)
                ybase = (n * cout + g * cout_g + co) * oh * ow
                step = oh * ow
                _store_row(y, ybase, c00, c01, q0, wq, ow, qtotal, relu)
                if rows > 1:
                    _store_row(y, ybase + step, c10, c11, q0, wq, ow, qtotal, relu)
                if rows > 2:
                    _store_row(y, ybase + 2 * step, c20, c21, q0, wq, ow, qtotal, relu)
                if rows > 3:
                    _store_row(y, ybase + 3 * step, c30, c31, q0, wq, ow, qtotal, relu)
                if rows > 4:
                    _store_row(y, ybase + 4 * step, c40, c41, q0, wq, ow, qtotal, relu)
                if rows > 5:
                    _store_row(y, ybase + 5 * step, c50, c51, q0, wq, ow, qtotal, relu)
