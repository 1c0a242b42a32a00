"""Argument checking for transposed convolution, and its sub-pixel decomposition.

A transposed convolution scatters ``x[ci, iy, ix] * w[ci, co, ky, kx]`` to the output pixel
``(iy*s - p + ky*d, ...)``.  Along one axis, the output rows ``oy`` with the same ``(oy + p) mod s`` (a
*phase*) are reached by the same taps, those with ``ky*d = oy + p (mod s)``, from consecutive input
rows: each phase is an ordinary stride-1 correlation of the input with a flipped sub-kernel of those
taps (dilation ``d / gcd(s, d)``), whose outputs are every s-th output row.  2-d: the product of the two
axes' phases, ``s_h * s_w`` convolutions.  No zero-stuffed input, no multiply by a zero, no col2im.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .spec import _pair, as_array, check_activation, check_float_dtype, check_layout, check_weight_groups

_MAX_ELEMENTS = np.iinfo(np.intp).max // 8  # an output larger cannot be indexed in bytes (np.iinfo: 40 us a call)


@dataclass(frozen=True)
class TransposeLayer:
    """What the weight and the arguments fix (weight ``(Cin, Cout/groups, KH, KW)``)."""

    cin: int
    cout: int
    kh: int
    kw: int
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    output_padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    layout: str
    relu: bool

    def out_size(self, h: int, w: int) -> Tuple[int, int]:
        """PyTorch's ``(H-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1`` per axis."""
        return tuple(  # type: ignore[return-value]
            (i - 1) * s - 2 * p + d * (k - 1) + op + 1
            for i, s, p, d, k, op in zip((h, w), self.stride, self.padding, self.dilation, (self.kh, self.kw),
                                         self.output_padding))

    @property
    def is_gemm(self) -> bool:
        """K == stride, no padding: disjoint 1x1 phases, the whole layer one GEMM (U-Net's 2x2 s2)."""
        return ((self.kh, self.kw) == self.stride and self.padding == (0, 0) and self.output_padding == (0, 0)
                and self.dilation == (1, 1) and self.groups == 1)


def make_transpose_layer(weight: np.ndarray, stride, padding, output_padding, groups, dilation, layout,
                         activation) -> TransposeLayer:
    layout = check_layout(layout)
    relu = check_activation(activation)
    groups = check_weight_groups(weight, groups, "(Cin, Cout/groups, KH, KW)", "input channels", "Cin",
                                 " for a transposed convolution")
    cin, cout_g, kh, kw = (int(s) for s in weight.shape)
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int or a pair for a transposed convolution, got {padding!r}")
    stride = _pair("stride", stride, 1)
    dilation = _pair("dilation", dilation, 1)
    padding = _pair("padding", padding, 0)
    output_padding = _pair("output_padding", output_padding, 0)
    for axis in range(2):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(f"output_padding {output_padding} must be smaller than the stride {stride} or the "
                             f"dilation {dilation} (PyTorch's rule), per axis")
    return TransposeLayer(cin, cout_g * groups, kh, kw, stride, padding, output_padding, dilation, groups, layout,
                          relu)


