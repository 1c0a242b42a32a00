"""The C backend's lowered GEMMs (``csrc/lowered/``): conv1d in NCL and the K == stride transposed conv.

conv1d layers reach them through :class:`Conv1dGemmBackend`, which stands in for the C backend in a
``Conv1d`` (the layer's packing and runs go through it; layers it does not cover go to the C backend
unchanged); ``ConvTranspose2d`` calls :func:`deconv_pack` / :func:`deconv_run` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..core.callplan import pack_each_call
from ..core.spec import ConvSpec, LayerSpec
from ..core.threads import get_num_threads
from .c import CBackend, _aligned_bytes, _check, _ffi, _lib, _problem, _problem_for, _ptr


@dataclass(frozen=True)
class LoweredPacked:
    buffer: np.ndarray


def conv1d_gemm_applies(layer: LayerSpec) -> bool:
    """float32, NCL, groups 1, K > 1 (K = 1 is conv1x1's GEMM already) and strided: measured against the 2-d
    direct kernels on the one-row view (docs/conv1d-transposed.md), the GEMM wins 2.75x on wav2vec2's
    512->512 K3 s2 and 1.15x on its 1->512 K10 s5 stem, and loses 10 % at stride 1 (WaveNet, ECG)."""
    return (_lib is not None and layer.dtype == np.float32 and layer.layout == "NCHW" and layer.groups == 1
            and layer.kh == 1 and layer.kw > 1 and layer.stride[1] > 1
            and layer.act is None)  # activations beyond ReLU: the 2-d kernels' fused epilogue (docs/epilogues.md)


class Conv1dGemmBackend(CBackend):
    """The C backend with conv1d's GEMM for the layers :func:`conv1d_gemm_applies` accepts."""

    def prepack(self, layer: LayerSpec, weight: np.ndarray):
        if not conv1d_gemm_applies(layer):
            return super().prepack(layer, weight)
        p = _problem(layer)
        buf = _aligned_bytes(int(_lib.fp_conv1d_gemm_packed_bytes(p)))
        _check(_lib.fp_conv1d_gemm_pack(p, _ptr(weight, "float[]"), _ptr(buf, "char[]")))
        return LoweredPacked(buf)

    def run(self, spec: ConvSpec, packed, x: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> None:
        if not isinstance(packed, LoweredPacked):
            return super().run(spec, packed, x, bias, out)
        _check(_lib.fp_conv1d_gemm_f32(_problem_for(spec), _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"),
                                       _ptr(bias, "float[]"), _ptr(out, "float[]")))

    def bind(self, spec: ConvSpec, packed, bias: Optional[np.ndarray]):
        if not isinstance(packed, LoweredPacked):
            return super().bind(spec, packed, bias)

        def runner(x: np.ndarray, out: np.ndarray) -> None:
            self.run(spec, packed, x, bias, out)

        return runner

    def bind_once(self, spec: ConvSpec, check_finite: bool):
        """One-shot calls: the C backend's (csrc/oneshot.c), or conv1d's GEMM packed on each call."""
        if not conv1d_gemm_applies(spec.layer):
            return super().bind_once(spec, check_finite)
        return pack_each_call(self, spec, check_finite)

    def kernel_name(self, spec: ConvSpec) -> str:
        """The gemm row the lowered GEMM runs (the 1x1 GEMM's choice: the same table look-up)."""
        if conv1d_gemm_applies(spec.layer):
            p = _problem(spec.layer, spec)
            p.kh = p.kw = 1
            p.pad_top = p.pad_left = 0
            return _ffi.string(_lib.fp_kernel_name(p, 0)).decode()
        return super().kernel_name(spec)


def _deconv_problem(cin: int, cout: int, kh: int, kw: int, layout: str, relu: bool, n: int = 0, h: int = 0,
                    w: int = 0):
    p = _ffi.new("fp_conv_problem *")
    p.cin, p.cout, p.kh, p.kw = cin, cout, kh, kw
    p.stride_h, p.stride_w = kh, kw
    p.dil_h = p.dil_w = p.groups = 1
    p.layout = 0 if layout == "NCHW" else 1
    p.relu = int(relu)
    p.n, p.h, p.w, p.oh, p.ow = n, h, w, h * kh, w * kw
    p.num_threads = get_num_threads()
    return p


def deconv_pack(weight: np.ndarray, layout: str) -> LoweredPacked:
    """Pack a C-contiguous ``(Cin, Cout, KH, KW)`` float32 weight for the K == stride GEMM (packed in C
    straight from this layout, rows as fastpoint.h says)."""
    cin, cout, kh, kw = weight.shape
    p = _deconv_problem(cin, cout, kh, kw, layout, False)
    buf = _aligned_bytes(int(_lib.fp_deconv_gemm_packed_bytes(p)))
    _check(_lib.fp_deconv_gemm_pack(p, _ptr(weight, "float[]"), _ptr(buf, "char[]")))
    return LoweredPacked(buf)


def deconv_bias_rows(bias: Optional[np.ndarray], kh: int, kw: int, layout: str) -> Optional[np.ndarray]:
    """The bias per GEMM row: each output channel's value for each of its KH*KW rows."""
    if bias is None:
        return None
    return np.repeat(bias, kh * kw) if layout == "NCHW" else np.tile(bias, kh * kw)


def deconv_run(packed: LoweredPacked, x: np.ndarray, cout: int, kh: int, kw: int, layout: str, relu: bool,
               bias_rows: Optional[np.ndarray], out: np.ndarray) -> None:
    """``out`` (C-contiguous, 4-d) = the transposed convolution of the C-contiguous float32 4-d ``x``."""
    n, cin, h, w = x.shape if layout == "NCHW" else (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
    p = _deconv_problem(cin, cout, kh, kw, layout, relu, n, h, w)
    _check(_lib.fp_deconv_gemm_f32(p, _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"), _ptr(bias_rows, "float[]"),
                                   _ptr(out, "float[]")))


def deconv_scatter_applies(layer) -> bool:
    """The general transposed conv's scatter-add GEMM (``csrc/lowered/deconv_scatter.c``): C built, float32
    is checked by the caller, groups 1 (a grouped layer is a block-diagonal GEMM: the phases run it)."""
    return _lib is not None and layer.groups == 1


def deconv_scatter_run(packed: LoweredPacked, x: np.ndarray, layer, out: np.ndarray,
                       bias: Optional[np.ndarray]) -> None:
    """``out`` = the transposed convolution of ``x`` (C-contiguous float32, 4-d, the layer's layout) on weights
    packed by ``deconv_pack(weight, "NCHW")``; ``bias`` one value per output channel or None."""
    nhwc = layer.layout == "NHWC"
    n, cin, h, w = (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if nhwc else x.shape
    oh, ow = (out.shape[1], out.shape[2]) if nhwc else out.shape[2:]
    p = _ffi.new("fp_conv_problem *")
    p.n, p.cin, p.h, p.w, p.cout, p.kh, p.kw, p.oh, p.ow = n, cin, h, w, layer.cout, layer.kh, layer.kw, oh, ow
    (p.stride_h, p.stride_w), (p.pad_top, p.pad_left) = layer.stride, layer.padding
    (p.dil_h, p.dil_w), p.groups = layer.dilation, 1
    p.layout, p.relu, p.num_threads = int(nhwc), int(layer.relu), get_num_threads()
    _check(_lib.fp_deconv_scatter_f32(p, _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"), _ptr(bias, "float[]"),
                                      _ptr(out, "float[]")))
