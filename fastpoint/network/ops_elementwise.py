"""Elementwise ops: activations, arithmetic with NumPy broadcasting, comparisons, Where.

Each one writes into the buffer the plan gives it (``out=`` of a ufunc), in place over a dying input
where the shapes allow; integer ``Div`` truncates toward zero as ONNX Runtime does.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import numpy as np

from ..ops import _c
from .registry import Op, broadcast_shape, deliver, register


def c_layout(out: np.ndarray, *arrays):
    """``out`` and ``arrays`` as the C loops take them (a C-contiguous ``out``): as they are, or, where the
    plan's buffer is NHWC in memory, all seen as (N, H, W, C) (operands first broadcast to 4-d, so a
    per-channel (C, 1, 1) one becomes (1, 1, 1, C)); ``(None, arrays)`` for any other memory order."""
    if out.flags.c_contiguous:
        return out, arrays
    if out.ndim != 4 or not out.transpose(0, 2, 3, 1).flags.c_contiguous:
        return None, arrays
    views = []
    for a in arrays:
        if isinstance(a, np.ndarray) and a.ndim:
            a = a.reshape((1,) * (4 - a.ndim) + a.shape).transpose(0, 2, 3, 1)
        views.append(a)
    return out.transpose(0, 2, 3, 1), tuple(views)


class Unary(Op):
    """An activation or math function of one input, written into ``out``."""

    writes_out = True
    in_place = True
    def compute(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    #: the C loop (fastpoint/ops/_c.py, ACTIVATIONS) that runs this op on float32, or None
    c_activation: Optional[str] = None

    def run(self, inputs, outs):
        x = inputs[0]
        out = outs[0] if outs else np.empty(x.shape, x.dtype)
        if self.c_activation is not None and x.dtype == np.float32 and _c.available():
            alpha, beta = (self.attrs["alpha"], self.attrs["beta"]) if self.c_activation == "hardsigmoid" else (0, 0)
            o, (xc,) = c_layout(out, x)
            if o is not None and _c.eltwise(xc, None, None, self.c_activation, alpha, beta, out=o) is not None:
                return [out]
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            self.compute(x, out)
        return [out]


def _unary(op_type: str, fn: Callable[..., None], attributes: Optional[Dict] = None,
           c_activation: Optional[str] = None) -> None:
    """Register a one-line unary op class (the bodies below are the whole difference between them)."""
    cls = type(op_type, (Unary,), {"compute": lambda self, x, out: fn(self, x, out),
                                   "attributes": attributes or {}, "c_activation": c_activation})
    register(op_type)(cls)


def _sigmoid(x, out):
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


def _hard_sigmoid(x, out, alpha, beta):
    np.multiply(x, x.dtype.type(alpha), out=out)
    out += x.dtype.type(beta)
    np.clip(out, 0, 1, out=out)


def _hard_swish(x, out):
    tmp = np.empty_like(x)
    _hard_sigmoid(x, tmp, 1 / 6, 0.5)
    np.multiply(x, tmp, out=out)


def _leaky(x, out, alpha):
    scaled = x * x.dtype.type(alpha)  # a new array: out may be x itself (in place)
    if 0 <= alpha <= 1:  # max(x, alpha*x) picks x for x >= 0 and alpha*x below: the definition, one pass
        np.maximum(x, scaled, out=out)
    else:
        np.copyto(out, np.where(x < 0, scaled, x))


def _elu(x, out, alpha):
    neg = np.expm1(np.minimum(x, 0)) * x.dtype.type(alpha)
    np.copyto(out, np.where(x > 0, x, neg))


def _selu(x, out, alpha, gamma):
    _elu(x, out, alpha)
    out *= x.dtype.type(gamma)


def _softplus(x, out):
    np.logaddexp(x, x.dtype.type(0), out=out)


def _relu(x, out):
    np.maximum(x, x.dtype.type(0), out=out)  # np.maximum propagates NaN: relu(NaN) is NaN, as in PyTorch


_unary("Relu", lambda s, x, o: _relu(x, o), c_activation="relu")
_unary("Sigmoid", lambda s, x, o: _sigmoid(x, o), c_activation="sigmoid")
_unary("Tanh", lambda s, x, o: np.tanh(x, out=o))
_unary("Exp", lambda s, x, o: np.exp(x, out=o))
_unary("Log", lambda s, x, o: np.log(x, out=o))
_unary("Sqrt", lambda s, x, o: np.sqrt(x, out=o))
_unary("Neg", lambda s, x, o: np.negative(x, out=o))
_unary("Abs", lambda s, x, o: np.abs(x, out=o))
_unary("Reciprocal", lambda s, x, o: np.reciprocal(x, out=o))
_unary("Floor", lambda s, x, o: np.floor(x, out=o))
_unary("Ceil", lambda s, x, o: np.ceil(x, out=o))
_unary("Sign", lambda s, x, o: np.sign(x, out=o))
_unary("Softplus", lambda s, x, o: _softplus(x, o))
_unary("Softsign", lambda s, x, o: np.divide(x, 1 + np.abs(x), out=o))
_unary("HardSwish", lambda s, x, o: _hard_swish(x, o), c_activation="hardswish")
_unary("HardSigmoid", lambda s, x, o: _hard_sigmoid(x, o, s.attrs["alpha"], s.attrs["beta"]),
       {"alpha": 0.2, "beta": 0.5}, c_activation="hardsigmoid")
_unary("LeakyRelu", lambda s, x, o: _leaky(x, o, s.attrs["alpha"]), {"alpha": 0.01})
_unary("Elu", lambda s, x, o: _elu(x, o, s.attrs["alpha"]), {"alpha": 1.0})
_unary("Selu", lambda s, x, o: _selu(x, o, s.attrs["alpha"], s.attrs["gamma"]),
       {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})


@register("Clip")
class Clip(Op):
    """``min(max(x, lo), hi)``: bounds from inputs 1 and 2 (opset >= 11) or attributes (before)."""

    attributes = {"min": None, "max": None}
    writes_out = True
    in_place = True

    def run(self, inputs, outs):
        x = inputs[0]
        lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else self.attrs["min"]
        hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else self.attrs["max"]
        out = outs[0] if outs else np.empty(x.shape, x.dtype)
        np.copyto(out, x)
        if lo is not None:
            np.maximum(out, np.asarray(lo, x.dtype), out=out)
        if hi is not None:
            np.minimum(out, np.asarray(hi, x.dtype), out=out)  # NaN stays NaN (np.minimum propagates it)
        return [out]


def _int_div(a, b, out):
    q = np.abs(a) // np.abs(b)
    np.copyto(out, np.where((a < 0) != (b < 0), -q, q))


def _div(a, b, out):
    if out.dtype.kind in "iu":
        _int_div(a, b, out)
    else:
        np.divide(a, b, out=out)


def _pow(a, b, out):
    np.copyto(out, np.power(a, b.astype(a.dtype) if a.dtype.kind == "f" else b).astype(out.dtype))


def _mod(self, a, b, out):
    np.copyto(out, np.fmod(a, b) if self.attrs["fmod"] else np.mod(a, b))


class Binary(Op):
    """Two (or, for Sum/Max/Min/Mean, several) broadcast inputs; the output has input 0's dtype."""

    writes_out = True
    in_place = True
    result_dtype = None  # a comparison's bool

    def compute(self, a, b, out) -> None:
        raise NotImplementedError

    def legacy_shape(self, a_shape, b_shape):
        """Opset < 7's ``broadcast=1, axis=k``: B's dims line up with A's from axis k (else NumPy's rule)."""
        if not self.attrs.get("broadcast") or self.attrs.get("axis") is None or len(b_shape) == len(a_shape):
            return b_shape
        axis = self.attrs["axis"] % len(a_shape)
        return tuple(b_shape) + (1,) * (len(a_shape) - axis - len(b_shape))

    def infer(self, shapes, dtypes, values):
        if any(s is None for s in shapes):
            return None
        dt = np.dtype(self.result_dtype) if self.result_dtype else dtypes[0]
        shapes = [shapes[0]] + [self.legacy_shape(shapes[0], s) for s in shapes[1:]]
        return [(broadcast_shape(*shapes), dt)]

    def run(self, inputs, outs):
        if len(inputs) == 2 and self.attrs.get("broadcast"):
            inputs = [inputs[0], inputs[1].reshape(self.legacy_shape(inputs[0].shape, inputs[1].shape))]
        shape = broadcast_shape(*(x.shape for x in inputs))
        dt = np.dtype(self.result_dtype) if self.result_dtype else inputs[0].dtype
        out = outs[0] if outs else np.empty(shape, dt)
        runner = self._c_runner(inputs, out, shape, dt, copy=True)
        if runner is not None:
            runner()
            return [out]
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if len(inputs) == 1:
                np.copyto(out, inputs[0])
            else:
                self.compute(inputs[0], inputs[1], out)
                for x in inputs[2:]:
                    self.compute(out, x, out)
            if self.op_type == "Mean":
                out /= out.dtype.type(len(inputs))
        return [out]

    def _c_runner(self, inputs, out: np.ndarray, shape, dt, copy: bool):
        """The C loop of a float32 Add/Sub/Mul/Div into ``out`` with its arguments bound, or None. With
        ``copy`` a non-contiguous operand is copied first (a call's), else the case is refused (``bind``:
        the plan's fixed arrays, where a copy made now would go stale)."""
        if not (len(inputs) == 2 and self.op_type in _C_BINARY and dt == np.float32 and _c.available()):
            return None
        a, b = inputs
        if a.shape != shape and self.op_type in ("Add", "Mul"):
            a, b = b, a  # commutative: the full-size operand first (an SE block's x * scale)
        o, (ac, bc) = c_layout(out, a, b)
        if o is None or a.shape != shape or ac.dtype != np.float32 or bc.dtype != np.float32 or ac.ndim == 0:
            return None
        if copy:
            ac, bc = np.ascontiguousarray(ac), np.ascontiguousarray(bc)
        elif not (ac.flags.c_contiguous and bc.flags.c_contiguous):
            return None
        if ac.size == 0:
            return lambda: None
        return _c.bind_eltwise(ac, bc, _C_BINARY[self.op_type], None, 0.0, 0.0, o)

    def bind(self, inputs, outs):
        """The C loop on the plan's fixed arrays (``Plan._program``), or None."""
        if len(inputs) != 2 or self.attrs.get("broadcast") or any(x is None for x in inputs):
            return None
        shape = broadcast_shape(*(x.shape for x in inputs))
        if outs[0].shape != shape:
            return None
        return self._c_runner(inputs, outs[0], shape, inputs[0].dtype, copy=False)

    def flops(self, in_shapes, out_shapes):
        return int(np.prod(out_shapes[0], dtype=np.int64)) * max(len(in_shapes) - 1, 1)


