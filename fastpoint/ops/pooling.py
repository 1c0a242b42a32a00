"""Max and average pooling with PyTorch's ``max_pool2d`` / ``avg_pool2d`` semantics.

* ``x`` is ``(N, C, H, W)`` (``layout="NCHW"``) or ``(N, H, W, C)`` (``"NHWC"``), or unbatched 3-d;
  float32 or float64; the result has the input's layout and dtype.
* ``kernel_size`` int or pair; ``stride`` defaults to ``kernel_size``; ``padding`` int or pair, at most
  half the kernel (as in PyTorch); ``ceil_mode`` is always False (floor of the output size).
* Max pooling pads with -inf (padding never wins) and propagates NaN; average pooling pads with zeros
  and divides by the full window (``count_include_pad=True``) or by the real pixels in the window.

The computation loops over the KH*KW taps and reduces whole strided views of the padded input at once,
so the work is a few vectorized passes over memory whatever the image size (pooling is memory-bound;
a compiled loop would not be faster by much for the 2x2 and 3x3 windows networks use).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from ..core.image_args import pair, prepare_image, spatial_axes

IntOrPair = Union[int, Tuple[int, int]]


def pool_params(kernel_size, stride, padding) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """Validate and normalize pooling hyper-parameters (also used by :mod:`fastpoint.dask`)."""
    k = pair("kernel_size", kernel_size, 1)
    s = k if stride is None else pair("stride", stride, 1)
    p = pair("padding", padding, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {padding!r} must be at most half of kernel_size {kernel_size!r} (as in PyTorch)")
    return k, s, p


def _out_size(name: str, x_shape, size: int, k: int, s: int, p: int) -> int:
    if size + 2 * p < k:
        raise ValueError(f"kernel_size {k} is larger than the padded {name} {size}+2*{p} of x shape {tuple(x_shape)}")
    return (size + 2 * p - k) // s + 1


def reduce_windows(xp: np.ndarray, axes, k, s, out_hw, op) -> np.ndarray:
    """Reduce the KH*KW strided views of ``xp`` (already padded) with ``op`` (np.maximum or np.add).

    ``axes`` are the (height, width) axes of the 4-d ``xp``, ``k`` and ``s`` the window and stride pairs,
    ``out_hw`` the output size.  The pooling functions and :mod:`fastpoint.dask` (on each padded block) use it.
    """
    ha, wa = axes
    out = None
    for i in range(k[0]):
        for j in range(k[1]):
            index = [slice(None)] * 4
            index[ha] = slice(i, i + s[0] * (out_hw[0] - 1) + 1, s[0])
            index[wa] = slice(j, j + s[1] * (out_hw[1] - 1) + 1, s[1])
            view = xp[tuple(index)]
            if out is None:
                out = np.array(view, copy=True, order="C")
            else:
                op(out, view, out=out)
    return out


def _pad(x: np.ndarray, axes, p, value: float) -> np.ndarray:
    if p == (0, 0):
        return x
    width = [(0, 0)] * 4
    width[axes[0]] = (p[0], p[0])
    width[axes[1]] = (p[1], p[1])
    return np.pad(x, width, mode="constant", constant_values=value)


def max_pool2d(x, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0, *,
               layout: str = "NCHW") -> np.ndarray:
    """Maximum over each ``kernel_size`` window, as ``torch.nn.functional.max_pool2d``."""
    x4, batched = prepare_image("x", x, layout)
    k, s, p = pool_params(kernel_size, stride, padding)
    axes = spatial_axes(layout)
    out_hw = tuple(_out_size(n, x4.shape, x4.shape[a], k[i], s[i], p[i]) for i, (n, a) in
                   enumerate((("height", axes[0]), ("width", axes[1]))))
    out = reduce_windows(_pad(x4, axes, p, -np.inf), axes, k, s, out_hw, np.maximum)
    return out if batched else out[0]


def avg_pool2d(x, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0, *,
               count_include_pad: bool = True, layout: str = "NCHW") -> np.ndarray:
    """Mean over each ``kernel_size`` window, as ``torch.nn.functional.avg_pool2d`` (ceil_mode=False)."""
    x4, batched = prepare_image("x", x, layout)
    k, s, p = pool_params(kernel_size, stride, padding)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    axes = spatial_axes(layout)
    out_hw = tuple(_out_size(n, x4.shape, x4.shape[a], k[i], s[i], p[i]) for i, (n, a) in
                   enumerate((("height", axes[0]), ("width", axes[1]))))
    out = reduce_windows(_pad(x4, axes, p, 0.0), axes, k, s, out_hw, np.add)
    if count_include_pad or p == (0, 0):
        out /= x4.dtype.type(k[0] * k[1])
    else:
        ones = np.ones((1, 1, x4.shape[axes[0]], x4.shape[axes[1]]), dtype=x4.dtype)
        counts = reduce_windows(_pad(ones, (2, 3), p, 0.0), (2, 3), k, s, out_hw, np.add)[0, 0]
        out /= counts if layout == "NCHW" else counts[:, :, None]
    return out if batched else out[0]
