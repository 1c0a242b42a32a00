"""Transposed convolution: PyTorch's ``conv_transpose2d`` / ``conv_transpose1d`` on NumPy arrays.

* weight ``(Cin, Cout/groups, KH, KW)`` (``(Cin, Cout/groups, K)`` in 1-d); bias ``(Cout,)``; output size
  ``(H-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1`` per axis.
* ``layout`` ``"NCHW"``/``"NHWC"`` (1-d: ``"NCL"``/``"NLC"``), unbatched inputs, float32/float64,
  ``activation="relu"`` fused, ``out=`` and ``backend=`` as in :func:`fastpoint.conv2d`.

How it runs (docs/conv1d-transposed.md):

* ``backend="numpy"``: the scatter-add reference (``backends/numpy.py``).
* otherwise the sub-pixel decomposition (``transpose_spec.py``): ``s_h * s_w`` stride-1 convolutions
  with flipped sub-kernels, each run by the backend's ordinary conv kernels (bias and ReLU fused) and
  its output rows/columns put in place, every s-th one.  With ``K == stride`` and no padding (U-Net's
  2x2 s2 up-convolution) the C backend runs the whole layer as one GEMM whose store scatters each
  column's K*K outputs into place (``csrc/deconv/``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .backends import get_backend
from .backends.c_lowered import (
    deconv_bias_rows,
    deconv_gemm_once,
    deconv_pack,
    deconv_run,
    deconv_scatter_applies,
    deconv_scatter_once,
    deconv_scatter_problem,
    deconv_scatter_run,
    deconv_shuffle_applies,
    deconv_shuffle_once,
    deconv_shuffle_pack,
    deconv_shuffle_run,
)
from .backends.numpy import conv_transpose2d_nchw
from .conv1d import OneRow, _int, check_layout_1d
from .core.callplan import one_shot_plan
from .core.spec import ConvSpec, IntOrPair, LayerSpec, as_array, c_array, check_out, prepare_param
from .core.threads import get_num_threads
from .core.transpose_spec import (
    AxisPhase,
    axis_phases,
    correlation_weight,
    make_transpose_layer,
    prepare_transpose_input,
    sub_weight,
    valid_outputs,
)


class _Phase:
    """One output phase: its axis phases, its stride-1 conv layer and the backend's packed sub-weight."""

    __slots__ = ("ph", "pw", "layer", "packed")

    def __init__(self, ph: AxisPhase, pw: AxisPhase, layer: Optional[LayerSpec], packed) -> None:
        self.ph, self.pw, self.layer, self.packed = ph, pw, layer, packed


class _Prepared(NamedTuple):
    """A layer made ready for one backend and dtype: its phases, or the packed K == stride GEMM, or the
    packed scatter-add GEMM."""

    phases: List[_Phase]
    bias: Optional[np.ndarray]
    gemm: Optional[Tuple[Any, Optional[np.ndarray]]]  # (packed W', bias per GEMM row)
    scatter: Any = None  # packed W' (rows (co, ky, kx)) of the scatter-add GEMM
    shuffle: Any = None  # packed W'' (rows (ry, rx, co)) of the sub-pixel GEMM


