"""1-d convolution: PyTorch's ``conv1d`` on NumPy arrays, run by the 2-d kernels on one image row.

* ``x`` is ``(N, C, L)`` or unbatched ``(C, L)`` for ``layout="NCL"``, ``(N, L, C)`` / ``(L, C)`` for
  ``"NLC"``; weight ``(Cout, Cin/groups, K)``, or ``(Cout, Cin/groups)`` for K = 1.
* ``padding`` is an int, ``"valid"``, ``"same"`` (stride 1; an odd total puts the extra sample on the
  right, as PyTorch does) or a ``(left, right)`` pair: the causal form of WaveNet and TCN,
  ``padding=((K - 1) * dilation, 0)``, without padding the input first (an extension of PyTorch).
* Everything else (activation, dtypes, ``out=``, backends, errors) is as in :func:`fastpoint.conv2d`.

Why one image row: ``(N, C, L)`` is ``(N, C, 1, L)`` and ``(N, L, C)`` is ``(N, 1, L, C)`` without a copy,
so a kernel-1 conv1d is the very GEMM of ``conv1x1`` (the same packed weights, blocking and threads) and a
K > 1 one runs the direct kernels along the row, the orientation MLAS and oneDNN use (a W = 1 column
was much slower in oneDNN#344).  A padding pair becomes the row's own left and right padding.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

import numpy as np

from .api import Conv2d
from .backends.c_lowered import Conv1dGemmBackend
from .core.callplan import CallPlan, one_shot_plan
from .core.epilogue import apply_reference
from .core.spec import ConvSpec, LayerSpec, as_array, make_spec, prepare_input

_CONV1D_GEMM = Conv1dGemmBackend()  # the C backend plus conv1d's own GEMM (backends/c_lowered.py)

Padding1d = Union[int, str, Tuple[int, int]]

LAYOUTS_1D = {"NCL": "NCHW", "NLC": "NHWC"}


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (tuple, list)) and len(value) == 1:  # PyTorch accepts (s,) for conv1d
            return _int(name, value[0], minimum)
        raise TypeError(f"{name} must be an int for a 1-d convolution, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_layout_1d(layout) -> str:
    """The 2-d layout behind a 1-d one; a 2-d layout name is refused (it has the other rank)."""
    if layout not in LAYOUTS_1D:
        hint = " (a 2-d layout: use conv2d, or 'NCL'/'NLC' here)" if layout in ("NCHW", "NHWC") else ""
        raise ValueError(f"layout must be one of {tuple(LAYOUTS_1D)} for a 1-d convolution, got {layout!r}{hint}")
    return LAYOUTS_1D[layout]


def padding_pair(padding) -> Union[str, Tuple[int, int]]:
    """``"same"``, or the (left, right) padding of the row."""
    if isinstance(padding, str):
        if padding in ("same", "valid"):
            return "same" if padding == "same" else (0, 0)
        raise ValueError(f"padding must be an int, a (left, right) pair, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) == 1:
            padding = padding[0]
        elif len(padding) != 2:
            raise ValueError(f"padding must be an int or a (left, right) pair, got {len(padding)} values: {padding!r}")
        else:
            return (_int("padding", padding[0], 0), _int("padding", padding[1], 0))
    p = _int("padding", padding, 0)
    return (p, p)


def weight_2d(weight) -> np.ndarray:
    """A ``(Cout, Cin/groups, K)`` or ``(Cout, Cin/groups)`` weight as the ``(Cout, Cin/groups, 1, K)`` view."""
    weight = as_array("weight", weight)
    if weight.ndim == 2:
        return weight[:, :, None, None]
    if weight.ndim != 3:
        raise ValueError(f"conv1d weight must be (Cout, Cin/groups, K) or (Cout, Cin/groups) for K = 1, "
                         f"got {weight.ndim}-d shape {weight.shape}")
    return weight[:, :, None, :]


class _RowConv2d(Conv2d):
    """The 2-d layer of a 1-d one: its row's left and right padding may differ (a causal pair)."""

    def __init__(self, weight, bias, stride, pads, dilation, groups, activation, layout, backend) -> None:
        # The layer records the left share, which is what a kernel choice made at packing time sees.
        padding = "same" if pads == "same" else (0, pads[0])
        super().__init__(weight, bias, (1, stride), padding, (1, dilation), groups, activation=activation,
                         layout=layout, backend=backend)
        self._pads = pads

    def _get_backend(self):
        backend = super()._get_backend()
        return _CONV1D_GEMM if backend.name == "c" else backend

    def _make_spec(self, layer: LayerSpec, x_shape: Tuple[int, ...]) -> ConvSpec:
        if self._pads == "same" or self._pads[0] == self._pads[1]:
            return make_spec(layer, x_shape, self._weight.shape)
        left, right = self._pads
        # Checked as if both sides had the wider padding (the same messages), then narrowed.
        wide = dataclasses.replace(layer, padding=(0, max(left, right)))
        spec = make_spec(wide, x_shape, self._weight.shape)
        eff = layer.dilation[1] * (layer.kw - 1) + 1
        if spec.w + left + right < eff:
            raise ValueError(f"kernel {layer.kw} with dilation {layer.dilation[1]} spans {eff}, more than the "
                             f"padded input {spec.w + left + right} (x length {spec.w}, padding {self._pads})")
        ow = (spec.w + left + right - eff) // layer.stride[1] + 1
        return dataclasses.replace(spec, layer=layer, ow=ow, pad_left=left, pad_right=right)


