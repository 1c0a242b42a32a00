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
  (opt-in, 3x3 stride-1 dilation-1 groups-1 layers only): Winograd F(4x4, 3x3) (F(2x2, 3x3) on small
  maps) on the C backend in float32, with different rounding (max error about 1e-5 of the output's
  range); float64 and the other backends run the direct kernel.  See docs/winograd.md.

Arguments are checked once, in Python, before any kernel sees memory: bad input raises
``ValueError`` or ``TypeError`` naming the argument and the shapes involved.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .backends import get_backend
from .core.callplan import CallPlan, OneShotPlan, one_shot_plan
from .core.epilogue import activation_name, check_residual
from .core.nonfinite import apply_padding_nan, nonfinite_taps
from .core.spec import (
    ConvSpec,
    IntOrPair,
    LayerSpec,
    Padding,
    as_array,
    c_array,
    check_out,
    make_layer,
    make_spec,
    prepare_input,
    prepare_param,
)


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
        self._specs: Dict[Tuple[LayerSpec, Tuple[int, ...]], ConvSpec] = {}
        # validated calls per (input shape, dtype), and the last one used (core/callplan.py)
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
            self._packed[key] = (layer, backend.prepack(layer, weight), bias, nonfinite_taps(weight))
        return self._packed[key]

    def __call__(self, x, *, out: Optional[np.ndarray] = None, residual: Optional[np.ndarray] = None) -> np.ndarray:
        """``act(conv(x) + bias + residual)`` into a new array or ``out`` (residual: see the module doc)."""
        plan = self._plan
        if residual is not None and plan is not None:
            result = self._planned_residual(plan, x, out, residual)
            if result is not None:
                return result
        if residual is None and (plan is None or not plan.accepts(x)):  # another shape or dtype than the last?
            plan = self._plans.get((x.shape, x.dtype)) if type(x) is np.ndarray else None
            if plan is not None and not plan.accepts(x):
                plan = None
        if plan is not None and residual is None:  # (a call with a residual takes the full path)
            result = plan.call(x, out)
            if result is not None:
                self._plan = plan
                return result
        user_x = x
        x, batched = prepare_input(x, self._layer)
        backend = self._get_backend()
        layer, packed, bias, bad_taps = self._prepared(backend, x.dtype)
        spec = self._specs.get((layer, x.shape))
        if spec is None:
            if len(self._specs) > 64:  # e.g. dask chunks of many sizes: keep the cache bounded
                self._specs.clear()
            spec = self._specs[(layer, x.shape)] = self._make_spec(layer, x.shape)
        if out is None:
            result = np.empty(spec.out_shape, dtype=x.dtype)
        else:
            inputs = (("x", as_array("x", user_x)),) + self._user_arrays
            result = check_out(out, spec, x.dtype, batched, inputs)
        res4 = None if residual is None else check_residual(residual, spec.out_shape, x.dtype, out, batched)
        if spec.n > 0:
            if res4 is None:
                backend.run(spec, packed, x, bias, result)
            else:
                backend.run(spec, packed, x, bias, result, residual=res4)
            if bad_taps is not None:
                apply_padding_nan(spec, bad_taps, result)
            if not self._one_call and (x is user_x or x.base is user_x):  # x used as given: plan repeats
                key = (user_x.shape, x.dtype)
                plan = self._plans.get(key)
                if plan is None:
                    if len(self._plans) > 16:  # many shapes (dask chunks): keep it bounded, as _specs
                        self._plans.clear()
                    plan = self._plans[key] = CallPlan(user_x.shape, spec, batched, backend, packed, bias,
                                                       bad_taps, self._user_arrays)
                self._plan = plan
        if out is not None:
            return out
        return result if batched else result[0]

    def _planned_residual(self, plan: CallPlan, x, out: Optional[np.ndarray], residual) -> Optional[np.ndarray]:
        """A call with a residual on the last call's plan, when x, the residual and out need no conversion and
        pass the plan's checks (as CallPlan.call does them, the residual one more read-only array that out
        must not meet); None sends the call down the full path, which copies or raises."""
        if (not plan.accepts(x) or type(residual) is not np.ndarray or residual.shape != plan.user_out_shape
                or residual.dtype != plan.dtype or not residual.flags.c_contiguous or not residual.flags.aligned):
            return None
        if out is None:
            out4 = np.empty(plan.out_shape, dtype=plan.dtype)
        elif (type(out) is not np.ndarray or out.shape != plan.user_out_shape or out.dtype != plan.dtype
              or not out.flags.carray or np.may_share_memory(out, x) or np.may_share_memory(out, residual)
              or any(np.may_share_memory(out, a) for a in plan.params)):
            return None
        else:
            out4 = out if plan.batched else out[None]
        backend = self._get_backend()
        _, packed, bias, _ = self._prepared(backend, plan.dtype)
        batched = plan.batched
        backend.run(plan.spec, packed, x if batched else x[None], bias, out4,
                    residual=residual if batched else residual[None])
        if plan.bad_taps is not None:
            apply_padding_nan(plan.spec, plan.bad_taps, out4)
        return out if out is not None else out4 if batched else out4[0]

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
    then run it once with these weights, packed for this call only (docs/call-path.md).  A call with an
    epilogue beyond ReLU (another activation, a residual) runs as a one-call :class:`Conv2d` instead."""
    if residual is not None or not (activation is None or activation == "relu"):
        layer = _OneCall(weight, bias, stride, padding, dilation, groups, activation=activation, layout=layout,
                         backend=backend, algorithm=algorithm)
        return layer(x, out=out, residual=residual)
    def parse() -> OneShotPlan:
        return _parse_one_shot(x, weight, bias, stride, padding, dilation, groups, activation, layout, backend,
                               algorithm)

    if type(x) is np.ndarray and type(weight) is np.ndarray and (bias is None or type(bias) is np.ndarray):
        plan = one_shot_plan(x, weight, bias, (stride, padding, dilation, groups),
                             (activation, layout, backend, algorithm), parse)
    else:  # array-likes: checked, then converted (a parse key needs arrays)
        plan = parse()
        x, weight = as_array("x", x), as_array("weight", weight)
        bias = None if bias is None else as_array("bias", bias)
    return plan.call(x, weight, bias, out)


class _OneCall(Conv2d):
    """conv2d()'s layer for a call with an epilogue: used once, so no weight snapshot and no call plan."""

    _snapshot = False
    _one_call = True


