"""Weight packing inside a kernel's loops, and the non-finite check, for one-shot calls (docs/call-path.md).

A one-shot call packs the caller's weights on every call.  Packed first, into a buffer of their own, the
weights of a layer on a small map cost more than the convolution: NumPy's strided assignments
(``_fill_tiles`` in ``__init__``) take 0.7-1.3 ms for 2048 x 512 weights, and even a fast transposition
reads the weights once, writes the packing and has the kernel read it back, three passes through L3
where a prepacked layer makes one (measured: pack 0.15-0.2 ms, kernel 0.55 ms, both in turn 1.1-1.3 ms).
So the NHWC kernel packs each block of channel tiles where it uses it (:func:`pack_tiles`, into a
buffer of its task that stays in L2, as BLIS packs per block): the caller's weights are read once.  The
rows are transposed a ``lanes x lanes`` block at a time in registers (:func:`.simd.vtranspose`).  The
same pass tells whether some weight is NaN or +-Inf (``v * 0`` is NaN exactly then), which a call with
padding needs (core/nonfinite.py).

The packed values are the ones ``_fill_tiles`` writes, in the same places: one-shot and prepacked calls
give bit-identical results.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cacheload import cache_kernels
from .prepare import copy_run
from .simd import lanes, vfma, vload, vload_m, vmask, vstore, vstore_lanes, vtranspose, vzero


@njit(inline="always")
def nonfinite_sum(src, lo, hi, acc):
    """``acc`` plus ``src[lo:hi] * 0``, a vector at a time: some lane is NaN once a NaN or an Inf was seen."""
    nl = lanes(src)
    zero = vzero(src)
    i = lo
    while i + nl <= hi:
        acc = vfma(vload(src, i), zero, acc)
        i += nl
    if i < hi:
        acc = vfma(vload_m(src, i, vmask(src, hi - i)), zero, acc)
    return acc


@njit(inline="always")
def any_lane(acc, tmp):
    """Whether a lane of the :func:`nonfinite_sum` ``acc`` is not 0 (``tmp``: ``lanes`` scratch elements)."""
    vstore(tmp, 0, acc)
    for j in range(tmp.shape[0]):
        if tmp[j] != 0:
            return True
    return False


@njit(inline="always")
def nonfinite(src, lo, hi, tmp):
    """Whether ``src[lo:hi]`` holds a NaN or an Inf: the sum of ``v * 0`` over it is NaN then, else 0."""
    return any_lane(nonfinite_sum(src, lo, hi, vzero(src)), tmp)


@njit(inline="always")
def pack_tiles(src, g, ct0, ct1, rows, ksteps, tile, idx, dst, check, flag, tmp):
    """``dst[ct - ct0][idx[k]][i] = src[g][ct * tile + i][k]`` for channel tiles ``ct0 <= ct < ct1`` of group g.

    ``src`` is the caller's weight, flat ``[group][row][k]`` (``rows`` rows a group, ``k`` = input channel x
    tap), ``dst`` a kernel's buffer, ``idx[k]`` the step where ``k`` goes in a tile (padded with ``lanes``
    entries past ``ksteps``); columns past a group's last row are zeroed.  With ``check``, ``flag[0]`` is
    set to 1 when one of these weights is NaN or Inf (``tmp``: ``lanes`` scratch elements).
    """
    nl = lanes(src)
    zero = vzero(src)
    for ct in range(ct0, ct1):
        r0 = ct * tile
        nrow = min(tile, rows - r0)
        s = (g * rows + r0) * ksteps
        d = (ct - ct0) * ksteps * tile
        for k0 in range(0, ksteps, nl):
            # every block of rows for these steps in turn: the destination lines they share are
            # written while they are in L1 (the other order came back to each line once per block)
            for h in range(0, nrow, nl):
                vtranspose(src, s + h * ksteps + k0, ksteps, min(nl, nrow - h), min(nl, ksteps - k0), dst, d + h,
                           tile, idx, k0)
        if nrow < tile:  # the zero columns of a partial tile
            for k in range(ksteps):
                for h in range(0, tile, nl):
                    if h + nl > nrow:
                        vstore_lanes(dst, d + k * tile + h, zero, max(0, nrow - h), nl)
        if check != 0 and nonfinite(src, s, s + nrow * ksteps, tmp):
            flag[0] = 1


@njit(nogil=True)
def pack_depthwise(w, taps, copy_to, dst, rstep, ds, idx, check):
    """A depthwise packing refilled from the caller's ``(C, 1, KH, KW)`` weights ``w`` (flat) in one call:
    ``copy_to[:] = w`` when ``copy_to`` is not empty (NCHW's ``[c][tap]``), and when ``dst`` is not,
    ``dst[c0 * rstep + t * ds + c - c0] = w[c * taps + t]`` for the blocks of ``lanes`` channels from
    ``c0`` (``rstep = 1, ds = Cpad``: NHWC's ``[tap][c]``; ``rstep = taps, ds = lanes``: the small-plane
    kernel's ``[channel block][tap][lanes]``), transposed a block at a time in registers (element by
    element was 10 us for 960 x 9).  ``idx``: ``0, 1, ...`` (``taps + lanes`` entries).  Returns 1 when
    ``check`` and some weight is NaN or Inf."""
    nl = lanes(w)
    channels = w.shape[0] // taps
    if copy_to.shape[0] > 0:
        copy_run(w, 0, copy_to, 0, w.shape[0])
    if dst.shape[0] > 0:
        for c0 in range(0, channels, nl):
            for t0 in range(0, taps, nl):
                vtranspose(w, c0 * taps + t0, taps, min(nl, channels - c0), min(nl, taps - t0), dst, c0 * rstep, ds,
                           idx, t0)
    return 1 if check != 0 and nonfinite(w, 0, w.shape[0], np.empty(nl, w.dtype)) else 0


def step_index(cin_g: int, taps: int, nhwc: bool, pad: int) -> np.ndarray:
    """``idx[k]`` for ``k = ci * taps + tap``: where step k goes in a tile, ``[ci][tap]`` (NCHW, the identity)
    or ``[tap][ci]`` (NHWC); ``pad`` more entries past the end (vtranspose reads a whole block's)."""
    k = np.arange(cin_g * taps, dtype=np.int64)
    if nhwc:
        ci, tap = np.divmod(k, taps)
        k = tap * cin_g + ci
    return np.concatenate([k, np.zeros(pad, np.int64)])


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
