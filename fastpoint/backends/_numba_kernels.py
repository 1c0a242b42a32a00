"""Numba kernels (imported on first use of the numba backend).

Direct convolution with the same loop structure as the generic C kernel: a row of output pixels is
accumulated in a small buffer, one weight tap at a time, over the valid input columns only, so the
innermost loop is a contiguous AXPY that LLVM vectorizes.  NHWC weights are packed as
``(groups, KH, KW, Cin/groups, Cout/groups)`` so that its innermost loop runs over output channels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._spec import ConvSpec, LayerSpec


@njit(cache=True, inline="always")
def _valid_cols(off, sw, w, ow):
    lo = 0 if off >= 0 else (-off + sw - 1) // sw
    last = w - 1 - off
    hi = 0 if last < 0 else min(ow, last // sw + 1)
    return lo, max(lo, hi)


@njit(cache=True, parallel=True)
def _conv_nchw(x, wt, bias, has_bias, y, sh, sw, pt, pl, dh, dw, groups, relu):
    n_, cin, h, w = x.shape
    cout, cin_g, kh, kw = wt.shape
    oh, ow = y.shape[2], y.shape[3]
    cout_g = cout // groups
    for job in prange(n_ * cout):
        n = job // cout
        co = job % cout
        g = co // cout_g
        b = bias[co] if has_bias else x.dtype.type(0)
        acc = np.empty(ow, dtype=x.dtype)
        for oy in range(oh):
            acc[:] = b
            for ci in range(cin_g):
                c = g * cin_g + ci
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        wv = wt[co, ci, ky, kx]
                        off = kx * dw - pl
                        lo, hi = _valid_cols(off, sw, w, ow)
                        for ox in range(lo, hi):
                            acc[ox] += wv * x[n, c, iy, ox * sw + off]
            for ox in range(ow):
                v = acc[ox]
                y[n, co, oy, ox] = 0 if relu and v < 0 else v


@njit(cache=True, parallel=True)
def _conv_nhwc(x, wp, bias, has_bias, y, sh, sw, pt, pl, dh, dw, relu):
    n_, h, w, cin = x.shape
    groups, kh, kw, cin_g, cout_g = wp.shape
    oh, ow = y.shape[1], y.shape[2]
    for job in prange(n_ * oh):
        n = job // oh
        oy = job % oh
        acc = np.empty(cout_g, dtype=x.dtype)
        for ox in range(ow):
            for g in range(groups):
                for co in range(cout_g):
                    acc[co] = bias[g * cout_g + co] if has_bias else 0
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        if ix < 0 or ix >= w:
                            continue
                        for ci in range(cin_g):
                            xv = x[n, iy, ix, g * cin_g + ci]
                            for co in range(cout_g):
                                acc[co] += xv * wp[g, ky, kx, ci, co]
                for co in range(cout_g):
                    v = acc[co]
                    y[n, oy, ox, g * cout_g + co] = 0 if relu and v < 0 else v


def pack(layer: LayerSpec, weight: np.ndarray) -> np.ndarray:
    if layer.layout == "NCHW":
        return weight
    g = layer.groups
    w = weight.reshape(g, layer.cout_g, layer.cin_g, layer.kh, layer.kw)
    return np.ascontiguousarray(w.transpose(0, 3, 4, 2, 1))


def run(spec: ConvSpec, packed: np.ndarray, x: np.ndarray, bias, out: np.ndarray) -> None:
    L = spec.layer
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(1, dtype=x.dtype)
    (sh, sw), (dh, dw) = L.stride, L.dilation
    if L.layout == "NCHW":
        _conv_nchw(x, packed, b, has_bias, out, sh, sw, spec.pad_top, spec.pad_left, dh, dw, L.groups, L.relu)
    else:
        _conv_nhwc(x, packed, b, has_bias, out, sh, sw, spec.pad_top, spec.pad_left, dh, dw, L.relu)
