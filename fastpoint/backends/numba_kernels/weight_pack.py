"""The dense kernels' weight packing as a kernel of its own, for one-shot calls (docs/call-path.md).

A one-shot call packs the caller's weights on every call, so the packing is part of the call's time.
NumPy's strided assignments (``_fill_tiles`` in ``__init__``) move 4 MB of 2048 x 512 weights in about
0.75 ms, most of a 1 ms convolution.  Here each (group, channel tile) is a task: its rows are transposed
a ``lanes x lanes`` block at a time in registers (:func:`.simd.vtranspose`) into the tile's
``[step][row]`` order, and the tasks are split across the workers (workers.py) like a kernel's.  The same
pass tells whether some weight is NaN or +-Inf (``v * 0`` is NaN exactly then), which a call with padding
needs (core/nonfinite.py), so the weights are read once.

The packed values are the ones ``_fill_tiles`` writes, in the same places: one-shot and prepacked calls
give bit-identical results.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cacheload import cache_kernels
from .simd import lanes, vfma, vload, vload_m, vmask, vstore, vtranspose, vzero
from .workers import next_task, start


@njit(inline="always")
def _nonfinite(src, lo, hi, tmp):
    """Whether ``src[lo:hi]`` holds a NaN or an Inf: the sum of ``v * 0`` over it is NaN then, else 0."""
    nl = lanes(src)
    acc = vzero(src)
    zero = vzero(src)
    i = lo
    while i + nl <= hi:
        acc = vfma(vload(src, i), zero, acc)
        i += nl
    if i < hi:
        acc = vfma(vload_m(src, i, vmask(src, hi - i)), zero, acc)
    vstore(tmp, 0, acc)
    for j in range(nl):
        if tmp[j] != 0:
            return True
    return False


@njit(nogil=True)
def pack_tiles(src, dst, idx, groups, rows, ksteps, tile, check, flag, counter):
    """``dst[g][t][idx[k]][i] = src[g][t * tile + i][k]`` for the ``rows`` rows of each of ``groups`` groups.

    ``src`` is the caller's weight, flat ``[group][row][k]`` (``k`` = input channel x tap), ``dst`` the
    packing (zeroed once: rows past the last are left alone), ``idx[k]`` the step where ``k`` goes in a
    tile (padded with ``lanes`` entries past ``ksteps``).  With ``check``, ``flag[0]`` is set to 1 when
    some weight is NaN or Inf.
    """
    nl = lanes(src)
    tiles = (rows + tile - 1) // tile
    ntasks = groups * tiles
    tmp = np.empty(nl, src.dtype)
    task, me = start(counter, ntasks, 1)
    while task < ntasks:
        g = task // tiles
        t = task - g * tiles
        r0 = t * tile
        nrow = min(tile, rows - r0)
        for h in range(0, nrow, nl):
            nr = min(nl, nrow - h)
            s = (g * rows + r0 + h) * ksteps
            d = task * ksteps * tile + h
            for k0 in range(0, ksteps, nl):
                vtranspose(src, s + k0, ksteps, nr, min(nl, ksteps - k0), dst, d, tile, idx, k0)
        if check != 0:
            lo = (g * rows + r0) * ksteps
            if _nonfinite(src, lo, lo + nrow * ksteps, tmp):
                flag[0] = 1
        task = next_task(counter, me, 1, 1)


#: elements per task of nonfinite_blocks (64 KiB of float32)
_BLOCK = 16384


@njit(nogil=True)
def nonfinite_blocks(src, flag, counter):
    """Set ``flag[0]`` to 1 when the flat array ``src`` holds a NaN or an Inf (for weights read unpacked),
    in blocks of ``_BLOCK`` elements shared by the workers."""
    ntasks = (src.shape[0] + _BLOCK - 1) // _BLOCK
    tmp = np.empty(lanes(src), src.dtype)
    task, me = start(counter, ntasks, 1)
    while task < ntasks:
        lo = task * _BLOCK
        if _nonfinite(src, lo, min(src.shape[0], lo + _BLOCK), tmp):
            flag[0] = 1
        task = next_task(counter, me, 1, 1)


def step_index(cin_g: int, taps: int, nhwc: bool, pad: int) -> np.ndarray:
    """``idx[k]`` for ``k = ci * taps + tap``: where step k goes in a tile, ``[ci][tap]`` (NCHW, the identity)
    or ``[tap][ci]`` (NHWC); ``pad`` more entries past the end (vtranspose reads a whole block's)."""
    k = np.arange(cin_g * taps, dtype=np.int64)
    if nhwc:
        ci, tap = np.divmod(k, taps)
        k = tap * cin_g + ci
    return np.concatenate([k, np.zeros(pad, np.int64)])


cache_kernels(globals())  # cached per user; a warm cache loads without a registry refresh (cacheload.py)
