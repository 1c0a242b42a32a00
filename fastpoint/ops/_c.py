"""The C backend of the ops (csrc/ops/, docs/ops.md): pooling, separable resize, global average
pooling and elementwise chains on float32 NCHW or NHWC arrays, threaded on fastpoint's pool.

The functions here take arguments the NumPy code has already checked and normalized (the same
window geometry, the same interpolation taps), and return ``None`` where the C loops do not apply
(float64, the extension not built, strides that are not whole elements), so the caller runs its
NumPy reference instead. Inputs may be any strided view; outputs are written into ``out`` (a
C-contiguous array of the result's shape in its layout) or a new array.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..backends.c import _ffi, _lib
from ..core.threads import get_num_threads

BACKENDS = ("auto", "c", "numpy")

#: elementwise operator and activation codes of fp_op_eltwise_f32 (csrc/fastpoint.h)
BINARY = {None: 0, "add": 1, "sub": 2, "mul": 3, "div": 4}
ACTIVATIONS = {None: 0, "relu": 1, "sigmoid": 2, "hardsigmoid": 3, "hardswish": 4, "clip": 5}


def available() -> bool:
    return _lib is not None


def use_c(backend: str, dtype: np.dtype) -> bool:
    """Whether an op with this ``backend=`` argument runs in C for this dtype (``"c"`` without the
    extension, or for float64, raises)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return False
    ok = available() and np.dtype(dtype) == np.float32
    if backend == "c" and not ok:
        why = "the C extension is not built" if not available() else f"the C ops take float32, not {dtype}"
        raise ValueError(f"backend='c' cannot run this op: {why}")
    return ok


def isa_name() -> str:
    return _ffi.string(_lib.fp_op_isa_name()).decode()