_C_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}  # float32 ops with a C loop (ops/_c.py)


def _binary(op_type: str, fn, result_dtype=None, attributes=None) -> None:
    attributes = {**(attributes or {}), "broadcast": 0, "axis": None}  # the two: opset < 7 only
    cls = type(op_type, (Binary,), {"compute": lambda self, a, b, out: fn(self, a, b, out),
                                    "result_dtype": result_dtype, "attributes": attributes,
                                    "in_place": result_dtype is None})
    register(op_type)(cls)


_binary("Add", lambda s, a, b, o: np.add(a, b, out=o))
_binary("Sub", lambda s, a, b, o: np.subtract(a, b, out=o))
_binary("Mul", lambda s, a, b, o: np.multiply(a, b, out=o))
_binary("Div", lambda s, a, b, o: _div(a, b, o))
_binary("Pow", lambda s, a, b, o: _pow(a, b, o))
_binary("Mod", _mod, attributes={"fmod": 0})
_binary("Sum", lambda s, a, b, o: np.add(a, b, out=o))
_binary("Mean", lambda s, a, b, o: np.add(a, b, out=o))
_binary("Max", lambda s, a, b, o: np.maximum(a, b, out=o))
_binary("Min", lambda s, a, b, o: np.minimum(a, b, out=o))
_binary("Equal", lambda s, a, b, o: np.equal(a, b, out=o), np.bool_)
_binary("Less", lambda s, a, b, o: np.less(a, b, out=o), np.bool_)
_binary("LessOrEqual", lambda s, a, b, o: np.less_equal(a, b, out=o), np.bool_)
_binary("Greater", lambda s, a, b, o: np.greater(a, b, out=o), np.bool_)
_binary("GreaterOrEqual", lambda s, a, b, o: np.greater_equal(a, b, out=o), np.bool_)
_binary("And", lambda s, a, b, o: np.logical_and(a, b, out=o), np.bool_)
_binary("Or", lambda s, a, b, o: np.logical_or(a, b, out=o), np.bool_)
_binary("Xor", lambda s, a, b, o: np.logical_xor(a, b, out=o), np.bool_)


