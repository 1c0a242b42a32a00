"""The public API: PyTorch ``conv2d`` semantics on NumPy arrays.

* Cross-correlation (no kernel flip); weight ``(Cout, Cin/groups, KH, KW)``; bias ``(Cout,)``.
* ``x`` is ``(N, C, H, W)`` for ``layout="NCHW"`` and ``(N, H, W, C)`` for ``"NHWC"``; an unbatched
  ``(C, H, W)`` / ``(H, W, C)`` input gives an unbatched result, in the same layout.
* float32 is the fast path, float64 is supported; the result has the input's dtype and ``weight`` /
  ``bias`` of another float dtype are cast to it.
* ``stride`` and ``dilation`` are an int or a pair; ``padding`` an int, a pair, ``"valid"`` or
  ``"same"`` (stride 1 only; an odd total puts the extra row/column at the bottom/right).
* ``activation=`` is fused into the kernel's store (docs/epilogues.md): None, ``"relu"``, ``"relu6"``,
  ``"leaky_relu"`` (slope 0.01), ``"hardswish"``, ``"hardsigmoid"`` (PyTorch's ``v / 6 + 1/2``),
  ``"sigmoid"``, ``"tanh"``, or with parameters ``("clip", lo, hi)``, ``("leaky_relu", alpha)``,
  ``("hardsigmoid", alpha, beta)`` (ONNX's ``max(0, min(1, alpha v + beta))``; ONNX's defaults are
  ``(0.2, 0.5)``), ``("prelu", slopes)`` (one slope per output channel, or one for all), or a
  :class:`fastpoint.Activation`.  NaN stays NaN through every activation (``relu(NaN)`` is NaN, as in
  PyTorch); +-Inf go to the formula's limits.
* ``residual=`` (a call argument) is added before the activation: ``act(conv(x, w) + bias + residual)``,
  ResNet's residual add.  An array of the result's shape (any strides and float dtype: copied only when
  not C-contiguous of the input's dtype) that does not overlap ``out`` (the sum is never written over
  the residual: ValueError).
* ``out=`` takes a writable C-contiguous array of the exact result shape and dtype that does not
  overlap an input.
* ``backend`` is ``"auto"``, ``"c"``, ``"numba"`` or ``"numpy"``; see :func:`fastpoint.backends`.
* ``algorithm`` is ``"auto"`` (the default) or ``"direct"``, which run today's kernels, or ``"winograd"``
  (opt-in, 3x3 stride-1 groups-1 layers only, dilation 1 or, in NHWC, any): Winograd F(4x4, 3x3) (F(2x2, 3x3) on small
  maps) on the C backend in float32, with different rounding (max error about 1e-5 of the output's
  range); float64 and the other backends run the direct kernel.  See docs/winograd.md.

Arguments are checked once, in Python, before any kernel sees memory: bad input raises
``ValueError`` or ``TypeError`` naming the argument and the shapes involved.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .backends import get_backend
from .core import callplan as _callplan
from .core.callplan import CallPlan, remember
from .core.epilogue import activation_name
from .core.nonfinite import nonfinite_taps
from .core.spec import (
    ConvSpec,
    IntOrPair,
    LayerSpec,
    Padding,
    as_array,
    c_array,
    make_layer,
    make_spec,
    prepare_input,
    prepare_param,
)

_ndarray = np.ndarray


class Conv2d:
    """A convolution layer whose weights are checked and packed once, then reused for every call.

    >>> layer = Conv2d(weight, bias, padding=1, activation="relu")
    >>> y = layer(x)            # same result as conv2d(x, weight, bias, padding=1, activation="relu")
    """

    # a layer used for one call only (conv1d()'s 2-d layer) may skip the snapshot and the call plan
    _snapshot = True
    _one_call = False

    def __init__(self, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0,
                 dilation: IntOrPair = 1, groups: int = 1, *, activation: Any = None,
                 layout: str = "NCHW", backend: str = "auto", algorithm: str = "auto") -> None:
        weight = as_array("weight", weight)
        self._layer = make_layer(weight, stride, padding, dilation, groups, layout, activation,
                                 algorithm=algorithm)
        get_backend(backend)  # fail now, not at the first call, on an unknown or missing backend
        self._backend_name = backend
        user_bias = None if bias is None else as_array("bias", bias)
        # A snapshot: packing is lazy (per backend and dtype) and some backends use the weight
        # unpacked, so a caller changing its array later must not change some results but not others.
        self._weight = np.array(weight, copy=True) if self._snapshot else weight
        self._bias = None if user_bias is None else np.array(user_bias, copy=True) if self._snapshot else user_bias
        self._user_arrays = (("weight", weight), ("bias", user_bias))  # for the out= overlap check
        if self._bias is not None:
            prepare_param("bias", self._bias, self._bias.dtype, (self._layer.cout,))
        self._packed: Dict[Tuple[str, np.dtype], Tuple[LayerSpec, Any, Optional[np.ndarray], Any]] = {}
        # the kept plans, per (input shape, dtype), and the last one used (core/callplan.py)
        self._plans: Dict[Tuple[Tuple[int, ...], np.dtype], CallPlan] = {}
        self._plan: Optional[CallPlan] = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # plans hold the backend's bound runner (cffi pointers): rebuilt on the first call of each shape
        state["_plans"], state["_plan"] = {}, None
        return state

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return tuple(self._weight.shape)  # type: ignore[return-value]

    def _get_backend(self):
        """The backend of a call (a hook: conv1d swaps in kernels of its own)."""
        return get_backend(self._backend_name)

    def _make_spec(self, layer: LayerSpec, x_shape: Tuple[int, ...]) -> ConvSpec:
        """The call spec for an input shape (a hook: conv1d's causal padding pairs override it)."""
        return make_spec(layer, x_shape, self._weight.shape)

    def _prepared(self, backend, dtype: np.dtype):
        key = (backend.name, dtype)
        if key not in self._packed:
            layer = self._layer.with_dtype(dtype)
            weight = c_array(self._weight, dtype)
            bias = None if self._bias is None else c_array(self._bias, dtype)
            # the padding fix-up's taps (core/nonfinite.py); a layer that never pads needs none (its kernels
            # multiply every weight, NaN and Inf included): no pass over its weights (lraspp: 1x1, 97 % of them)
            taps = None if layer.padding == (0, 0) else nonfinite_taps(weight)
            self._packed[key] = (layer, backend.prepack(layer, weight), bias, taps)
        return self._packed[key]

    def __call__(self, x, *, out: Optional[np.ndarray] = None, residual: Optional[np.ndarray] = None) -> np.ndarray:
        """``act(conv(x) + bias + residual)`` into a new array or ``out`` (residual: see the module doc)."""
        plan = self._plan
        if plan is None or not plan.accepts(x):  # another shape or dtype than the last call's?
            plan = self._plans.get((x.shape, x.dtype)) if type(x) is np.ndarray else None
            if plan is not None and not plan.accepts(x):
                plan = None
        if plan is not None:
            result = plan.call(x, out) if residual is None else self._planned_residual(plan, x, out, residual)
            if result is not None:
                self._plan = plan
                return result
        # the full path: parse the input, then the plan of its shape (made and kept on its first call)
        user_x = x
        x4, batched = prepare_input(x, self._layer)
        user_shape = x4.shape if batched else x4.shape[1:]
        plan = self._plans.get((user_shape, x4.dtype)) or self._new_plan(x4, batched, user_shape)
        inputs = () if out is None else (("x", as_array("x", user_x)),) + self._user_arrays
        return plan.call_checked(x4, out, inputs, residual)

    def _new_plan(self, x4: np.ndarray, batched: bool, user_shape: Tuple[int, ...]) -> CallPlan:
        """The plan of a first call of this input shape and dtype (the layer's first packs), kept."""
        backend = self._get_backend()
        layer, packed, bias, bad_taps = self._prepared(backend, x4.dtype)
        spec = self._make_spec(layer, x4.shape)
        plan = CallPlan.kept(spec, batched, user_shape, backend, packed, bias, bad_taps, self._user_arrays)
        if spec.n > 0 and not self._one_call:  # (batch 0 runs no kernel: not worth a plan)
            if len(self._plans) > 16:  # many shapes (dask chunks): keep it bounded
                self._plans.clear()
            self._plans[(user_shape, x4.dtype)] = plan
            self._plan = plan
        return plan

    @staticmethod
    def _planned_residual(plan: CallPlan, x: np.ndarray, out: Optional[np.ndarray], residual) -> Optional[np.ndarray]:
        """A call with a residual on a plan that accepts x, when the residual needs no conversion and out
        passes the plan's checks (CallPlan.call: the residual one more array that out must not meet); None
        sends the call down the full path, which copies or raises."""
        if (type(residual) is not np.ndarray or residual.shape != plan.user_out_shape or residual.dtype != plan.dtype
                or not residual.flags.c_contiguous or not residual.flags.aligned):
            return None
        return plan.call(x, out, residual)

    def __repr__(self) -> str:
        L = self._layer
        return (f"Conv2d(weight={self.weight_shape}, stride={L.stride}, padding={L.padding!r}, "
                f"dilation={L.dilation}, groups={L.groups}, activation={activation_name(L.relu, L.act)!r}, "
                f"layout={L.layout!r}, backend={self._backend_name!r}, algorithm={L.algorithm!r})")


def conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1,
           groups: int = 1, *, activation: Any = None, layout: str = "NCHW",
           backend: str = "auto", algorithm: str = "auto", out: Optional[np.ndarray] = None,
           residual: Optional[np.ndarray] = None) -> np.ndarray:
    """2-d convolution (cross-correlation) with PyTorch's ``conv2d`` semantics; see the module doc.

    A one-shot call: parse the arguments into a plan (core/callplan.py, cached on the argument facts),
    then run it once with these weights, packed for this call only (docs/call-path.md).  A call with a
    residual runs as a one-call :class:`Conv2d` instead; one with an activation other than a name (a tuple,
    an Activation) takes the full parse every time (its values are not a parse key)."""
    try:  # the plan of an earlier call with these argument facts (CallPlan.matches checks what the key omits)
        key = ("conv2d", x.shape, x.dtype.char, weight.shape, weight.dtype.char, None if bias is None else bias.shape,
               None if bias is None else bias.dtype.char, stride, padding, dilation, groups, activation, layout,
               backend, algorithm)
        plan = _callplan._ONE_SHOT.get(key)
    except (AttributeError, TypeError):  # not arrays, or an unhashable argument: the full parse names it
        key = plan = None
    if plan is not None and residual is None:
        f = plan.facts  # what the key leaves out: the exact dtypes and number types (CallPlan.matches)
        if ((type(x) is _ndarray and type(weight) is _ndarray and x.dtype is f[0] and weight.dtype is f[1]
             and (bias is None or type(bias) is _ndarray and bias.dtype is f[2]) and stride is f[3]
             and padding is f[4] and dilation is f[5] and groups is f[6])
                or plan.matches(x, weight, bias, (stride, padding, dilation, groups))):
            fast = plan.fast  # CallPlan.call_once, inline: the C entry, else the exact path
            y = None if fast is None else fast(x, weight, bias, out)
            return y if y is not None else plan.call_once_exact(x, weight, bias, out)
    return _conv2d_parsed(key, (stride, padding, dilation, groups), x, weight, bias, stride, padding, dilation,
                          groups, activation, layout, backend, algorithm, out, residual)


