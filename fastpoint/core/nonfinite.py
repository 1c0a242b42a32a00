"""Non-finite weights against zero padding, as PyTorch and IEEE arithmetic say.

The kernels skip the taps that fall on the zero padding (they never load a padded zero), which is
exact for finite weights but not for a NaN or Inf weight: ``0 * nan`` and ``0 * inf`` are NaN, so
PyTorch (and the NumPy reference, which pads with real zeros) give NaN in every output whose window
puts such a weight on the padding.  Layers with a non-finite weight are rare, so the fix-up is done
here once per call, after the kernel, instead of slowing every kernel's border loops.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .spec import ConvSpec


def nonfinite_taps(weight: np.ndarray) -> Optional[np.ndarray]:
    """``(Cout, KH, KW)`` mask of the taps where some input channel's weight is NaN or Inf; None if all finite."""
    # A finite sum means every element is finite (a NaN or Inf term makes the sum NaN or Inf): one pass
    # with no temporary, in the weight's own float32/64 (a float64 sum of float32 weights casts every
    # element: 2.5x the time); only a sum that is not finite (or overflows) needs the elementwise mask.
    if weight.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):  # (an Inf or NaN sum is the answer, not a fault)
            total = np.add.reduce(weight, axis=None, dtype=None if weight.dtype.itemsize >= 4 else np.float64)
        if np.isfinite(total):
            return None
    finite = np.isfinite(weight)
    if finite.all():
        return None
    return ~finite.all(axis=1)


def apply_padding_nan(spec: ConvSpec, taps: np.ndarray, out: np.ndarray) -> None:
    """Set to NaN the outputs (4-d ``out``) whose window puts a non-finite weight on the padding."""
    L = spec.layer
    (sh, sw), (dh, dw) = L.stride, L.dilation
    iy = np.arange(spec.oh)[:, None] * sh - spec.pad_top + np.arange(L.kh)[None, :] * dh  # (OH, KH)
    ix = np.arange(spec.ow)[:, None] * sw - spec.pad_left + np.arange(L.kw)[None, :] * dw  # (OW, KW)
    row_pad = (iy < 0) | (iy >= spec.h)
    col_pad = (ix < 0) | (ix >= spec.w)
    if not (row_pad.any() or col_pad.any()):
        return
    for co in np.flatnonzero(taps.any(axis=(1, 2))):
        ky, kx = np.nonzero(taps[co])
        # output (oy, ox) sees tap (ky, kx) on the padding when its row or its column is padding
        hit = (row_pad[:, ky][:, None, :] | col_pad[:, kx][None, :, :]).any(axis=2)  # (OH, OW)
        if L.layout == "NCHW":
            out[:, co][:, hit] = np.nan
        else:
            out[..., co][:, hit] = np.nan
