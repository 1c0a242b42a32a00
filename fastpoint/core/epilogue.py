"""Fused epilogues: ``y = act(conv(x, w) + bias + residual)`` (docs/epilogues.md).

The ``activation=`` of a layer is parsed once into an :class:`Activation` (or ``None``), part of the
layer's :class:`~fastpoint.core.spec.LayerSpec`; the ``residual=`` of a call is checked here against the
call's output.  :func:`apply_reference` is the NumPy definition every backend is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

#: activation kind -> fp_epilogue.kind (FP_ACT_* of csrc/fastpoint.h)
KINDS = {"none": 0, "relu": 1, "clip": 2, "leaky_relu": 3, "hardswish": 4, "hardsigmoid": 5, "sigmoid": 6,
         "tanh": 7, "prelu": 8}

_NAMED = {
    "relu": ("relu", 0.0, 0.0),
    "relu6": ("clip", 0.0, 6.0),
    "leaky_relu": ("leaky_relu", 0.01, 0.0),
    "hardswish": ("hardswish", 0.0, 0.0),
    "hardsigmoid": ("hardsigmoid", 1.0 / 6.0, 0.5),  # PyTorch's; ONNX HardSigmoid: ("hardsigmoid", 0.2, 0.5)
    "sigmoid": ("sigmoid", 0.0, 0.0),
    "tanh": ("tanh", 0.0, 0.0),
}

ACTIVATION_HELP = ("activation must be None, one of 'relu', 'relu6', 'leaky_relu', 'hardswish', 'hardsigmoid', "
                   "'sigmoid', 'tanh', a tuple ('clip', lo, hi), ('leaky_relu', alpha), ('hardsigmoid', alpha, "
                   "beta) or ('prelu', slopes), or a fastpoint.Activation")


@dataclass(frozen=True)
class Activation:
    """An activation fused into the convolution's store.

    ``kind`` is one of ``relu``, ``clip`` (``alpha`` = lo, ``beta`` = hi), ``leaky_relu`` (slope ``alpha``),
    ``hardswish``, ``hardsigmoid`` (``max(0, min(1, alpha * v + beta))``), ``sigmoid``, ``tanh``, ``prelu``
    (``slopes``: one per output channel, or one for all).  NaN stays NaN for every kind.
    """

    kind: str
    alpha: float = 0.0
    beta: float = 0.0
    slopes: Optional[Tuple[float, ...]] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.kind == "none":
            raise ValueError(f"Activation kind must be one of {sorted(set(KINDS) - {'none'})}, got {self.kind!r}")
        if self.kind == "clip" and not self.alpha <= self.beta:
            raise ValueError(f"clip needs lo <= hi, got lo={self.alpha}, hi={self.beta}")
        if (self.kind == "prelu") != (self.slopes is not None):
            raise ValueError("slopes are given for kind 'prelu', and only for it")

    @property
    def code(self) -> int:
        return KINDS[self.kind]

    def slope_array(self, cout: int, dtype) -> np.ndarray:
        """PReLU's slopes as a C-contiguous (cout,) array of dtype (one slope broadcast to every channel)."""
        s = np.asarray(self.slopes, dtype=dtype)
        return np.ascontiguousarray(np.broadcast_to(s, (cout,)) if s.size == 1 else s)


def _number(name: str, v) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    return float(v)