def _elem_strides(a: np.ndarray) -> Optional[list]:
    if any(s % a.itemsize for s in a.strides):
        return None
    return [s // a.itemsize for s in a.strides]


def _nchw(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


def _fptr(a: Optional[np.ndarray], ctype: str = "float *"):
    return _ffi.NULL if a is None else _ffi.cast(ctype, a.ctypes.data)


def _check(rc: int) -> None:
    if rc == -1:
        raise MemoryError("fastpoint C op: out of memory")
    if rc:
        raise RuntimeError(f"fastpoint C op failed with code {rc}")  # arguments are checked before: a bug


def _out(out: Optional[np.ndarray], shape: Tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, np.float32)
    if out.shape != tuple(shape) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {tuple(shape)}, got {out.dtype} "
                         f"{out.shape}")
    return out


def _out_shape(x4: np.ndarray, layout: str, out_hw: Sequence[int]) -> Tuple[int, ...]:
    n, c = x4.shape[0], x4.shape[1 if layout == "NCHW" else 3]
    return (n, c, *out_hw) if layout == "NCHW" else (n, *out_hw, c)


def pool2d(x4: np.ndarray, layout: str, k, s, d, pads: Sequence[int], out_hw, kind: str,
           divisors: Optional[np.ndarray] = None, out: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Max (``kind="max"``) or average (``"mean"``: window sums divided by ``divisors``, shape
    ``out_hw``) pooling; ``pads`` is (top, left, bottom, right) (only top and left move windows)."""
    xs = _elem_strides(x4)
    if xs is None:
        return None
    y = _out(out, _out_shape(x4, layout, out_hw))
    xv, yv = _nchw(x4, layout), _nchw(y, layout)
    div = None
    if kind == "mean":
        div = np.ascontiguousarray(np.broadcast_to(divisors, tuple(out_hw)), dtype=np.float32)
    dims = _ffi.new("int64_t[6]", [*xv.shape, *out_hw])
    geom = _ffi.new("int64_t[8]", [k[0], k[1], s[0], s[1], d[0], d[1], pads[0], pads[1]])
    xs = _elem_strides(xv)
    _check(_lib.fp_op_pool2d_f32(_fptr(xv), _ffi.new("int64_t[4]", xs), _fptr(yv),
                                 _ffi.new("int64_t[4]", _elem_strides(yv)), dims, geom, 0 if kind == "max" else 1,
                                 _fptr(div), get_num_threads()))
    return y


def resize2d(x4: np.ndarray, layout: str, taps_h, taps_w, out: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Separable resize: ``taps_*`` is ``(i0, i1, lam)`` per output row/column (linear: ``x[i0] * (1 - lam)
    + x[i1] * lam``, width first) or ``(i0, None, None)`` (nearest); both axes the same kind."""
    xs = _elem_strides(x4)
    if xs is None or (taps_h[2] is None) != (taps_w[2] is None):
        return None
    out_hw = (len(taps_h[0]), len(taps_w[0]))
    y = _out(out, _out_shape(x4, layout, out_hw))
    xv, yv = _nchw(x4, layout), _nchw(y, layout)

    def pairs(t):
        i1 = t[0] if t[1] is None else t[1]
        return np.ascontiguousarray(np.stack([np.asarray(t[0], np.int64), np.asarray(i1, np.int64)], axis=1))

    iy, ix = pairs(taps_h), pairs(taps_w)
    linear = taps_h[2] is not None
    ly = np.ascontiguousarray(taps_h[2], dtype=np.float32) if linear else None
    lx = np.ascontiguousarray(taps_w[2], dtype=np.float32) if linear else None
    dims = _ffi.new("int64_t[6]", [*xv.shape, *out_hw])
    _check(_lib.fp_op_resize2d_f32(_fptr(xv), _ffi.new("int64_t[4]", _elem_strides(xv)), _fptr(yv),
                                   _ffi.new("int64_t[4]", _elem_strides(yv)), dims, _fptr(iy, "int64_t *"),
                                   _fptr(ly), _fptr(ix, "int64_t *"), _fptr(lx), get_num_threads()))
    return y


def global_avg_pool(x4: np.ndarray, layout: str, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Mean over H and W, keeping them as size 1 (float64 partial sums)."""
    x = np.ascontiguousarray(x4)
    y = _out(out, _out_shape(x, layout, (1, 1)))
    n, c = y.shape[0], y.shape[1 if layout == "NCHW" else 3]
    hw = x.shape[2] * x.shape[3] if layout == "NCHW" else x.shape[1] * x.shape[2]
    _check(_lib.fp_op_gap_f32(_fptr(x), _fptr(y), n, c, hw, int(layout == "NHWC"), get_num_threads()))
    return y


def _operand_mode(a_shape: Tuple[int, ...], b: np.ndarray):
    """How ``b`` broadcasts against ``a``: ``(bmode, outer, mid, inner)`` or ``None`` (not a C case)."""
    total = int(np.prod(a_shape, dtype=np.int64))
    if b.size == 1:
        return 4, 1, 1, total
    if b.shape == a_shape:
        return 1, 1, 1, total
    if b.ndim > len(a_shape):
        return None
    bs = (1,) * (len(a_shape) - b.ndim) + tuple(b.shape)
    axes = [i for i, n in enumerate(bs) if n != 1]
    if len(axes) != 1 or bs[axes[0]] != a_shape[axes[0]]:
        return None
    ax = axes[0]
    outer = int(np.prod(a_shape[:ax], dtype=np.int64))
    inner = int(np.prod(a_shape[ax + 1:], dtype=np.int64))
    if inner == 1:  # the last axis (NHWC's channels): one value per element of each row
        return 3, outer, 1, a_shape[ax]
    return 2, outer, a_shape[ax], inner


def eltwise(a: np.ndarray, b: Optional[np.ndarray], op: Optional[str], act: Optional[str] = None,
            alpha: float = 0.0, beta: float = 0.0, out: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """``act(a op b)`` with ``b`` None, a scalar, of ``a``'s shape or one value per index of one axis
    (a channel); float32 ``a`` and ``b``. ``None`` where this is not such a case."""
    if a.dtype != np.float32 or (b is not None and b.dtype != np.float32) or op not in BINARY \
            or act not in ACTIVATIONS or a.ndim == 0:  # (np.ascontiguousarray would make a 0-d ``a`` 1-d)
        return None
    if b is None:
        mode = (0, 1, 1, a.size)
        op = None
    else:
        mode = _operand_mode(a.shape, b)
        if mode is None:
            return None
        b = np.ascontiguousarray(b)
    a = np.ascontiguousarray(a)
    y = _out(out, a.shape)
    if a.size == 0:
        return y
    bmode, outer, mid, inner = mode
    _check(_lib.fp_op_eltwise_f32(_fptr(a), _fptr(b), _fptr(y), outer, mid, inner, bmode, BINARY[op],
                                  ACTIVATIONS[act], float(alpha), float(beta), get_num_threads()))
    return y
