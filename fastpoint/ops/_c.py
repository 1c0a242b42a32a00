"""The C backend of the ops (csrc/ops/, docs/ops.md): pooling, separable resize, global average
pooling and elementwise chains on float32 NCHW or NHWC arrays, threaded on fastpoint's pool.

The functions here take arguments the NumPy code has already checked and normalized (the same
window geometry, the same interpolation taps), and return ``None`` where the C loops do not apply
(float64, the extension not built, strides that are not whole elements), so the caller runs its
NumPy reference instead. Inputs may be any strided view; outputs are written into ``out`` (a
C-contiguous array of the result's shape in its layout) or a new array.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

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
    y = _out(out, _out_shape(x4, layout, out_hw))
    run = bind_pool2d(x4, layout, k, s, d, pads, out_hw, kind, divisors, y)
    if run is None:
        return None
    run()
    return y


def bind_pool2d(x4: np.ndarray, layout: str, k, s, d, pads: Sequence[int], out_hw, kind: str,
                divisors: Optional[np.ndarray], y: np.ndarray) -> Optional[Callable[[], None]]:
    """:func:`pool2d` into ``y`` (checked by the caller) as a runner with its arguments made once."""
    xs = _elem_strides(x4)
    if xs is None:
        return None
    xv, yv = _nchw(x4, layout), _nchw(y, layout)
    div = None
    if kind == "mean":
        div = np.ascontiguousarray(np.broadcast_to(divisors, tuple(out_hw)), dtype=np.float32)
    args = (_fptr(xv), _ffi.new("int64_t[4]", _elem_strides(xv)), _fptr(yv), _ffi.new("int64_t[4]", _elem_strides(yv)),
            _ffi.new("int64_t[6]", [*xv.shape, *out_hw]),
            _ffi.new("int64_t[8]", [k[0], k[1], s[0], s[1], d[0], d[1], pads[0], pads[1]]),
            0 if kind == "max" else 1, _fptr(div))
    return _runner(_lib.fp_op_pool2d_f32, args, (x4, y, div), _moved(xv, yv))


def resize2d(x4: np.ndarray, layout: str, taps_h, taps_w, out: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Separable resize: ``taps_*`` is ``(i0, i1, lam)`` per output row/column (linear: ``x[i0] * (1 - lam)
    + x[i1] * lam``, width first) or ``(i0, None, None)`` (nearest); both axes the same kind."""
    if _elem_strides(x4) is None or (taps_h[2] is None) != (taps_w[2] is None):
        return None
    y = _out(out, _out_shape(x4, layout, (len(taps_h[0]), len(taps_w[0]))))
    bind_resize2d(x4, layout, taps_h, taps_w, y)()
    return y


def bind_resize2d(x4: np.ndarray, layout: str, taps_h, taps_w, y: np.ndarray) -> Optional[Callable[[], None]]:
    """:func:`resize2d` into ``y`` (checked by the caller) as a runner with its arguments made once."""
    call = prepare_resize2d(x4, layout, taps_h, taps_w, y)
    if call is None:
        return None
    return lambda: call(x4, y)


def prepare_resize2d(x4: np.ndarray, layout: str, taps_h, taps_w, y: np.ndarray
                     ) -> Optional[Callable[[np.ndarray, np.ndarray], None]]:
    """:func:`resize2d` as ``call(x4, y)`` for any later pair of arrays with the shapes and strides of
    these (checked by the caller): the taps, shapes and strides made into C arguments once, only the two
    data pointers per call. Holds no reference to ``x4`` or ``y`` (a graph output's Resize writes a
    recycled array that must stay referenced by its pool alone: ``Plan._output_buffers``)."""
    if _elem_strides(x4) is None or (taps_h[2] is None) != (taps_w[2] is None):
        return None
    out_hw = (len(taps_h[0]), len(taps_w[0]))
    xv, yv = _nchw(x4, layout), _nchw(y, layout)

    def pairs(t):
        i1 = t[0] if t[1] is None else t[1]
        return np.ascontiguousarray(np.stack([np.asarray(t[0], np.int64), np.asarray(i1, np.int64)], axis=1))

    iy, ix = pairs(taps_h), pairs(taps_w)
    linear = taps_h[2] is not None
    ly = np.ascontiguousarray(taps_h[2], dtype=np.float32) if linear else None
    lx = np.ascontiguousarray(taps_w[2], dtype=np.float32) if linear else None
    xs, ys = _ffi.new("int64_t[4]", _elem_strides(xv)), _ffi.new("int64_t[4]", _elem_strides(yv))
    tail = (_ffi.new("int64_t[6]", [*xv.shape, *out_hw]), _fptr(iy, "int64_t *"), _fptr(ly), _fptr(ix, "int64_t *"),
            _fptr(lx))
    threads = 1 if _moved(xv, yv) < SMALL_OP_BYTES else None
    cast, fn = _ffi.cast, _lib.fp_op_resize2d_f32

    def call(x4: np.ndarray, y: np.ndarray, _keep=(iy, ix, ly, lx, xs, ys, tail)) -> None:
        rc = fn(cast("float *", x4.ctypes.data), xs, cast("float *", y.ctypes.data), ys, *tail,
                threads or get_num_threads())
        if rc:
            _check(rc)

    return call


