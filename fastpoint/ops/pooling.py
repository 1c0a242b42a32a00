"""Max and average pooling with PyTorch's ``max_pool2d`` / ``avg_pool2d`` semantics.

* ``x`` is ``(N, C, H, W)`` (``layout="NCHW"``) or ``(N, H, W, C)`` (``"NHWC"``), or unbatched 3-d;
  float32 or float64; the result has the input's layout and dtype.
* ``kernel_size`` int or pair; ``stride`` defaults to ``kernel_size``; ``padding`` int or pair, at most
  half the (dilated, for max pooling) kernel, as in PyTorch; ``dilation`` (max pooling) spaces the taps.
* ``ceil_mode=True`` rounds the output size up, but the last window must start inside the image or its
  leading padding (PyTorch's rule, which ONNX shares); windows may then reach past the padding.
* Max pooling pads with -inf (padding never wins) and propagates NaN. Average pooling pads with zeros
  and divides by ``divisor_override`` if given, else by the window's taps on the image and its padding
  (``count_include_pad=True``) or on the image only; taps past the padding never count.

The computation loops over the KH*KW taps and reduces whole strided views of the padded input at once,
so the work is a few vectorized passes over memory whatever the image size (pooling is memory-bound;
a compiled loop would not be faster by much for the 2x2 and 3x3 windows networks use). The divisors are
a product of one count per row and one per column. ``fastpoint.network`` runs ONNX's MaxPool and
AveragePool (pads per side, dilated averages) on the same pieces: :func:`pool_windows`,
:func:`pool_out_size`, :func:`window_counts`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..core.image_args import pair, prepare_image, spatial_axes
from . import _c

IntOrPair = Union[int, Tuple[int, int]]


def pool_params(kernel_size, stride, padding) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """Validate and normalize pooling hyper-parameters (also used by :mod:`fastpoint.dask`)."""
    k = pair("kernel_size", kernel_size, 1)
    s = k if stride is None else pair("stride", stride, 1)
    p = pair("padding", padding, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {padding!r} must be at most half of kernel_size {kernel_size!r} (as in PyTorch)")
    return k, s, p


def pool_out_size(size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: bool) -> int:
    """Windows along one axis of ``size`` pixels padded by ``pb`` before and ``pe`` after."""
    span = size + pb + pe - (k - 1) * d - 1
    if span < 0:
        return 0
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:  # the last window would start in the trailing padding
        out -= 1
    return out


def window_counts(size: int, k: int, s: int, d: int, pb: int, pe: int, out: int, include_pad: bool) -> np.ndarray:
    """Taps of each window along one axis on the image (or on image and padding, ``include_pad``)."""
    lo, hi = (-pb, size + pe) if include_pad else (0, size)
    pos = np.arange(out)[:, None] * s - pb + np.arange(k)[None, :] * d
    return ((pos >= lo) & (pos < hi)).sum(axis=1)


def _window_views(xp: np.ndarray, axes, k, s, out_hw, dilation):
    """(i, j, view): the strided view of padded ``xp`` that tap (i, j) of every window reads."""
    ha, wa = axes
    for i in range(k[0]):
        for j in range(k[1]):
            index = [slice(None)] * 4
            index[ha] = slice(i * dilation[0], i * dilation[0] + s[0] * (out_hw[0] - 1) + 1, s[0])
            index[wa] = slice(j * dilation[1], j * dilation[1] + s[1] * (out_hw[1] - 1) + 1, s[1])
            yield i, j, xp[tuple(index)]


def reduce_windows(xp: np.ndarray, axes, k, s, out_hw, op, dilation=(1, 1)) -> np.ndarray:
    """Reduce the KH*KW strided views of ``xp`` (already padded) with ``op`` (np.maximum or np.add).

    ``axes`` are the (height, width) axes of the 4-d ``xp``, ``k``, ``s`` and ``dilation`` the window,
    stride and tap spacing pairs, ``out_hw`` the output size.  The pooling functions and
    :mod:`fastpoint.dask` (on each padded block) use it.
    """
    out = None
    for _, _, view in _window_views(xp, axes, k, s, out_hw, dilation):
        if out is None:
            out = np.array(view, copy=True, order="C")
        else:
            op(out, view, out=out)
    return out


def _pad_windows(x4: np.ndarray, axes, k, s, d, pads: Sequence[int], out_hw, kind: str) -> np.ndarray:
    """``x4`` padded by ``pads`` (top, left, bottom, right) and as far as the last window reaches (which
    with ``ceil_mode`` can be past the bottom/right padding): with the dtype's lowest value for max
    pooling, with zeros for sums."""
    if kind == "max":
        fill = -np.inf if x4.dtype.kind == "f" else np.iinfo(x4.dtype).min
    else:
        fill = 0
    width = [(0, 0)] * 4
    for i, a in enumerate(axes):
        reach = (out_hw[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1  # padded pixels the windows cover
        width[a] = (pads[i], max(reach - pads[i] - x4.shape[a], 0))
    return np.pad(x4, width, constant_values=fill) if any(w != (0, 0) for w in width) else x4


def pool_windows(x4: np.ndarray, axes, k, s, d, pads: Sequence[int], out_hw, kind: str, *,
                 divisors: Optional[np.ndarray] = None, backend: str = "auto",
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Max (``kind="max"``) or sum (``"sum"``) over each dilated window of a 4-d array; ``pads`` is
    (top, left, bottom, right). A sum is divided by ``divisors`` (broadcast to ``out_hw``) when given.

    float32 runs the C loops (fastpoint/ops/_c.py) unless ``backend="numpy"``: the NumPy code below is
    the reference they are tested against (equal for max, and for sums taken in the same tap order)."""
    if 0 in out_hw or 0 in x4.shape:
        shape = list(x4.shape)
        shape[axes[0]], shape[axes[1]] = out_hw
        return np.empty(shape, x4.dtype) if out is None else out
    if _c.use_c(backend, x4.dtype):
        layout = "NCHW" if tuple(axes) == (2, 3) else "NHWC"
        kind_c = "max" if kind == "max" else "mean"
        ones = np.ones(tuple(out_hw), np.float32) if kind_c == "mean" and divisors is None else divisors
        y = _c.pool2d(x4, layout, k, s, d, pads, out_hw, kind_c, ones, out)
        if y is not None:
            return y
    xp = _pad_windows(x4, axes, k, s, d, pads, out_hw, kind)
    y = reduce_windows(xp, axes, k, s, out_hw, np.maximum if kind == "max" else np.add, d)
    if divisors is not None:
        div = np.asarray(divisors, y.dtype)
        y /= div if tuple(axes) == (2, 3) else div[..., None]
    if out is not None:
        np.copyto(out, y)
        return out
    return y