class ConvTranspose2d:
    """A transposed convolution layer whose sub-kernels are cut and packed once per backend and dtype.

    >>> up = ConvTranspose2d(weight, bias, stride=2)      # weight (1024, 512, 2, 2): U-Net up-convolution
    >>> y = up(x)                                          # (N, 512, 2H, 2W)
    """

    _snapshot = True

    def __init__(self, weight, bias=None, stride: IntOrPair = 1, padding: IntOrPair = 0,
                 output_padding: IntOrPair = 0, groups: int = 1, dilation: IntOrPair = 1, *,
                 activation: Optional[str] = None, layout: str = "NCHW", backend: str = "auto") -> None:
        weight = as_array("weight", weight)
        self._layer = make_transpose_layer(weight, stride, padding, output_padding, groups, dilation, layout,
                                           activation)
        get_backend(backend)
        self._backend_name = backend
        # a snapshot (packing is lazy, per backend and dtype), except for the one call of conv_transpose2d()
        self._weight = np.array(weight, copy=True) if self._snapshot else weight
        user_bias = None if bias is None else as_array("bias", bias)
        self._bias = np.array(user_bias, copy=True) if self._snapshot and user_bias is not None else user_bias
        if self._bias is not None:
            prepare_param("bias", self._bias, self._bias.dtype, (self._layer.cout,))
        self._user_arrays = (("weight", weight), ("bias", user_bias))
        self._prepared: Dict[Tuple[str, np.dtype], _Prepared] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_prepared"] = {}  # packings hold 64-byte aligned buffers: made again after unpickling
        return state

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return tuple(self._weight.shape)  # type: ignore[return-value]

    def _phases(self, backend, dtype: np.dtype) -> _Prepared:
        key = (backend.name, dtype)
        if key not in self._prepared:
            L = self._layer
            bias = None if self._bias is None else c_array(self._bias, dtype)
            weight = c_array(self._weight, dtype)
            phases = []
            if backend.name == "c" and L.is_gemm and dtype == np.float32:  # one GEMM, scattering store
                gemm = (deconv_pack(weight, L.layout), deconv_bias_rows(bias, L.kh, L.kw, L.layout))
                self._prepared[key] = _Prepared([], bias, gemm)
                return self._prepared[key]
            if backend.name == "c" and dtype == np.float32 and deconv_shuffle_applies(L):
                self._prepared[key] = _Prepared([], bias, None, shuffle=deconv_shuffle_pack(weight, L))
                return self._prepared[key]
            if backend.name == "c" and dtype == np.float32 and deconv_scatter_applies(L):
                self._prepared[key] = _Prepared([], bias, None, deconv_pack(weight, "NCHW"))
                return self._prepared[key]
            if backend.name != "numpy":
                conv_weight = correlation_weight(weight, L.groups)
                for ph in axis_phases(L.kh, L.stride[0], L.padding[0], L.dilation[0]):
                    for pw in axis_phases(L.kw, L.stride[1], L.padding[1], L.dilation[1]):
                        if not ph.taps or not pw.taps:
                            phases.append(_Phase(ph, pw, None, None))
                            continue
                        # the padding before the first input row/column read does not depend on the image size
                        one_tap = len(ph.taps) == len(pw.taps) == 1  # run unpadded (valid_outputs)
                        pads = (0, 0) if one_tap else (max(0, -ph.offset), max(0, -pw.offset))
                        layer = LayerSpec(L.cout, L.cin, len(ph.taps), len(pw.taps), (1, 1), pads,
                                          (ph.dilation, pw.dilation),
                                          L.groups, L.layout, L.relu, np.dtype(dtype))
                        sub = sub_weight(conv_weight, ph.taps, pw.taps)
                        phases.append(_Phase(ph, pw, layer, backend.prepack(layer, sub)))
            self._prepared[key] = _Prepared(phases, bias, None)
        return self._prepared[key]

    def __call__(self, x, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        L = self._layer
        user_x = x
        x4, batched, (oh, ow) = prepare_transpose_input(x, L, self._weight.shape)
        n = x4.shape[0]
        out_shape = (n, L.cout, oh, ow) if L.layout == "NCHW" else (n, oh, ow, L.cout)
        if out is None:
            result = np.empty(out_shape, dtype=x4.dtype)
        else:
            inputs = (("x", as_array("x", user_x)),) + self._user_arrays
            result = check_out(out, SimpleNamespace(out_shape=out_shape), x4.dtype, batched, inputs)
        if n > 0:
            backend = get_backend(self._backend_name)
            prep = self._phases(backend, x4.dtype)
            if backend.name == "numpy":
                self._reference(x4, prep.bias, result)
            elif prep.shuffle is not None:
                deconv_shuffle_run(prep.shuffle, c_array(x4), L, result, prep.bias)
            elif prep.scatter is not None:
                deconv_scatter_run(prep.scatter, c_array(x4), L, result, prep.bias)
            elif prep.gemm is not None:
                packed, bias_rows = prep.gemm
                deconv_run(packed, c_array(x4), L.cout, L.kh, L.kw, L.layout, L.relu, bias_rows, result)
            else:
                self._run_phases(backend, prep.phases, c_array(x4), prep.bias, result)
        if out is not None:
            return out
        return result if batched else result[0]

    def _reference(self, x4: np.ndarray, bias: Optional[np.ndarray], result: np.ndarray) -> None:
        L = self._layer
        nhwc = L.layout == "NHWC"
        with np.errstate(invalid="ignore", over="ignore"):
            y = conv_transpose2d_nchw(x4.transpose(0, 3, 1, 2) if nhwc else x4, self._weight.astype(x4.dtype),
                                      L.stride, L.padding, L.output_padding, L.dilation, L.groups)
            if bias is not None:
                y = y + bias[:, None, None]
            if L.relu:
                y = np.maximum(y, 0)
        result[...] = y.transpose(0, 2, 3, 1) if nhwc else y

    def _run_phases(self, backend, phases: List[_Phase], x4: np.ndarray, bias: Optional[np.ndarray],
                    result: np.ndarray) -> None:
        L = self._layer
        nhwc = L.layout == "NHWC"
        n = x4.shape[0]
        h, w = x4.shape[1:3] if nhwc else x4.shape[2:]
        oh, ow = result.shape[1:3] if nhwc else result.shape[2:]
        (sh, sw) = L.stride
        for phase in phases:
            rows, cols = phase.ph.rows(oh, sh), phase.pw.rows(ow, sw)
            if rows == 0 or cols == 0:
                continue
            ys, xs = slice(phase.ph.first, None, sh), slice(phase.pw.first, None, sw)
            target = result[:, ys, xs, :] if nhwc else result[:, :, ys, xs]
            fill = np.zeros(L.cout, result.dtype) if bias is None else bias
            fill = np.maximum(fill, 0) if L.relu else fill
            fill = fill if nhwc else fill[:, None, None]
            if phase.layer is None:  # no tap of this phase: the bias alone
                target[...] = fill
                continue
            if phase.layer.kh == phase.layer.kw == 1:
                (t0, t1), (u0, u1) = valid_outputs(phase.ph, rows, h), valid_outputs(phase.pw, cols, w)
                if t0 > 0 or u0 > 0 or t1 < rows or u1 < cols:  # outputs that no input reaches
                    target[...] = fill
                if t1 == t0 or u1 == u0:
                    continue
                oy, ox = phase.ph.offset, phase.pw.offset
                win_h, win_w = (t0 + oy, t1 + oy, 0, 0), (u0 + ox, u1 + ox, 0, 0)
                target = target[:, t0:t1, u0:u1, :] if nhwc else target[:, :, t0:t1, u0:u1]
            else:
                win_h, win_w = phase.ph.input_window(rows, h), phase.pw.input_window(cols, w)
                if win_h is None or win_w is None:
                    target[...] = fill
                    continue
            (lo_h, hi_h, pt, pb), (lo_w, hi_w, pl, pr) = win_h, win_w
            xin = x4[:, lo_h:hi_h, lo_w:hi_w, :] if nhwc else x4[:, :, lo_h:hi_h, lo_w:hi_w]
            sub = phase.layer
            oh_p = hi_h - lo_h + pt + pb - sub.dilation[0] * (sub.kh - 1)  # stride 1: the padded span less the kernel's
            ow_p = hi_w - lo_w + pl + pr - sub.dilation[1] * (sub.kw - 1)
            spec = ConvSpec(sub, n, hi_h - lo_h, hi_w - lo_w, oh_p, ow_p, pt, pb, pl, pr)
            if target.flags.c_contiguous:  # stride 1: the phase is the whole output
                backend.run(spec, phase.packed, c_array(xin), bias, target)
                continue
            buf = np.empty(spec.out_shape, dtype=result.dtype)
            backend.run(spec, phase.packed, c_array(xin), bias, buf)
            target[...] = buf

    def __repr__(self) -> str:
        L = self._layer
        return (f"ConvTranspose2d(weight={self.weight_shape}, stride={L.stride}, padding={L.padding}, "
                f"output_padding={L.output_padding}, groups={L.groups}, dilation={L.dilation}, "
                f"activation={'relu' if L.relu else None!r}, layout={L.layout!r}, backend={self._backend_name!r})")


def conv_transpose2d(x, weight, bias=None, stride: IntOrPair = 1, padding: IntOrPair = 0,
                     output_padding: IntOrPair = 0, groups: int = 1, dilation: IntOrPair = 1, *,
                     activation: Optional[str] = None, layout: str = "NCHW", backend: str = "auto",
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """2-d transposed convolution with PyTorch's ``conv_transpose2d`` semantics; see the module doc.

    A call a lowered GEMM runs (C backend, float32, groups 1: the K == stride GEMM or the scatter-add GEMM) on plain
    arrays takes the plan cached for its argument facts (checked once, as conv2d's one-shot calls,
    core/callplan.py) and one C call that packs the weights into the thread's scratch (on the pool) and runs: no
    layer object, no packed buffer."""
    if (type(x) is np.ndarray and type(weight) is np.ndarray and (bias is None or type(bias) is np.ndarray)
            and (out is None or type(out) is np.ndarray) and (activation is None or type(activation) is str)):
        numbers = (stride, padding, output_padding, groups, dilation)
        key = ("conv_transpose2d", x.shape, x.dtype, weight.shape, weight.dtype,
               None if bias is None else (bias.shape, bias.dtype), numbers, activation, layout, backend)
        plan = one_shot_plan(key, numbers, lambda: _ScatterOnce.parse(x, weight, bias, stride, padding,
                                                                      output_padding, groups, dilation,
                                                                      activation, layout, backend))
        if plan is not _NO_PLAN:
            y = plan(x, weight, bias, out)
            if y is not None:
                return y
    return _OneCallConvTranspose2d(weight, bias, stride, padding, output_padding, groups, dilation,
                                   activation=activation, layout=layout, backend=backend)(x, out=out)


_NO_PLAN = object()  # a cached parse whose calls take the layer's path


def _plain_f32(a: np.ndarray) -> bool:
    return a.dtype == np.float32 and a.flags.c_contiguous and a.flags.aligned


class _ScatterOnce:
    """The cached plan of one-shot calls the lowered GEMMs run (the scatter-add GEMM, or the K == stride GEMM):
    the output shape, the C problems and the C call."""

    __slots__ = ("layer", "out_shape", "x4_shape", "batched", "problems", "run")

    @staticmethod
    def parse(x, weight, bias, stride, padding, output_padding, groups, dilation, activation, layout, backend):
        conv = _OneCallConvTranspose2d(weight, bias, stride, padding, output_padding, groups, dilation,
                                       activation=activation, layout=layout, backend=backend)
        L = conv._layer
        x4, batched, (oh, ow) = prepare_transpose_input(x, L, conv._weight.shape)  # raises on bad input
        if (get_backend(backend).name != "c" or x4.dtype != np.float32 or not deconv_scatter_applies(L)
                or x4.shape[0] == 0):
            return _NO_PLAN
        plan = _ScatterOnce()
        plan.run = (deconv_gemm_once if L.is_gemm else deconv_shuffle_once if deconv_shuffle_applies(L)
                    else deconv_scatter_once)
        n = x4.shape[0]
        shape4 = (n, L.cout, oh, ow) if L.layout == "NCHW" else (n, oh, ow, L.cout)
        plan.layer, plan.x4_shape, plan.batched = L, x4.shape, batched
        plan.out_shape = shape4 if batched else shape4[1:]
        plan.problems = {}
        return plan

    def __call__(self, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
                 out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The output, or None where the layer's path must take the call (other dtypes or layouts in memory, an
        ``out`` to check or that overlaps an input)."""
        if not (_plain_f32(x) and _plain_f32(weight) and (bias is None or _plain_f32(bias))):
            return None
        if out is None:
            out = np.empty(self.out_shape, np.float32)
        elif (out.shape != self.out_shape or not _plain_f32(out) or not out.flags.writeable
              or np.may_share_memory(out, x) or np.may_share_memory(out, weight)
              or (bias is not None and np.may_share_memory(out, bias))):
            return None
        threads = get_num_threads()
        p = self.problems.get(threads)
        if p is None:
            shape4 = self.out_shape if self.batched else (1,) + self.out_shape
            p = self.problems[threads] = deconv_scatter_problem(self.layer, self.x4_shape, shape4, threads)
        self.run(p, x, weight, bias, out)
        return out


class _OneCallConvTranspose2d(ConvTranspose2d):
    """The layer behind one conv_transpose2d() call: used once, so the caller's arrays need no snapshot."""

    _snapshot = False


class ConvTranspose1d(OneRow):
    """The 1-d transposed convolution: the 2-d one on a single image row (``(N, C, L)`` as ``(N, C, 1, L)``)."""

    def __init__(self, weight, bias=None, stride: int = 1, padding: int = 0, output_padding: int = 0,
                 groups: int = 1, dilation: int = 1, *, activation: Optional[str] = None, layout: str = "NCL",
                 backend: str = "auto") -> None:
        layout2d = check_layout_1d(layout)
        self._layout = layout
        weight = as_array("weight", weight)
        if weight.ndim != 3:
            raise ValueError(f"conv_transpose1d weight must be (Cin, Cout/groups, K), got {weight.ndim}-d shape "
                             f"{weight.shape}")
        args = [_int(name, v, lo) for name, v, lo in (("stride", stride, 1), ("padding", padding, 0),
                                                      ("output_padding", output_padding, 0),
                                                      ("dilation", dilation, 1))]
        s, p, op, d = args
        self._conv = ConvTranspose2d(weight[:, :, None, :], bias, (1, s), (0, p), (0, op), groups, (1, d),
                                     activation=activation, layout=layout2d, backend=backend)

    def __call__(self, x, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        x = self._check_1d(x, out)
        return self._call_2d(x, out)


def conv_transpose1d(x, weight, bias=None, stride: int = 1, padding: int = 0, output_padding: int = 0,
                     groups: int = 1, dilation: int = 1, *, activation: Optional[str] = None, layout: str = "NCL",
                     backend: str = "auto", out: Optional[np.ndarray] = None) -> np.ndarray:
    """1-d transposed convolution with PyTorch's ``conv_transpose1d`` semantics."""
    return ConvTranspose1d(weight, bias, stride, padding, output_padding, groups, dilation, activation=activation,
                           layout=layout, backend=backend)(x, out=out)