class OneRow:
    """A 1-d layer run by a 2-d one (``self._conv``) on the one-row views of its arrays."""

    _layout: str
    _conv: object

    def _row(self, a: np.ndarray) -> np.ndarray:
        """A 1-d array (3-d batched or 2-d unbatched) as the 2-d layer's one-row view."""
        return a[..., None, :] if self._layout == "NCL" else a[..., None, :, :]

    def _check_1d(self, x, out: Optional[np.ndarray]) -> np.ndarray:
        x = as_array("x", x)
        if x.ndim not in (2, 3):
            shape = "(N, C, L) or (C, L)" if self._layout == "NCL" else "(N, L, C) or (L, C)"
            raise ValueError(f"x must be {shape} for layout {self._layout}, got {x.ndim}-d shape {x.shape}")
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
            if out.ndim != x.ndim:
                raise ValueError(f"out must have {x.ndim} dimensions like x (shape {x.shape}), got shape {out.shape}")
        return x

    def _call_2d(self, x: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
        if out is not None:
            self._conv(self._row(x), out=self._row(out))  # type: ignore[operator]
            return out
        y = self._conv(self._row(x))  # type: ignore[operator]
        return y[..., 0, :] if self._layout == "NCL" else y[..., 0, :, :]


class Conv1d(OneRow):
    """A 1-d convolution layer whose weights are checked and packed once (see the module doc).

    >>> layer = Conv1d(weight, bias, dilation=64, padding=(64, 0))   # causal WaveNet layer, K = 2
    >>> y = layer(x)                                                  # (N, Cout, L)
    """

    _row_layer = _RowConv2d

    def __init__(self, weight, bias=None, stride: int = 1, padding: Padding1d = 0, dilation: int = 1,
                 groups: int = 1, *, activation: Optional[str] = None, layout: str = "NCL",
                 backend: str = "auto") -> None:
        layout2d = check_layout_1d(layout)
        self._layout = layout
        stride = _int("stride", stride, 1)
        dilation = _int("dilation", dilation, 1)
        pads = padding_pair(padding)
        w4 = weight_2d(weight)
        if pads == "same" and stride != 1:
            raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
        # A kernel-1 layer padded on the right only: the C GEMM path takes a zero left padding to mean no
        # padding, so the layer runs unpadded and the outputs past the input (bias only) are added here.
        self._right_only = pads != "same" and w4.shape[3] == 1 and pads[0] == 0 < pads[1]
        if self._right_only:
            self._right, pads = pads[1], (0, 0)
        self._conv = self._row_layer(w4, bias, stride, pads, dilation, groups, activation, layout2d, backend)
        self._stride = stride
        self._weight_shape = tuple(as_array("weight", weight).shape)

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        return self._weight_shape

    def __call__(self, x, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        x = self._check_1d(x, out)
        if self._right_only:
            return self._call_right_padded(x, out)
        return self._call_2d(x, out)

    def _call_right_padded(self, x: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
        axis = x.ndim - 1 if self._layout == "NCL" else x.ndim - 2
        length = x.shape[axis]
        inside = self._conv(self._row(x))
        inside = inside[..., 0, :] if self._layout == "NCL" else inside[..., 0, :, :]
        total = (length + self._right - 1) // self._stride + 1
        shape = list(inside.shape)
        shape[axis] = total
        if out is None:
            out = np.empty(shape, dtype=inside.dtype)
        elif out.shape != tuple(shape) or out.dtype != inside.dtype:
            raise ValueError(f"out must have shape {tuple(shape)} and dtype {inside.dtype}, got {out.shape} "
                             f"{out.dtype}")
        head = [slice(None)] * out.ndim
        head[axis] = slice(0, inside.shape[axis])
        tail = list(head)
        tail[axis] = slice(inside.shape[axis], None)
        out[tuple(head)] = inside
        bias = self._conv._bias
        fill = np.zeros(out.shape[axis - 1 if self._layout == "NCL" else axis + 1], out.dtype) if bias is None \
            else bias.astype(out.dtype)
        if self._conv._layer.relu:
            fill = np.maximum(fill, 0)
        apply_reference(fill, self._conv._layer.act, 0)  # the layer's other activation, per channel
        out[tuple(tail)] = fill[:, None] if self._layout == "NCL" else fill
        return out

    def __repr__(self) -> str:
        return f"Conv1d(weight={self.weight_shape}, layout={self._layout!r}, 2-d layer {self._conv!r})"


def conv1d(x, weight, bias=None, stride: int = 1, padding: Padding1d = 0, dilation: int = 1, groups: int = 1,
           *, activation: Optional[str] = None, layout: str = "NCL", backend: str = "auto",
           out: Optional[np.ndarray] = None) -> np.ndarray:
    """1-d convolution (cross-correlation) with PyTorch's ``conv1d`` semantics; see the module doc.

    A one-shot call: the plan of its one-row 2-d call (core/callplan.py, cached on the argument facts), used
    once on the row views of these arrays (docs/call-path.md)."""
    if (type(x) is np.ndarray and type(weight) is np.ndarray and (bias is None or type(bias) is np.ndarray)
            and (out is None or type(out) is np.ndarray and out.ndim == x.ndim)
            and (activation is None or type(activation) is str)):  # (values of an activation are no key)
        numbers = (stride, padding, dilation, groups)
        key = ("conv1d", x.shape, x.dtype, weight.shape, weight.dtype,
               None if bias is None else (bias.shape, bias.dtype), numbers, activation, layout, backend)
        plan = one_shot_plan(key, numbers, lambda: _parse_one_shot(x, weight, bias, stride, padding, dilation,
                                                                   groups, activation, layout, backend))
        if plan is not None:
            row = (lambda a: a[..., None, :]) if layout == "NCL" else (lambda a: a[..., None, :, :])
            y = plan.call_once(row(x), weight_2d(weight), bias, None if out is None else row(out))
            return out if out is not None else y[..., 0, :] if layout == "NCL" else y[..., 0, :, :]
    return _OneCallConv1d(weight, bias, stride, padding, dilation, groups, activation=activation, layout=layout,
                          backend=backend)(x, out=out)


def _parse_one_shot(x, weight, bias, stride, padding, dilation, groups, activation, layout, backend):
    """The one-shot plan of a conv1d call: the layer's checks (in its order), the 2-d call spec of its row;
    None where the layer adds outputs of its own (a kernel-1 layer padded on the right only)."""
    conv = _OneCallConv1d(weight, bias, stride, padding, dilation, groups, activation=activation, layout=layout,
                          backend=backend)
    x = conv._check_1d(x, None)
    if conv._right_only:
        return None
    row = conv._conv
    x4, batched = prepare_input(conv._row(x), row._layer)
    spec = row._make_spec(row._layer.with_dtype(x4.dtype), x4.shape)
    return CallPlan.once(spec, batched, x4.shape if batched else x4.shape[1:], row._get_backend(),
                         row._weight.dtype, None if row._bias is None else row._bias.dtype)


class _OneCallRowConv2d(_RowConv2d):
    """The 2-d layer of one conv1d() call: no snapshot of the caller's arrays, no call plan (as conv2d())."""

    _snapshot = False
    _one_call = True


class _OneCallConv1d(Conv1d):
    _row_layer = _OneCallRowConv2d
