"""Resizing by any size or factor with PyTorch's ``F.interpolate`` semantics (2-d images).

* ``size`` (int or pair) or ``scale_factor`` (positive number or pair), exactly one; with a factor the
  output is ``floor(H * factor)`` and the sampling uses ``1 / factor`` (PyTorch's rule; with
  ``recompute_scale_factor=True`` it uses ``H / out_H`` instead).
* ``mode="nearest"``: output ``i`` copies input ``floor(i * scale)`` (PyTorch's legacy nearest);
  ``"nearest-exact"``: ``floor((i + 0.5) * scale)``; ``"bilinear"``: ``align_corners=False`` (default)
  samples at ``(i + 0.5) * scale - 0.5`` clamped at 0, ``True`` at ``i * (H - 1) / (out_H - 1)``.
* ``x`` is NCHW or NHWC (or an unbatched 3-d image, as everywhere in fastpoint), float32 or float64.
  Positions and weights are computed in float32, as PyTorch's CPU kernels do for float32 images, so
  nearest picks the same pixels.

Each axis is one pass (width first, the order of PyTorch's expression): nearest gathers source indices,
bilinear blends two gathered copies with per-position weights (:func:`linear_taps`, :func:`lerp_axis`),
which :mod:`fastpoint.network` also uses for ONNX's Resize.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np

from ..core.image_args import prepare_image, spatial_axes
from . import _c

INTERPOLATE_MODES = ("nearest", "nearest-exact", "bilinear")
IntOrPair = Union[int, Tuple[int, int]]


def linear_taps(src: np.ndarray, size: int, dtype) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixel pairs and weights of linear interpolation at coordinates ``src`` along an axis of
    ``size`` pixels; coordinates are clamped to the image (PyTorch's and ONNX Runtime's rule)."""
    src = np.clip(src, 0, size - 1)
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, size - 1)
    lam = (src - i0).astype(dtype)
    return i0, i1, lam


def lerp_axis(x: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``(1 - lam) * x[i0] + lam * x[i1]`` along ``axis``, ``lam`` per output position."""
    shape = [1] * x.ndim
    shape[axis] = lam.size
    lam = lam.reshape(shape)
    a = np.take(x, i0, axis=axis)
    b = np.take(x, i1, axis=axis)
    a *= 1 - lam  # in place: the same two products and one sum as (1 - lam) * a + lam * b
    b *= lam
    a += b
    return a


def _positive_pair(name: str, value, kind) -> Tuple:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, kind) or not v > 0
                               for v in values):
        raise ValueError(f"{name} must be a positive number or a pair of them, got {value!r}")
    return values


def _sizes(in_hw, size, scale_factor, recompute) -> Tuple[Tuple[int, int], Tuple[Optional[float], ...]]:
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate takes exactly one of size and scale_factor (as in PyTorch), "
                         f"got size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        out = _positive_pair("size", size, (int, np.integer))
        return (int(out[0]), int(out[1])), (None, None)
    sf = _positive_pair("scale_factor", scale_factor, (int, float, np.integer, np.floating))
    out = tuple(int(math.floor(n * float(f))) for n, f in zip(in_hw, sf))
    if min(out) <= 0:
        raise ValueError(f"scale_factor {scale_factor!r} makes an empty output from the input's {in_hw}")
    return out, ((None, None) if recompute else tuple(float(f) for f in sf))


def _scale(n_in: int, n_out: int, factor: Optional[float], mode: str, align_corners: bool) -> np.float32:
    """PyTorch's source/destination ratio (``area_pixel_compute_scale``), in float32."""
    if mode == "bilinear" and align_corners:
        return np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    return np.float32(1.0 / factor) if factor is not None else np.float32(n_in / n_out)


def axis_taps(n_in: int, n_out: int, factor, mode: str, align_corners: bool, dtype):
    """The sampling along one axis: ``(i0, None, None)`` (nearest: source index per output position) or
    ``(i0, i1, lam)`` (bilinear: :func:`linear_taps`)."""
    scale = _scale(n_in, n_out, factor, mode, align_corners)
    dst = np.arange(n_out, dtype=np.float32)
    if mode == "nearest":
        if n_out == n_in:
            return np.arange(n_out), None, None
        idx = np.arange(n_out) >> 1 if n_out == 2 * n_in else np.floor(dst * scale).astype(np.intp)
        return np.minimum(idx, n_in - 1), None, None
    if mode == "nearest-exact":
        idx = np.floor((dst + np.float32(0.5)) * scale).astype(np.intp)
        return np.minimum(idx, n_in - 1), None, None
    src = dst * scale if align_corners else np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), 0)
    return linear_taps(src, n_in, dtype)


def _resize_axis(x: np.ndarray, axis: int, n_out: int, factor, mode: str, align_corners: bool) -> np.ndarray:
    n_in = x.shape[axis]
    if mode == "nearest" and n_out == n_in:
        return x
    i0, i1, lam = axis_taps(n_in, n_out, factor, mode, align_corners, x.dtype)
    if lam is None:
        return np.take(x, i0, axis=axis)
    return lerp_axis(x, axis, i0, i1, lam)


def interpolate(x, size: Optional[IntOrPair] = None, scale_factor=None, mode: str = "nearest",
                align_corners: Optional[bool] = None, recompute_scale_factor: Optional[bool] = None, *,
                layout: str = "NCHW", backend: str = "auto") -> np.ndarray:
    """Resize H and W, as ``torch.nn.functional.interpolate`` on a 4-d tensor; see the module doc.
    ``backend``: "auto" (the C loops for float32, both axes in one pass), "c" or "numpy" (the reference)."""
    x4, batched = prepare_image("x", x, layout)
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
    if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"align_corners must be a bool or None, got {align_corners!r}")
    if align_corners is not None and mode != "bilinear":
        raise ValueError("align_corners can only be set with mode='bilinear' (as in PyTorch)")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor=True needs scale_factor, not size (as in PyTorch)")
    axes = spatial_axes(layout)
    out_hw, factors = _sizes((x4.shape[axes[0]], x4.shape[axes[1]]), size, scale_factor, recompute_scale_factor)
    if _c.use_c(backend, x4.dtype):
        taps = [axis_taps(x4.shape[axes[i]], out_hw[i], factors[i], mode, bool(align_corners), x4.dtype)
                for i in range(2)]
        y = _c.resize2d(x4, layout, taps[0], taps[1])
        if y is not None:
            return y if batched else y[0]
    y = _resize_axis(x4, axes[1], out_hw[1], factors[1], mode, bool(align_corners))
    y = _resize_axis(y, axes[0], out_hw[0], factors[0], mode, bool(align_corners))
    y = x4.copy() if y is x4 else np.ascontiguousarray(y, dtype=x4.dtype)  # never a view of the input
    return y if batched else y[0]