def _conv2d_parsed(key: Optional[tuple], numbers: tuple, x, weight, bias, stride, padding, dilation, groups,
                   activation, layout, backend, algorithm, out, residual) -> np.ndarray:
    """conv2d() without a cached plan: the full parse (which raises on bad input), kept under ``key`` for the
    next call (``numbers``: the key's) when the arguments are plain arrays and numbers and the activation a
    name."""
    if residual is not None:
        layer = _OneCall(weight, bias, stride, padding, dilation, groups, activation=activation, layout=layout,
                         backend=backend, algorithm=algorithm)
        return layer(x, out=out, residual=residual)
    plan = _parse_one_shot(x, weight, bias, stride, padding, dilation, groups, activation, layout, backend,
                           algorithm)
    if key is not None and (activation is None or type(activation) is str):
        remember(key, plan, x, weight, bias, numbers)
    x, weight = as_array("x", x), as_array("weight", weight)
    bias = None if bias is None else as_array("bias", bias)
    return plan.call_once(x, weight, bias, out)


class _OneCall(Conv2d):
    """conv2d()'s layer for a call with a residual: used once, so no weight snapshot and no call plan."""

    _snapshot = False
    _one_call = True


def _parse_one_shot(x, weight, bias, stride, padding, dilation, groups, activation, layout,
                    backend, algorithm: str = "auto") -> CallPlan:
    """Validate a one-shot call's arguments (in the order Conv2d checks them) into its plan."""
    weight = as_array("weight", weight)
    layer = make_layer(weight, stride, padding, dilation, groups, layout, activation, algorithm=algorithm)
    found = get_backend(backend)
    if bias is not None:
        bias = as_array("bias", bias)
        prepare_param("bias", bias, bias.dtype, (layer.cout,))
    x4, batched = prepare_input(x, layer)
    layer = layer.with_dtype(x4.dtype)
    return CallPlan.once(make_spec(layer, x4.shape, weight.shape), batched, x4.shape if batched else x4.shape[1:],
                         found, weight.dtype, None if bias is None else bias.dtype)


