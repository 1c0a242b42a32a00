"""The NumPy reference backend: short and obviously right; every other backend is tested against it.

Zero-pad the input, then for each kernel tap take the strided view of the input that the tap sees
and add ``W[:, :, ky, kx] @ view`` (a batched matmul over groups).  NHWC goes through NCHW.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.spec import ConvSpec, LayerSpec


def conv2d_nchw(x: np.ndarray, weight: np.ndarray, spec: ConvSpec) -> np.ndarray:
    L = spec.layer
    g, co_g, ci_g = L.groups, L.cout_g, L.cin_g
    xp = np.pad(x, ((0, 0), (0, 0), (spec.pad_top, spec.pad_bottom), (spec.pad_left, spec.pad_right)))
    (sh, sw), (dh, dw) = L.stride, L.dilation
    w = weight.reshape(g, co_g, ci_g, L.kh, L.kw)
    y = np.zeros((spec.n, g, co_g, spec.oh * spec.ow), dtype=x.dtype)
    for ky in range(L.kh):
        for kx in range(L.kw):
            rows = slice(ky * dh, ky * dh + (spec.oh - 1) * sh + 1, sh)
            cols = slice(kx * dw, kx * dw + (spec.ow - 1) * sw + 1, sw)
            view = xp[:, :, rows, cols].reshape(spec.n, g, ci_g, spec.oh * spec.ow)
            y += np.matmul(w[:, :, :, ky, kx], view)
    return y.reshape(spec.n, L.cout, spec.oh, spec.ow)


class NumpyBackend:
    name = "numpy"

    def available(self) -> bool:
        return True

    def why_unavailable(self) -> Optional[str]:
        return None

    def prepack(self, layer: LayerSpec, weight: np.ndarray) -> np.ndarray:
        return weight

    def run(self, spec: ConvSpec, packed: np.ndarray, x: np.ndarray, bias: Optional[np.ndarray],
            out: np.ndarray) -> None:
        nhwc = spec.layer.layout == "NHWC"
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf propagate silently, as in the kernels
            y = conv2d_nchw(x.transpose(0, 3, 1, 2) if nhwc else x, packed, spec)
        if bias is not None:
            y += bias[:, None, None]
        if spec.layer.relu:
            np.maximum(y, 0, out=y)  # np.maximum keeps NaN, as PyTorch's relu does
        out[...] = y.transpose(0, 2, 3, 1) if nhwc else y
