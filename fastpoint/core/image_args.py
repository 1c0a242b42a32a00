"""Argument checks shared by the image operations that are not convolutions (pooling, upsampling).

They follow the conv2d discipline: a 3-d input is an unbatched image, float32/float64 only, and every
error names the argument and the shapes involved.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .spec import DTYPES, _pair, as_array, check_float_dtype, check_layout


def prepare_image(name: str, x, layout: str) -> Tuple[np.ndarray, bool]:
    """Return ``x`` as a 4-d array (no copy) and whether it was batched."""
    layout = check_layout(layout)
    x = as_array(name, x)
    check_float_dtype(name, x)
    if x.dtype not in DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype} with shape {x.shape}")
    shape = "(N, C, H, W) or (C, H, W)" if layout == "NCHW" else "(N, H, W, C) or (H, W, C)"
    if x.ndim == 3:
        return x[None], False
    if x.ndim == 4:
        return x, True
    raise ValueError(f"{name} must be {shape} for layout {layout}, got {x.ndim}-d shape {x.shape}")


def spatial_axes(layout: str) -> Tuple[int, int]:
    """Axes of H and W in a 4-d array of this layout."""
    return (2, 3) if layout == "NCHW" else (1, 2)


def pair(name: str, value, minimum: int) -> Tuple[int, int]:
    return _pair(name, value, minimum)
