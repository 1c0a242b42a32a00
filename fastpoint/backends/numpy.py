"""The NumPy reference backend: short and obviously right; every other backend is tested against it.

Zero-pad the input, then for each kernel tap take the strided view of the input that the tap sees
and add ``W[:, :, ky, kx] @ view`` (a batched matmul over groups).  NHWC goes through NCHW.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.epilogue import apply_reference
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
            out: np.ndarray, residual: Optional[np.ndarray] = None) -> None:
        """``out = act(conv(x) + bias + residual)``: the epilogue applied after the whole convolution."""
        nhwc = spec.layer.layout == "NHWC"
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf propagate silently, as in the kernels
            y = conv2d_nchw(x.transpose(0, 3, 1, 2) if nhwc else x, packed, spec)
            if bias is not None:
                y += bias[:, None, None]
            if residual is not None:
                y += residual.transpose(0, 3, 1, 2) if nhwc else residual
        if spec.layer.relu:
            np.maximum(y, 0, out=y)  # np.maximum keeps NaN, as PyTorch's relu does
        apply_reference(y, spec.layer.act, 1)
        out[...] = y.transpose(0, 2, 3, 1) if nhwc else y


def conv_transpose2d_nchw(x: np.ndarray, weight: np.ndarray, stride, padding, output_padding, dilation,
                          groups: int) -> np.ndarray:
    """Transposed convolution as PyTorch defines it, written as the scatter-add it is.

    Every input pixel ``(iy, ix)`` adds ``x[ci, iy, ix] * weight[ci, co, ky, kx]`` to the output pixel
    ``(iy*sh - ph + ky*dh, ix*sw - pw + kx*dw)``; outputs past the image (``padding`` crops them, and
    ``output_padding`` adds rows/columns at the bottom/right that only the bias reaches) get nothing.
    ``weight`` is ``(Cin, Cout/groups, KH, KW)``; no bias or activation here.
    """
    n, cin, h, w = x.shape
    g, (sh, sw), (ph, pw), (oph, opw), (dh, dw) = groups, stride, padding, output_padding, dilation
    _, cout_g, kh, kw = weight.shape
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1 + oph, (w - 1) * sw + dw * (kw - 1) + 1 + opw
    y = np.zeros((n, g, cout_g, full_h, full_w), dtype=x.dtype)
    xg = x.reshape(n, g, cin // g, h * w)
    wg = weight.reshape(g, cin // g, cout_g, kh, kw)
    for ky in range(kh):
        for kx in range(kw):
            part = np.matmul(wg[:, :, :, ky, kx].transpose(0, 2, 1), xg).reshape(n, g, cout_g, h, w)
            y[..., ky * dh:ky * dh + (h - 1) * sh + 1:sh, kx * dw:kx * dw + (w - 1) * sw + 1:sw] += part
    return y.reshape(n, g * cout_g, full_h, full_w)[:, :, ph:full_h - ph, pw:full_w - pw]


def conv1d_ncl(x: np.ndarray, weight: np.ndarray, stride: int, pads, dilation: int, groups: int) -> np.ndarray:
    """1-d convolution read off its definition: ``y[co, o] = sum x[ci, o*stride - left + k*dilation] w[co, ci, k]``.

    ``x`` is ``(N, Cin, L)``, ``weight`` ``(Cout, Cin/groups, K)``, ``pads`` the (left, right) zero padding.
    """
    n, cin, length = x.shape
    cout, cin_g, k = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), pads))
    out_len = (length + pads[0] + pads[1] - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((n, cout, out_len), dtype=x.dtype)
    cout_g = cout // groups
    for gi in range(groups):
        xs = xp[:, gi * cin_g:(gi + 1) * cin_g]
        for tap in range(k):
            start = tap * dilation
            view = xs[:, :, start:start + (out_len - 1) * stride + 1:stride]  # (N, cin_g, out_len)
            wg = weight[gi * cout_g:(gi + 1) * cout_g, :, tap]
            y[:, gi * cout_g:(gi + 1) * cout_g] += np.einsum("oc,ncl->nol", wg, view)
    return y