#: the stem loop's limits (csrc/ops/stem__avx512.c): output channels in at most two vectors; few input
#: channels (an image's), where the NHWC direct kernel's channel lanes would go mostly unused
STEM_MAX_COUT = 32
STEM_MAX_CIN = 4


def prepare_conv_stem(x_shape: Tuple[int, ...], w4: np.ndarray, bias: Optional[np.ndarray], pads: Sequence[int],
                      strides: Sequence[int], dilations: Sequence[int], relu: bool, epilogue,
                      ) -> Optional[Callable[[np.ndarray, np.ndarray], None]]:
    """A float32 stem convolution as ``call(x, y)``: ``x`` contiguous NCHW of shape ``x_shape`` with at
    most ``STEM_MAX_CIN`` channels, ``y`` its output as a contiguous NHWC array (checked by the caller),
    ``w4`` (cout <= ``STEM_MAX_COUT``, cin, kh, kw), one group, symmetric ``pads`` (top, left);
    ``relu`` the layer's ReLU, ``epilogue`` ``(fp_epilogue, kept arrays)`` of its other activation
    (backends/c.py) or None, no residual. None where the loop does not apply (not AVX-512, other shapes)."""
    cout, cin, kh, kw = w4.shape
    if (isa_name() != "avx512" or len(x_shape) != 4 or x_shape[1] != cin or cin > STEM_MAX_CIN
            or not 1 <= cout <= STEM_MAX_COUT or w4.dtype != np.float32):
        return None
    oh = (x_shape[2] + 2 * pads[0] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x_shape[3] + 2 * pads[1] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    if oh <= 0 or ow <= 0:
        return None
    ocp = -(-cout // 16) * 16
    wp = np.zeros((cin * kh * kw, ocp), np.float32)
    wp[:, :cout] = w4.reshape(cout, -1).T
    bp = np.zeros(ocp, np.float32)
    if bias is not None:
        bp[:cout] = bias
    dims = _ffi.new("int64_t[6]", [*x_shape, oh, ow])
    geom = _ffi.new("int64_t[8]", [kh, kw, strides[0], strides[1], dilations[0], dilations[1], pads[0], pads[1]])
    ep, keep = epilogue if epilogue is not None else (_ffi.NULL, None)
    cast, fn, flag = _ffi.cast, _lib.fp_op_conv_stem_f32, int(relu)

    def call(x: np.ndarray, y: np.ndarray, _keep=(wp, bp, dims, geom, ep, keep)) -> None:
        rc = fn(cast("float *", x.ctypes.data), dims, geom, _fptr(wp), _fptr(bp), cout, cast("float *", y.ctypes.data),
                ep, flag, get_num_threads())
        if rc:
            _check(rc)

    return call


def global_avg_pool(x4: np.ndarray, layout: str, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Mean over H and W, keeping them as size 1 (float64 partial sums)."""
    x = np.ascontiguousarray(x4)
    y = _out(out, _out_shape(x, layout, (1, 1)))
    bind_global_avg_pool(x, layout, y)()
    return y


def bind_global_avg_pool(x: np.ndarray, layout: str, y: np.ndarray) -> Callable[[], None]:
    """:func:`global_avg_pool` of a C-contiguous ``x`` into ``y`` (checked by the caller), bound once.

    A pooling whose input fits in one core's L2 (``gap_caller_bytes``) runs on the calling thread: the
    reduction reads its input once at L2 speed on the core whose L2 the producer just filled, and a
    helper would fetch its half from the other core and then join (lraspp's nine SE poolings, 0.3-1 MB
    each, were 0.10 ms at 1 thread and 0.12 ms at 2 in session 9's quiet run; alone, 5-12 us at 1
    thread against 7-13 us at 2, loaded box)."""
    n, c = y.shape[0], y.shape[1 if layout == "NCHW" else 3]
    hw = x.shape[2] * x.shape[3] if layout == "NCHW" else x.shape[1] * x.shape[2]
    return _runner(_lib.fp_op_gap_f32, (_fptr(x), _fptr(y), n, c, hw, int(layout == "NHWC")), (x, y), x.nbytes,
                   small_below=max(SMALL_OP_BYTES, gap_caller_bytes()))


def gap_caller_bytes() -> int:
    """Inputs of global average pooling up to this size run on the calling thread: one core's L2
    (the detected machine's; :func:`fastpoint.core.machine.cache_sizes`)."""
    from ..core.machine import cache_sizes

    return int(cache_sizes()[2]) if GAP_CALLER_BYTES is None else GAP_CALLER_BYTES


#: testing and A/B hook: the byte size below which global average pooling runs on the calling thread
#: (None: one core's L2, :func:`gap_caller_bytes`)
GAP_CALLER_BYTES: Optional[int] = None


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
    if b is not None and _operand_mode(a.shape, b) is None:
        return None
    a = np.ascontiguousarray(a)
    y = _out(out, a.shape)
    if a.size == 0:
        return y
    bind_eltwise(a, None if b is None else np.ascontiguousarray(b), op, act, alpha, beta, y)()
    return y


def bind_eltwise(a: np.ndarray, b: Optional[np.ndarray], op: Optional[str], act: Optional[str], alpha: float,
                 beta: float, y: np.ndarray) -> Optional[Callable[[], None]]:
    """:func:`eltwise` on C-contiguous float32 ``a``, ``b`` and ``y`` (checked by the caller) as a runner
    with its arguments made once; None where ``b`` does not broadcast as the C loop takes it."""
    if b is None:
        mode, op = (0, 1, 1, a.size), None
    else:
        mode = _operand_mode(a.shape, b)
        if mode is None:
            return None
    bmode, outer, mid, inner = mode
    args = (_fptr(a), _fptr(b), _fptr(y), outer, mid, inner, bmode, BINARY[op], ACTIVATIONS[act], float(alpha),
            float(beta))
    return _runner(_lib.fp_op_eltwise_f32, args, (a, b, y), a.nbytes + y.nbytes)


def contiguous(x: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray(x)``, in one threaded C pass where ``x`` is an NHWC-in-memory view (NCHW shape)."""
    if x.ndim == 4 and x.dtype == np.float32 and not x.flags.c_contiguous:
        y = np.empty(x.shape, np.float32)
        if to_layout(x, y):
            return y
    return np.ascontiguousarray(x)


def to_layout(x4: np.ndarray, y4: np.ndarray) -> bool:
    """Copy an image between memory orders in one threaded C pass: ``y4[...] = x4`` where the two (4-d,
    float32, same shape) are C-contiguous NCHW and NHWC in memory, either way round. False (nothing
    written) for any other pair: the caller copies with NumPy."""
    if x4.dtype != np.float32 or y4.dtype != np.float32 or x4.shape != y4.shape or x4.ndim != 4 or not available():
        return False
    n, c, h, w = x4.shape
    if x4.flags.c_contiguous and y4.transpose(0, 2, 3, 1).flags.c_contiguous:
        a, b = c, h * w  # NCHW -> NHWC
    elif y4.flags.c_contiguous and x4.transpose(0, 2, 3, 1).flags.c_contiguous:
        a, b = h * w, c  # NHWC -> NCHW
    else:
        return False
    if x4.size:
        _check(_lib.fp_op_transpose_f32(_fptr(x4), _fptr(y4), n, a, b,
                                        1 if 2 * x4.nbytes < SMALL_OP_BYTES else get_num_threads()))
    return True


#: bytes an op moves (input plus output) below which it runs on one thread whatever the thread count:
#: the pool's wake-up and the split cost more than a second thread saves on less (measured on the
#: networks' SE scales and pools: see docs/networks.md, "Running")
SMALL_OP_BYTES = 1 << 16


def _moved(xv: np.ndarray, yv: np.ndarray) -> int:
    """Bytes of an image op's input and output (what its threads would share)."""
    return xv.size * xv.itemsize + yv.size * yv.itemsize


def _runner(fn, args: tuple, keep: tuple, nbytes: int, small_below: int = SMALL_OP_BYTES) -> Callable[[], None]:
    """``fn(*args, threads)`` as a closure (``keep`` holds the arrays the pointers in ``args`` point into):
    the calling thread's thread count, or one thread for an op that moves fewer bytes than
    ``small_below`` (``SMALL_OP_BYTES`` unless the op says otherwise)."""
    small = nbytes < small_below

    def run(_fn=fn, _args=args, _keep=keep) -> None:
        rc = _fn(*_args, 1 if small else get_num_threads())
        if rc:
            _check(rc)

    return run
