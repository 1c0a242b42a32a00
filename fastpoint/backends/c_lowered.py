"""The C backend's conv1d kernels and lowered GEMMs: the direct conv1d (``csrc/conv1d/``), conv1d in NCL as a
GEMM and the transposed convs (``csrc/lowered/``).

conv1d layers reach them through :class:`Conv1dGemmBackend`, which stands in for the C backend in a
``Conv1d`` (the layer's packing and runs go through it; layers it does not cover go to the C backend
unchanged); ``ConvTranspose2d`` calls :func:`deconv_pack` / :func:`deconv_run` itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..core.spec import ConvSpec, LayerSpec
from ..core.threads import get_num_threads
from . import kernel_table
from .c import CBackend, _aligned_bytes, _check, _ffi, _lib, _problem, _problem_for, _ptr


@dataclass(frozen=True)
class LoweredPacked:
    buffer: np.ndarray


@dataclass(frozen=True)
class Conv1dDirectPacked:
    buffer: np.ndarray


# A strided layer with at most this many input channels runs the direct conv1d on the row split into its
# phases (a copy of the input per call, cheap for a stem).  Measured on the one-row view (alternating, thread
# CPU time, 1 thread, loaded box): wav2vec2's 1->512 K10 s5 stem 1.3x the lowered GEMM; wider strided layers
# keep the GEMM.  At stride 1 the direct conv1d runs the layers whose window (Cin rows of NR outputs plus the
# taps' span) fits in L1, where it serves every Cout block of a run: WaveNet 1.28x and ECG 1.11x the 2-d
# direct kernels (docs/conv1d-transposed.md).
DIRECT_STRIDED_MAX_CIN = 16


def _conv1d_c_case(layer: LayerSpec) -> bool:
    """float32, NCL, groups 1, K > 1 (K = 1 is conv1x1's GEMM already), ReLU at most (activations beyond it:
    the 2-d kernels' fused epilogue, docs/epilogues.md)."""
    return (_lib is not None and layer.dtype == np.float32 and layer.layout == "NCHW" and layer.groups == 1
            and layer.kh == 1 and layer.kw > 1 and layer.act is None)


def conv1d_direct_applies(layer: LayerSpec) -> bool:
    """The direct conv1d blocked for one long row (csrc/conv1d/): strided stems with few input channels
    (wav2vec2's 1->512 K10 s5), stride-1 layers whose window fits in L1 (WaveNet, ECG); every layer of the C
    case while a conv1d row is forced (tests); none while rows of other families are."""
    if not _conv1d_c_case(layer):
        return False
    choice = _lib.fp_conv1d_direct_choice()
    if choice != 1:
        return choice == 2
    if layer.stride[1] > 1:
        return layer.cin <= DIRECT_STRIDED_MAX_CIN
    return layer.cin * _direct_window_floats(layer) * 4 <= _l1_bytes()


def _direct_window_floats(layer: LayerSpec) -> int:
    """Floats per input channel of one window of the direct conv1d at stride 1 (the tile's NR outputs and the
    taps' span), which serves every Cout block of a run from L1."""
    return _direct_nr() + layer.dilation[1] * (layer.kw - 1) + 1


@functools.cache
def _direct_nr() -> int:
    name = _ffi.string(_lib.fp_conv1d_direct_kernel_name()).decode()
    return next(k.tile[1] for k in kernel_table.kernels() if k.name == name)


@functools.cache
def _l1_bytes() -> int:
    return int(_lib.fp_cache_size(1))


def conv1d_gemm_applies(layer: LayerSpec) -> bool:
    """Strided layers the direct conv1d leaves: measured against the 2-d direct kernels on the one-row view
    (docs/conv1d-transposed.md), the GEMM wins 2.75x on wav2vec2's 512->512 K3 s2."""
    return _conv1d_c_case(layer) and layer.stride[1] > 1 and not conv1d_direct_applies(layer)


class Conv1dGemmBackend(CBackend):
    """The C backend with conv1d's GEMM for the layers :func:`conv1d_gemm_applies` accepts."""

    def prepack(self, layer: LayerSpec, weight: np.ndarray):
        if conv1d_direct_applies(layer):
            p = _problem(layer)
            buf = _aligned_bytes(int(_lib.fp_conv1d_direct_packed_bytes(p)))
            _check(_lib.fp_conv1d_direct_pack(p, _ptr(weight, "float[]"), _ptr(buf, "char[]")))
            return Conv1dDirectPacked(buf)
        if not conv1d_gemm_applies(layer):
            return super().prepack(layer, weight)
        p = _problem(layer)
        buf = _aligned_bytes(int(_lib.fp_conv1d_gemm_packed_bytes(p)))
        _check(_lib.fp_conv1d_gemm_pack(p, _ptr(weight, "float[]"), _ptr(buf, "char[]")))
        return LoweredPacked(buf)

    def run(self, spec: ConvSpec, packed, x: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> None:
        if isinstance(packed, Conv1dDirectPacked):
            _check(_lib.fp_conv1d_direct_f32(_problem_for(spec), _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"),
                                             _ptr(bias, "float[]"), _ptr(out, "float[]")))
            return
        if not isinstance(packed, LoweredPacked):
            return super().run(spec, packed, x, bias, out)
        _check(_lib.fp_conv1d_gemm_f32(_problem_for(spec), _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"),
                                       _ptr(bias, "float[]"), _ptr(out, "float[]")))

    def bind(self, spec: ConvSpec, packed, bias: Optional[np.ndarray]):
        if not isinstance(packed, (LoweredPacked, Conv1dDirectPacked)):
            return super().bind(spec, packed, bias)

        def runner(x: np.ndarray, out: np.ndarray) -> None:
            self.run(spec, packed, x, bias, out)

        return runner

    def bind_once(self, spec: ConvSpec, check_finite: bool):
        """One-shot calls: the direct conv1d packing into this thread's scratch (as csrc/oneshot.c does), the C
        backend's, or conv1d's GEMM packed on each call."""
        if conv1d_direct_applies(spec.layer):
            return self._direct_once(spec, check_finite)
        if not conv1d_gemm_applies(spec.layer):
            return super().bind_once(spec, check_finite)
        return self._gemm_once(spec, check_finite)

    @staticmethod
    def _gemm_once(spec: ConvSpec, check_finite: bool):
        """conv1d's GEMM with the weights packed into this thread's scratch (fp_conv1d_gemm_once_f32) rather than
        a fresh packed buffer per call (a 3 MB one for wav2vec2's conv1: page faults each call)."""
        conv, from_buffer, null = _lib.fp_conv1d_gemm_once_f32, _ffi.from_buffer, _ffi.NULL

        def runner(x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> bool:
            _check(conv(_problem_for(spec), from_buffer("float[]", x), from_buffer("float[]", w),
                        null if bias is None else from_buffer("float[]", bias), from_buffer("float[]", out)))
            return check_finite and not (np.isfinite(w.max()) and np.isfinite(w.min()))

        return runner

    def once_runs_conv(self, spec: ConvSpec) -> bool:
        """The C backend's one-shot entry (bind_call) for the layers neither conv1d kernel takes."""
        return not (conv1d_direct_applies(spec.layer) or conv1d_gemm_applies(spec.layer))

    @staticmethod
    def _direct_once(spec: ConvSpec, check_finite: bool):
        conv, from_buffer, null, check = _lib.fp_conv1d_direct_once_f32, _ffi.from_buffer, _ffi.NULL, int(check_finite)

        def runner(x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> bool:
            code = conv(_problem_for(spec), from_buffer("float[]", x), from_buffer("float[]", w),
                        null if bias is None else from_buffer("float[]", bias), from_buffer("float[]", out), check)
            if code < 0:
                _check(code)
            return code == 1

        return runner

    def kernel_name(self, spec: ConvSpec) -> str:
        """The conv1d row of the direct conv1d, or the gemm row the lowered GEMM runs (the 1x1 GEMM's choice:
        the same table look-up)."""
        if conv1d_direct_applies(spec.layer):
            return _ffi.string(_lib.fp_conv1d_direct_kernel_name()).decode()
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


# The sub-pixel GEMM runs layers whose stride is at least this, or whose kernel is not a multiple of the stride
# (3x3 s2: its phases read 4, 2, 2 and 1 taps' rows of B, no zero multiplied); at stride 2 with K a multiple of it
# the scatter-add GEMM's summed-pair stores win.  Measured alternating, thread CPU, 1 thread, loaded box
# (scatter-add time / sub-pixel time, one-shot and prepacked): FCN-8s K16 s8 p4 21@32 2.09x / 2.04x, 3x3 s2 p1 op1
# 128->64@64 1.12x / 1.10x, K8 s4 p2 21@64 1.62x, 64->32 K8 s4 @32 1.14x, 64->32 K16 s8 @16 1.13x; K4 s2 p1 21@16
# 0.83x / 0.92x, 64@32 0.94x / 1.06x, DCGAN's 256->128@16 0.70x / 0.83x (its 2 MB weight gathered per call, the
# 17x17 blocks of a 16x16 input at padding 1).
SHUFFLE_MIN_STRIDE = 4


def deconv_shuffle_applies(layer) -> bool:
    """The sub-pixel GEMM (``csrc/lowered/deconv_shuffle.c``): K >= stride on both axes (every phase has a tap),
    a stride of :data:`SHUFFLE_MIN_STRIDE` or more or a K that is not a multiple of it, dilation 1, groups 1,
    NCHW, not the K == stride GEMM's layers (float32 and the C build are the caller's checks)."""
    (sh, sw), kh, kw = layer.stride, layer.kh, layer.kw
    return (_lib is not None and layer.groups == 1 and layer.layout == "NCHW" and layer.dilation == (1, 1)
            and kh >= sh and kw >= sw and not layer.is_gemm
            and (max(sh, sw) >= SHUFFLE_MIN_STRIDE or kh % sh != 0 or kw % sw != 0))


def deconv_shuffle_pack(weight: np.ndarray, layer) -> LoweredPacked:
    """Pack a C-contiguous ``(Cin, Cout, KH, KW)`` float32 weight for the sub-pixel GEMM."""
    p = deconv_scatter_problem(layer, (1, layer.cin, 1, 1), (1, layer.cout, 1, 1), 1)
    buf = _aligned_bytes(int(_lib.fp_deconv_shuffle_packed_bytes(p)))
    _check(_lib.fp_deconv_shuffle_pack(p, _ptr(weight, "float[]"), _ptr(buf, "char[]")))
    return LoweredPacked(buf)


def deconv_shuffle_run(packed: LoweredPacked, x: np.ndarray, layer, out: np.ndarray,
                       bias: Optional[np.ndarray]) -> None:
    """``out`` = the transposed convolution of ``x`` (C-contiguous float32 NCHW) by the sub-pixel GEMM; ``bias``
    one value per output channel or None."""
    p = deconv_scatter_problem(layer, x.shape, out.shape, get_num_threads())
    _check(_lib.fp_deconv_shuffle_f32(p, _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"), _ptr(bias, "float[]"),
                                      _ptr(out, "float[]")))


def deconv_shuffle_once(problem, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
                        out: np.ndarray) -> None:
    """The one-shot sub-pixel GEMM: as :func:`deconv_scatter_once` (``bias`` per output channel)."""
    _once(_lib.fp_deconv_shuffle_once_f32, problem, x, weight, bias, out)


def deconv_scatter_problem(layer, x_shape, out_shape, threads: int):
    """The C problem of the scatter-add GEMM on a 4-d input and output of these shapes (the layer's layout)."""
    nhwc = layer.layout == "NHWC"
    n, cin, h, w = (x_shape[0], x_shape[3], x_shape[1], x_shape[2]) if nhwc else x_shape
    oh, ow = (out_shape[1], out_shape[2]) if nhwc else out_shape[2:]
    p = _ffi.new("fp_conv_problem *")
    p.n, p.cin, p.h, p.w, p.cout, p.kh, p.kw, p.oh, p.ow = n, cin, h, w, layer.cout, layer.kh, layer.kw, oh, ow
    (p.stride_h, p.stride_w), (p.pad_top, p.pad_left) = layer.stride, layer.padding
    (p.dil_h, p.dil_w), p.groups = layer.dilation, 1
    p.layout, p.relu, p.num_threads = int(nhwc), int(layer.relu), threads
    return p


def deconv_scatter_run(packed: LoweredPacked, x: np.ndarray, layer, out: np.ndarray,
                       bias: Optional[np.ndarray]) -> None:
    """``out`` = the transposed convolution of ``x`` (C-contiguous float32, 4-d, the layer's layout) on weights
    packed by ``deconv_pack(weight, "NCHW")``; ``bias`` one value per output channel or None."""
    p = deconv_scatter_problem(layer, x.shape, out.shape, get_num_threads())
    _check(_lib.fp_deconv_scatter_f32(p, _ptr(x, "float[]"), _ptr(packed.buffer, "char[]"), _ptr(bias, "float[]"),
                                      _ptr(out, "float[]")))


def deconv_scatter_once(problem, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
                        out: np.ndarray) -> None:
    """The one-shot scatter-add GEMM: ``weight`` the caller's C-contiguous float32 ``(Cin, Cout, KH, KW)``, packed
    in C into this thread's scratch; arrays as :func:`deconv_scatter_run` takes them."""
    _once(_lib.fp_deconv_scatter_once_f32, problem, x, weight, bias, out)


def deconv_gemm_once(problem, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
                     out: np.ndarray) -> None:
    """The one-shot K == stride GEMM (U-Net's up-convolution): as :func:`deconv_scatter_once`, ``bias`` one value
    per output channel (the C call makes the GEMM rows' bias)."""
    _once(_lib.fp_deconv_gemm_once_f32, problem, x, weight, bias, out)


def _once(fn, problem, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> None:
    from_buffer = _ffi.from_buffer
    _check(fn(problem, from_buffer("float[]", x), from_buffer("float[]", weight),
              _ffi.NULL if bias is None else from_buffer("float[]", bias), from_buffer("float[]", out)))