def max_windows_with_indices(x4: np.ndarray, axes, k, s, d, pads: Sequence[int],
                             out_hw) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`pool_windows` for max with the argmax of each window as a flat index into its (H, W) plane
    (``h * W + w``, PyTorch's ``return_indices``); the first maximum wins, a NaN over any number."""
    ha, wa = axes
    width = x4.shape[wa]
    shape = [1] * 4
    shape[ha] = out_hw[0]
    rows = (np.arange(out_hw[0]) * s[0] - pads[0]).reshape(shape)
    shape[ha], shape[wa] = 1, out_hw[1]
    cols = (np.arange(out_hw[1]) * s[1] - pads[1]).reshape(shape)
    best = idx = None
    for i, j, view in _window_views(_pad_windows(x4, axes, k, s, d, pads, out_hw, "max"), axes, k, s, out_hw, d):
        tap = np.broadcast_to((rows + i * d[0]) * width + (cols + j * d[1]), view.shape)
        if best is None:
            best, idx = view.copy(), tap.astype(np.int64)
            continue
        take = view > best
        if view.dtype.kind == "f":
            take |= np.isnan(view)
        np.copyto(best, view, where=take)
        np.copyto(idx, tap, where=take)
    return best, idx


def _out_hw(x4, axes, k, s, d, p, ceil_mode) -> Tuple[int, int]:
    out = []
    for i, name in enumerate(("height", "width")):
        size = x4.shape[axes[i]]
        n = pool_out_size(size, k[i], s[i], d[i], p[i], p[i], ceil_mode)
        if n <= 0:
            raise ValueError(f"kernel_size {k[i]} (dilation {d[i]}) is larger than the padded {name} "
                             f"{size}+2*{p[i]} of x shape {tuple(x4.shape)}")
        out.append(n)
    return out[0], out[1]


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def max_pool2d(x, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
               dilation: IntOrPair = 1, ceil_mode: bool = False, return_indices: bool = False, *,
               layout: str = "NCHW", backend: str = "auto"):
    """Maximum over each ``kernel_size`` window, as ``torch.nn.functional.max_pool2d``; with
    ``return_indices`` also each maximum's int64 index ``h * W + w`` in its plane. ``backend``: "auto"
    (C loops for float32), "c" or "numpy" (the reference)."""
    x4, batched = prepare_image("x", x, layout)
    k = pair("kernel_size", kernel_size, 1)
    s = k if stride is None else pair("stride", stride, 1)
    p = pair("padding", padding, 0)
    d = pair("dilation", dilation, 1)
    if any(p[i] > ((k[i] - 1) * d[i] + 1) // 2 for i in range(2)):
        raise ValueError(f"padding {padding!r} must be at most half of the dilated kernel_size {kernel_size!r} "
                         f"(dilation {dilation!r}), as in PyTorch")
    ceil_mode = _check_bool("ceil_mode", ceil_mode)
    axes = spatial_axes(layout)
    out_hw = _out_hw(x4, axes, k, s, d, p, ceil_mode)
    pads = (p[0], p[1], p[0], p[1])
    if _check_bool("return_indices", return_indices):
        out, idx = max_windows_with_indices(x4, axes, k, s, d, pads, out_hw)
        return (out, idx) if batched else (out[0], idx[0])
    out = pool_windows(x4, axes, k, s, d, pads, out_hw, "max", backend=backend)
    return out if batched else out[0]


def avg_pool2d(x, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Optional[int] = None, *,
               layout: str = "NCHW", backend: str = "auto") -> np.ndarray:
    """Mean over each ``kernel_size`` window, as ``torch.nn.functional.avg_pool2d``; ``backend`` as for
    :func:`max_pool2d`."""
    x4, batched = prepare_image("x", x, layout)
    k, s, p = pool_params(kernel_size, stride, padding)
    ceil_mode = _check_bool("ceil_mode", ceil_mode)
    count_include_pad = _check_bool("count_include_pad", count_include_pad)
    if divisor_override is not None and (isinstance(divisor_override, (bool, np.bool_)) or not isinstance(
            divisor_override, (int, np.integer)) or divisor_override == 0):
        raise ValueError(f"divisor_override must be a non-zero int or None, got {divisor_override!r}")
    axes = spatial_axes(layout)
    d = (1, 1)
    out_hw = _out_hw(x4, axes, k, s, d, p, ceil_mode)
    if divisor_override is not None:
        counts = np.full(out_hw, divisor_override, x4.dtype)
    else:
        rows, cols = (window_counts(x4.shape[axes[i]], k[i], s[i], 1, p[i], p[i], out_hw[i], count_include_pad)
                      for i in range(2))
        counts = (rows[:, None] * cols[None, :]).astype(x4.dtype)
    out = pool_windows(x4, axes, k, s, d, (p[0], p[1], p[0], p[1]), out_hw, "sum", divisors=counts, backend=backend)
    return out if batched else out[0]