def parse_activation(activation, cout: int) -> Tuple[bool, Optional[Activation]]:
    """``(relu, act)`` of a layer: relu for the kernels' own fused ReLU (``'relu'``), else act for every other
    activation (None for none).  Raises ValueError / TypeError naming what is wrong."""
    if activation is None:
        return False, None
    if isinstance(activation, str):
        if activation not in _NAMED:
            raise ValueError(f"{ACTIVATION_HELP}; got {activation!r}")
        if activation == "relu":
            return True, None
        kind, a, b = _NAMED[activation]
        act = Activation(kind, a, b)
    elif isinstance(activation, Activation):
        act = activation
    elif isinstance(activation, tuple) and activation and isinstance(activation[0], str):
        kind, args = activation[0], activation[1:]
        arity = {"clip": 2, "leaky_relu": 1, "hardsigmoid": 2, "prelu": 1}
        if kind not in arity or len(args) != arity[kind]:
            raise ValueError(f"{ACTIVATION_HELP}; got {activation!r}")
        if kind == "prelu":
            slopes = np.asarray(args[0])
            if slopes.dtype.kind not in "fiu" or slopes.ndim > 1 or slopes.size < 1:
                raise ValueError(f"prelu slopes must be a real number or a 1-d array, got {args[0]!r}")
            act = Activation("prelu", slopes=tuple(float(s) for s in slopes.reshape(-1)))
        else:
            nums = [_number(f"{kind} parameter", v) for v in args]
            act = Activation(kind, nums[0], nums[1] if len(nums) > 1 else 0.0)
    else:
        raise ValueError(f"{ACTIVATION_HELP}; got {activation!r}")
    if act.kind == "relu":
        return True, None
    if act.kind == "prelu" and len(act.slopes) not in (1, cout):
        raise ValueError(f"prelu needs 1 or Cout={cout} slopes, got {len(act.slopes)}")
    return False, act


def activation_name(relu: bool, act: Optional[Activation]):
    """The activation= value that gives (relu, act) (for reprs)."""
    return "relu" if relu else act


def apply_reference(y: np.ndarray, act: Optional[Activation], channel_axis: int) -> None:
    """``y = act(y)`` in place, as the definitions read (the NumPy reference)."""
    if act is None:
        return
    k, a, b = act.kind, act.alpha, act.beta
    with np.errstate(invalid="ignore", over="ignore"):
        if k == "relu":
            np.maximum(y, 0, out=y)
        elif k == "clip":
            np.clip(y, a, b, out=y)
        elif k == "leaky_relu":
            y[...] = np.where(y < 0, y * y.dtype.type(a), y)
        elif k == "hardswish":  # x * relu6(x + 3) / 6, and 0 from -3 down (-inf included, as PyTorch)
            y[...] = np.where(y <= -3, 0, y * np.clip(y + 3, 0, 6) / 6)
        elif k == "hardsigmoid":
            y[...] = np.clip(y * y.dtype.type(a) + y.dtype.type(b), 0, 1)
        elif k == "sigmoid":
            e = np.exp(-np.abs(y))  # exp of a non-positive number: no overflow
            y[...] = np.where(y < 0, e / (1 + e), 1 / (1 + e))
        elif k == "tanh":
            np.tanh(y, out=y)
        elif k == "prelu":
            shape = [1] * y.ndim
            shape[channel_axis] = y.shape[channel_axis]
            s = act.slope_array(y.shape[channel_axis], y.dtype).reshape(shape)
            y[...] = np.where(y < 0, y * s, y)


def check_residual(residual, out_shape: Tuple[int, ...], dtype: np.dtype, out: Optional[np.ndarray],
                   batched: bool) -> np.ndarray:
    """The residual of a call as a C-contiguous 4-d array of the output's dtype (copied only when the given
    one is not); ValueError / TypeError naming shapes.  It must not overlap ``out``: the kernels write
    partial sums into the output before the residual is read (docs/epilogues.md)."""
    if not isinstance(residual, np.ndarray):
        residual = np.asarray(residual)
    if residual.dtype.kind != "f":
        raise TypeError(f"residual must be a float array, got dtype {residual.dtype}")
    shape = out_shape if batched else out_shape[1:]
    if residual.shape != shape:
        raise ValueError(f"residual must have the output's shape {shape}, got {residual.shape}")
    if out is not None and np.shares_memory(out, residual):
        raise ValueError(f"residual (shape {residual.shape}) overlaps out (shape {out.shape}); the sum cannot be "
                         "written over the residual: pass a separate out array")
    r = np.ascontiguousarray(residual, dtype=dtype)
    return r if batched else r[None]
