"""Weight packing inside a kernel's loops, for one-shot calls (docs/call-path.md).

A one-shot call packs the caller's weights on every call.  Packed first, into a buffer of their own, the
weights of a layer on a small map cost more than the convolution: NumPy's strided assignments
(``_fill_tiles`` in ``__init__``) take 0.7-1.3 ms for 2048 x 512 weights, and even a fast transposition
reads the weights once, writes the packing and has the kernel read it back, three passes through L3
where a prepacked layer makes one (measured: pack 0.15-0.2 ms, kernel 0.55 ms, both in turn 1.1-1.3 ms).
So the NHWC kernel packs each block of channel tiles where it uses it (:func:`pack_tiles`, into a
buffer of its worker that stays in L2, as BLIS packs per block): the caller's weights are read once.
The rows are transposed a ``lanes x lanes`` block at a time in registers (:func:`.simd.vtranspose`).

No pass looks for NaN or Inf weights: the Numba kernels read written-out zero padding (geometry.py),
so a padded tap gives ``0 * w``, NaN for a non-finite ``w``, exactly as the reference does; the C
backend's check (core/nonfinite.py) exists because its kernels skip padded taps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cacheload import cache_kernels
from .prepare import copy_run
from .simd import lanes, vstore_lanes, vtranspose, vzero


@njit(inline="always")
def pack_tiles(src, g, ct0, ct1, rows, ksteps, tile, idx, dst):
    """``dst[ct - ct0][idx[k]][i] = src[g][ct * tile + i][k]`` for channel tiles ``ct0 <= ct < ct1`` of group g.

    ``src`` is the caller's weight, flat ``[group][row][k]`` (``rows`` rows a group, ``k`` = input channel x
    tap), ``dst`` a kernel's buffer, ``idx[k]`` the step where ``k`` goes in a tile (padded with ``lanes``
    entries past ``ksteps``); columns past a group's last row are zeroed.
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


@njit(nogil=True)
def pack_depthwise(w, taps, copy_to, dst, rstep, ds, idx):
    """A depthwise packing refilled from the caller's ``(C, 1, KH, KW)`` weights ``w`` (flat) in one call:
    ``copy_to[:] = w`` when ``copy_to`` is not empty (NCHW's ``[c][tap]``), and when ``dst`` is not,
    ``dst[c0 * rstep + t * ds + c - c0] = w[c * taps + t]`` for the blocks of ``lanes`` channels from
    ``c0`` (``rstep = 1, ds = Cpad``: NHWC's ``[tap][c]``; ``rstep = taps, ds = lanes``: the small-plane
    kernel's ``[channel block][tap][lanes]``), transposed a block at a time in registers (element by
    element was 10 us for 960 x 9).  ``idx``: ``0, 1, ...`` (``taps + lanes`` entries)."""
    nl = lanes(w)
    channels = w.shape[0] // taps
    if copy_to.shape[0] > 0:
        copy_run(w, 0, copy_to, 0, w.shape[0])
    if dst.shape[0] > 0:
        for c0 in range(0, channels, nl):
            for t0 in range(0, taps, nl):
                vtranspose(w, c0 * taps + t0, taps, min(nl, channels - c0), min(nl, taps - t0), dst, c0 * rstep, ds,
                           idx, t0)


def step_index(cin_g: int, taps: int, nhwc: bool, pad: int) -> np.ndarray:
    """``idx[k]`` for ``k = ci * taps + tap``: where step k goes in a tile, ``[ci][tap]`` (NCHW, the identity)
    or ``[tap][ci]`` (NHWC); ``pad`` more entries past the end (vtranspose reads a whole block's)."""
    k = np.arange(cin_g * taps, dtype=np.int64)
    if nhwc:
        ci, tap = np.divmod(k, taps)
        k = tap * cin_g + ci
    return np.concatenate([k, np.zeros(pad, np.int64)])


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