@register("Not")
class Not(Unary):
    def compute(self, x, out):
        np.logical_not(x, out=out)


@register("PRelu")
class PRelu(Binary):
    """``x`` where positive, ``slope * x`` elsewhere; the slope broadcasts to ``x`` (unidirectionally).

    Before opset 7 a 1-d slope of C values was per channel (axis 1).
    """

    def legacy_shape(self, a_shape, b_shape):
        if self.opset < 7 and len(b_shape) == 1 and len(a_shape) > 2 and b_shape[0] == a_shape[1] != 1:
            return (b_shape[0],) + (1,) * (len(a_shape) - 2)
        return b_shape

    def run(self, inputs, outs):
        x, slope = inputs
        return super().run([x, slope.reshape(self.legacy_shape(x.shape, slope.shape))], outs)

    def compute(self, a, b, out):
        np.copyto(out, np.where(a < 0, a * b, a))


@register("Where")
class Where(Op):
    writes_out = True

    def infer(self, shapes, dtypes, values):
        if any(s is None for s in shapes):
            return None
        return [(broadcast_shape(*shapes), dtypes[1])]

    def run(self, inputs, outs):
        c, a, b = inputs
        res = np.where(c, a, b)
        return deliver(res, outs)


_unary("Sin", lambda s, x, o: np.sin(x, out=o))
_unary("Cos", lambda s, x, o: np.cos(x, out=o))
_unary("Tan", lambda s, x, o: np.tan(x, out=o))
_unary("Asin", lambda s, x, o: np.arcsin(x, out=o))
_unary("Acos", lambda s, x, o: np.arccos(x, out=o))
_unary("Atan", lambda s, x, o: np.arctan(x, out=o))
_unary("Sinh", lambda s, x, o: np.sinh(x, out=o))
_unary("Cosh", lambda s, x, o: np.cosh(x, out=o))
_unary("Asinh", lambda s, x, o: np.arcsinh(x, out=o))
_unary("Acosh", lambda s, x, o: np.arccosh(x, out=o))
_unary("Atanh", lambda s, x, o: np.arctanh(x, out=o))
_unary("Round", lambda s, x, o: np.round(x, out=o))  # half to even, as ONNX specifies
_unary("Mish", lambda s, x, o: np.multiply(x, np.tanh(np.logaddexp(x, x.dtype.type(0))), out=o))


def _erf(x: np.ndarray, out: np.ndarray) -> None:
    """Error function, exact per element (math.erf); NumPy has none and SciPy is not a dependency."""
    np.copyto(out, np.frompyfunc(math.erf, 1, 1)(x.astype(np.float64)).astype(x.dtype))


def _gelu(x, out, approximate):
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    else:
        y = 0.5 * x64 * (1 + np.frompyfunc(math.erf, 1, 1)(x64 / np.sqrt(2)).astype(np.float64))
    np.copyto(out, y.astype(x.dtype))


def _swish(x, out, alpha):
    tmp = np.empty_like(x)
    np.multiply(x, x.dtype.type(alpha), out=tmp)
    _sigmoid(tmp, tmp)
    np.multiply(x, tmp, out=out)


_unary("Erf", lambda s, x, o: _erf(x, o))
_unary("Gelu", lambda s, x, o: _gelu(x, o, s.attrs["approximate"]), {"approximate": "none"})
_unary("Swish", lambda s, x, o: _swish(x, o, s.attrs["alpha"]), {"alpha": 1.0})
