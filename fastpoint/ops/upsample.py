"""Upsampling by integer factors with PyTorch's ``F.interpolate(scale_factor=...)`` semantics
(:func:`fastpoint.interpolate` takes any size or factor; this one is what :mod:`fastpoint.dask` chunks).

* ``mode="nearest"``: output pixel ``i`` copies input pixel ``i // s`` (PyTorch's legacy ``nearest``).
* ``mode="bilinear"``, ``align_corners=False``: output pixel ``i`` samples the input at
  ``(i + 0.5) / s - 0.5``, clamped to the image (half-pixel centres); ``align_corners=True`` samples at
  ``i * (H - 1) / (s*H - 1)``.
* ``x`` is NCHW or NHWC (or unbatched 3-d), float32 or float64; ``scale_factor`` a positive int or pair.

With ``align_corners=False`` and an integer factor the interpolation weights repeat with period ``s``,
so the image is padded by one edge pixel on each side (which is exactly PyTorch's clamping) and every
output pixel is ``(1 - l) * xp[j] + l * xp[j + 1]`` with ``j`` and ``l`` depending only on the output
position. The same "valid" interpolation of a padded block is what :mod:`fastpoint.dask` runs per
chunk, so chunked and in-memory results are bit-identical. The width pass runs before the height
pass, the order of PyTorch's own expression ``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)``.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from ..core.image_args import pair, prepare_image, spatial_axes
from .interpolate import lerp_axis

IntOrPair = Union[int, Tuple[int, int]]
MODES = ("nearest", "bilinear")


def upsample_params(scale_factor, mode, align_corners) -> Tuple[int, int]:
    """Validate and normalize upsampling arguments (also used by :mod:`fastpoint.dask`)."""
    if isinstance(scale_factor, float) and float(scale_factor).is_integer():
        scale_factor = int(scale_factor)
    if isinstance(scale_factor, (tuple, list)):
        scale_factor = tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in scale_factor)
    try:
        s = pair("scale_factor", scale_factor, 1)
    except TypeError:
        raise TypeError(f"scale_factor must be a positive int or a pair of ints (integer factors only), "
                        f"got {scale_factor!r}") from None
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"align_corners must be a bool, got {align_corners!r}")
    if mode == "nearest" and align_corners:
        raise ValueError("align_corners=True only applies to mode='bilinear' (as in PyTorch)")
    return s


def nearest(x4: np.ndarray, axes, s) -> np.ndarray:
    """Nearest upsampling of a 4-d array: one broadcast write into a strided view of the output."""
    ha, wa = axes
    shape = list(x4.shape)
    shape[ha] *= s[0]
    shape[wa] *= s[1]
    out = np.empty(shape, dtype=x4.dtype)
    if ha == 2:  # NCHW
        n, c, h, w = x4.shape
        out.reshape(n, c, h, s[0], w, s[1])[...] = x4[:, :, :, None, :, None]
    else:
        n, h, w, c = x4.shape
        out.reshape(n, h, s[0], w, s[1], c)[...] = x4[:, :, None, :, None, :]
    return out


def _phase_weights(s: int, dtype) -> Tuple[np.ndarray, np.ndarray]:
    """For output offsets r = 0..s-1 within a period: base index shift (0 or 1) and weight l."""
    t = (np.arange(s) + 0.5) / s - 0.5  # source position relative to the input pixel, in (-0.5, 0.5)
    shift = (t >= 0).astype(np.intp)
    lam = np.where(t < 0, t + 1.0, t).astype(dtype)
    return shift, lam


def _lerp(x: np.ndarray, axis: int, i0: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return lerp_axis(x, axis, i0, i0 + 1, lam)


def bilinear_valid_axis(xp: np.ndarray, axis: int, s: int) -> np.ndarray:
    """Half-pixel bilinear upsampling along ``axis`` of an array padded by one pixel on each side.

    Input length ``M`` gives ``s * (M - 2)`` outputs; output ``q*s + r`` reads ``xp[q + shift[r]]`` and
    the next pixel, so each output depends only on its own neighbourhood (chunkable).
    """
    m = xp.shape[axis] - 2
    shift, lam = _phase_weights(s, xp.dtype)
    q = np.repeat(np.arange(m), s)
    r = np.tile(np.arange(s), m)
    return _lerp(xp, axis, q + shift[r], lam[r])


def _bilinear_corners_axis(x: np.ndarray, axis: int, s: int) -> np.ndarray:
    n = x.shape[axis]
    out_n = n * s
    if n == 1 or out_n == 1:
        return np.repeat(x, s, axis=axis)
    src = np.arange(out_n) * ((n - 1) / (out_n - 1))
    i0 = np.minimum(np.floor(src).astype(np.intp), n - 2)
    lam = (src - i0).astype(x.dtype)
    return _lerp(x, axis, i0, lam)


def edge_pad(x4: np.ndarray, axes) -> np.ndarray:
    width = [(0, 0)] * 4
    width[axes[0]] = (1, 1)
    width[axes[1]] = (1, 1)
    return np.pad(x4, width, mode="edge")


def upsample(x, scale_factor: IntOrPair, mode: str = "nearest", align_corners: bool = False, *,
             layout: str = "NCHW") -> np.ndarray:
    """Upsample H and W by integer factors, as ``F.interpolate(x, scale_factor=s, mode=mode)``."""
    x4, batched = prepare_image("x", x, layout)
    s = upsample_params(scale_factor, mode, align_corners)
    axes = spatial_axes(layout)
    if mode == "nearest":
        out = nearest(x4, axes, s)
    elif align_corners:
        out = _bilinear_corners_axis(_bilinear_corners_axis(x4, axes[1], s[1]), axes[0], s[0])
    else:
        xp = edge_pad(x4, axes)
        out = bilinear_valid_axis(bilinear_valid_axis(xp, axes[1], s[1]), axes[0], s[0])
    out = np.ascontiguousarray(out)
    return out if batched else out[0]