def _parse_one_shot(x, weight, bias, stride, padding, dilation, groups, activation, layout,
                    backend, algorithm: str = "auto") -> OneShotPlan:
    """Validate a one-shot call's arguments (in the order Conv2d checks them) into its plan."""
    weight = as_array("weight", weight)
    layer = make_layer(weight, stride, padding, dilation, groups, layout, activation, algorithm=algorithm)
    found = get_backend(backend)
    if bias is not None:
        bias = as_array("bias", bias)
        prepare_param("bias", bias, bias.dtype, (layer.cout,))
    x4, batched = prepare_input(x, layer)
    layer = layer.with_dtype(x4.dtype)
    return OneShotPlan(make_spec(layer, x4.shape, weight.shape), batched, found)


def conv1x1(x, weight, bias=None, stride: IntOrPair = 1, *, activation: Any = None,
            layout: str = "NCHW", backend: str = "auto", out: Optional[np.ndarray] = None,
            residual: Optional[np.ndarray] = None) -> np.ndarray:
    """Pointwise convolution: ``Y[n] = W @ X[n]`` at every pixel (channel mixing).

    ``weight`` is ``(Cout, Cin)`` or ``(Cout, Cin, 1, 1)``; ``activation`` and ``residual`` as in conv2d.
    """
    weight = as_array("weight", weight)
    if weight.ndim == 2:
        weight = weight[:, :, None, None]
    elif weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"conv1x1 weight must be (Cout, Cin) or (Cout, Cin, 1, 1), got shape {weight.shape}")
    return conv2d(x, weight, bias, stride, 0, 1, 1, activation=activation, layout=layout,
                  backend=backend, out=out, residual=residual)