def prepare_transpose_input(x, layer: TransposeLayer, w_shape) -> Tuple[np.ndarray, bool, Tuple[int, int]]:
    """x as a 4-d array in the layer's layout (a view), whether it was batched, and the output size."""
    x = as_array("x", x)
    check_float_dtype("x", x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype} with shape {x.shape}")
    hint = "(N, C, H, W) or (C, H, W)" if layer.layout == "NCHW" else "(N, H, W, C) or (H, W, C)"
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be {hint} for layout {layer.layout}, got {x.ndim}-d shape {x.shape}")
    batched = x.ndim == 4
    x4 = x if batched else x[None]
    n, c, h, w = x4.shape if layer.layout == "NCHW" else (x4.shape[0], x4.shape[3], x4.shape[1], x4.shape[2])
    if c != layer.cin:
        raise ValueError(f"x has {c} channels (shape {x.shape}, layout {layer.layout} {hint}) but weight shape "
                         f"{tuple(w_shape)} (Cin, Cout/groups, KH, KW) expects {layer.cin}")
    oh, ow = layer.out_size(h, w)
    if oh < 1 or ow < 1:
        raise ValueError(f"the output would be empty: {oh}x{ow} from x shape {x.shape} with weight {tuple(w_shape)}, "
                         f"stride {layer.stride}, padding {layer.padding}, dilation {layer.dilation}, "
                         f"output_padding {layer.output_padding}")
    if max(n, 1) * layer.cout * oh * ow > _MAX_ELEMENTS:
        raise ValueError(f"the output ({n}, {layer.cout}, {oh}, {ow}) would have more elements than an array can "
                         f"hold (x shape {x.shape})")
    return x4, batched, (oh, ow)


# --------------------------------------------------------------------------------------------------
# the sub-pixel decomposition, one axis at a time


@dataclass(frozen=True)
class AxisPhase:
    """The output rows ``first, first + s, ...`` of one axis: a stride-1 correlation over ``taps``."""

    first: int  # first output row of the phase
    taps: Tuple[int, ...]  # kernel taps, in correlation order (the flipped sub-kernel)
    dilation: int  # of the sub-kernel
    offset: int  # input row read by output t of the phase and tap taps[0]: t + offset

    def rows(self, out: int, stride: int) -> int:
        return len(range(self.first, out, stride))

    def input_window(self, count: int, size: int) -> Optional[Tuple[int, int, int, int]]:
        """(lo, hi, pad_before, pad_after): the phase's ``count`` outputs read input rows [lo, hi) with that
        zero padding around them; None when every tap falls outside the input (bias-only outputs)."""
        if not self.taps or count == 0:
            return None
        last = count - 1 + self.offset + (len(self.taps) - 1) * self.dilation
        lo, hi = max(0, self.offset), min(size, last + 1)
        if hi <= lo:
            return None
        return lo, hi, lo - self.offset, last + 1 - hi


def valid_outputs(phase: AxisPhase, count: int, size: int) -> Tuple[int, int]:
    """Outputs [lo, hi) of a one-tap phase that read the input (output t reads row t + offset); the
    others are bias only.  Such phases run unpadded: the C backend's 1x1 GEMM takes no padding."""
    lo, hi = max(0, -phase.offset), min(count, size - phase.offset)
    return lo, max(lo, hi)


def axis_phases(k: int, s: int, p: int, d: int) -> List[AxisPhase]:
    """The ``s`` phases of one axis (some with no taps when k < s: bias-only rows)."""
    phases = []
    for residue in range(s):
        first = (residue - p) % s
        taps = [t for t in range(k) if (t * d) % s == residue]
        if not taps:
            phases.append(AxisPhase(first, (), 1, 0))
            continue
        last = taps[-1]  # the flipped sub-kernel starts at the largest tap
        phases.append(AxisPhase(first, tuple(reversed(taps)), d // math.gcd(s, d), (first + p - last * d) // s))
    return phases


def correlation_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """A ``(Cin, Cout/groups, KH, KW)`` transposed-conv weight as a ``(Cout, Cin/groups, KH, KW)`` conv weight
    (a transposed view, not flipped: each phase takes its taps in flipped order, ``sub_weight``)."""
    cin, cout_g, kh, kw = weight.shape
    w = weight.reshape(groups, cin // groups, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)
    return w.reshape(groups * cout_g, cin // groups, kh, kw)


def sub_weight(conv_weight: np.ndarray, taps_h: Tuple[int, ...], taps_w: Tuple[int, ...]) -> np.ndarray:
    """The ``(Cout, Cin/groups, len(taps_h), len(taps_w))`` correlation weight of one 2-d phase (one copy)."""
    return np.ascontiguousarray(conv_weight[:, :, np.array(taps_h)[:, None], np.array(taps_w)])