def conv1x1(x, weight, bias=None, stride: IntOrPair = 1, *, activation: Any = None,
            layout: str = "NCHW", backend: str = "auto", out: Optional[np.ndarray] = None,
            residual: Optional[np.ndarray] = None) -> np.ndarray:
    """Pointwise convolution: ``Y[n] = W @ X[n]`` at every pixel (channel mixing).

    ``weight`` is ``(Cout, Cin)`` or ``(Cout, Cin, 1, 1)``; ``activation`` and ``residual`` as in conv2d.
    """
    try:  # conv2d's plan cache, on the weight as given (the C entry reads either shape's memory alike)
        key = ("conv1x1", x.shape, x.dtype.char, weight.shape, weight.dtype.char, None if bias is None else bias.shape,
               None if bias is None else bias.dtype.char, stride, activation, layout, backend)
        plan = _callplan._ONE_SHOT.get(key)
    except (AttributeError, TypeError):
        key = plan = None
    if plan is not None and residual is None:
        f = plan.facts
        if ((type(x) is _ndarray and type(weight) is _ndarray and x.dtype is f[0] and weight.dtype is f[1]
             and (bias is None or type(bias) is _ndarray and bias.dtype is f[2]) and stride is f[3])
                or plan.matches(x, weight, bias, (stride,))):
            fast = plan.fast  # CallPlan.call_once, inline: the C entry, else the exact path
            y = None if fast is None else fast(x, weight, bias, out)
            return y if y is not None else plan.call_once_exact(x, weight, bias, out)
    weight = as_array("weight", weight)
    if weight.ndim == 2:
        weight = weight[:, :, None, None]
    elif weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"conv1x1 weight must be (Cout, Cin) or (Cout, Cin, 1, 1), got shape {weight.shape}")
    return _conv2d_parsed(key, (stride,), x, weight, bias, stride, 0, 1, 1, activation, layout, backend, "auto", out,
                          residual)
