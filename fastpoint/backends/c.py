"""The C backend: kernels in ``csrc/`` compiled into ``fastpoint._cconv`` by cffi at install time.

cffi releases the GIL around every call, so other Python threads run while a kernel does; each call
carries its own thread count, so concurrent calls are independent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..core import threads as _threads
from ..core.callplan import pack_each_call
from ..core.spec import ConvSpec, LayerSpec
from ..core.threads import get_num_threads

try:
    from .. import _cconv

    _ffi, _lib = _cconv.ffi, _cconv.lib
    _IMPORT_ERROR: Optional[str] = None
except ImportError as exc:  # the extension was not built (no compiler at install time)
    _ffi = _lib = None
    _IMPORT_ERROR = str(exc)

#: fp_call_once's "take the exact path" (csrc/fastpoint.h)
CALL_EXACT = 2

_ERRORS = {-1: (MemoryError, "out of memory in a C kernel"),
           -2: (RuntimeError, "packed weights do not match this problem, ISA or dtype"),
           -3: (ValueError, "invalid problem passed to a C kernel")}


@dataclass(frozen=True)
class Packed:
    buffer: np.ndarray  # 64-byte aligned bytes: header + packed weights
    isa: int


def _aligned_bytes(nbytes: int, align: int = 64) -> np.ndarray:
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + nbytes]


#: LayerSpec.algorithm -> fp_conv_problem.algorithm (FP_ALGO_* of csrc/fastpoint.h)
_ALGORITHMS = {"auto": 0, "direct": 1, "winograd": 2}


def _problem(layer: LayerSpec, spec: Optional[ConvSpec] = None):
    p = _ffi.new("fp_conv_problem *")
    p.cin, p.cout, p.kh, p.kw = layer.cin, layer.cout, layer.kh, layer.kw
    p.stride_h, p.stride_w = layer.stride
    p.dil_h, p.dil_w = layer.dilation
    p.groups = layer.groups
    p.layout = 0 if layer.layout == "NCHW" else 1
    p.relu = int(layer.relu)
    p.algorithm = _ALGORITHMS[layer.algorithm]
    p.num_threads = get_num_threads()
    if spec is not None:
        p.n, p.h, p.w, p.oh, p.ow = spec.n, spec.h, spec.w, spec.oh, spec.ow
        p.pad_top, p.pad_left = spec.pad_top, spec.pad_left
    elif layer.padding == "same":  # the top/left share of 'same' padding, as make_spec computes it
        p.pad_top = layer.dilation[0] * (layer.kh - 1) // 2
        p.pad_left = layer.dilation[1] * (layer.kw - 1) // 2
    else:
        p.pad_top, p.pad_left = layer.padding
    return p


def _epilogue(layer: LayerSpec, residual: Optional[np.ndarray]):
    """The fp_epilogue of a call (csrc/fastpoint.h) and the arrays it points into (keep them alive while it
    is used): the layer's activation beyond ReLU, and the call's residual (a C-contiguous array of the
    output's shape and dtype, checked by core/epilogue.py)."""
    ep = _ffi.new("fp_epilogue *")
    act = layer.act
    keep = [residual]
    if act is not None:
        ep.kind, ep.alpha, ep.beta = act.code, act.alpha, act.beta
        if act.slopes is not None:
            slopes = act.slope_array(layer.cout, layer.dtype)
            keep.append(slopes)
            ep.slope = _ffi.from_buffer(slopes)
    if residual is not None:
        ep.residual = _ffi.from_buffer(residual)
    return ep, keep


def _check(code: int) -> None:
    if code != 0:
        exc, msg = _ERRORS.get(code, (RuntimeError, f"C kernel failed with code {code}"))
        raise exc(msg)


def _ptr(arr: Optional[np.ndarray], ctype: str):
    # from_buffer is several times cheaper than arr.ctypes.data, which matters for small layers
    return _ffi.NULL if arr is None else _ffi.from_buffer(ctype, arr)


_problems: dict = {}


def _problem_for(spec: ConvSpec):
    """The C problem struct of a call, cached per (spec, thread count): filling one field by field costs
    more than a tiny kernel, and even a copy of a cached one costs ~1 us of a 10 us layer.  The thread
    count is this Python thread's (thread limits can differ per thread), lowered to one for a call too
    small to pay for waking the pool (``call_threads``); the C side only reads the struct, so calls from
    several Python threads may share one."""
    key = (spec, get_num_threads())
    p = _problems.get(key)
    if p is None:
        if len(_problems) > 512:
            _problems.clear()
        p = _problem(spec.layer, spec)
        p.num_threads = call_threads(spec, key[1])
        _problems[key] = p
    return p


# -- the thread rule: how small a call runs on the calling thread alone --------------------------------

#: a call is split only when its multiply-adds at the FMA peak of one core take at least this many pool
#: wake-and-joins: a split into T parts saves at most (1 - 1/T) of the kernel's time and costs the wake,
#: the join, and the helpers' cold caches (the input and weights the caller's core holds).  Fitted on the
#: 2-vCPU Zen 5 box at 2 threads (docs/call-path.md, "Threads"): 16->16 3x3 @8x8 (1.3 us of FMA at peak,
#: 3.6 us of kernel) lost 10-20 % split; 960 depthwise @7x7 (3.7 us, about 14 us of kernel) gained.
WAKES_PER_SPLIT = 24.0


@functools.cache
def machine_rates(threads: int) -> Tuple[float, float]:
    """What this machine does, measured once per thread count: the pool's wake-and-join of ``threads``
    threads in ns (``fp_measure_pool_wake_ns``, best of 200: the helpers spin between back-to-back calls,
    so that is the cost a loop of calls pays) and one core's float32 FMA peak in flop/ns (best of a few
    tries).  Another job on the machine can only make the first smaller and the second larger, so the
    rule is then more willing to split, as it was before there was a rule."""
    wake = float(_lib.fp_measure_pool_wake_ns(threads, 200))
    flops = float(_lib.fp_measure_fma_peak(1, 0.002))
    return wake, max(flops, 1e-3)


def one_thread_ns(spec: ConvSpec, flops_per_ns: float) -> float:
    """A floor on a call's time on one thread: its multiply-adds at the FMA peak."""
    return spec.flops / flops_per_ns


def call_threads(spec: ConvSpec, threads: int) -> int:
    """The threads a call of ``spec`` uses out of the ``threads`` allowed: all of them, or one when the floor
    on its one-thread time (``one_thread_ns``) is below ``WAKES_PER_SPLIT`` wakes of the pool
    (``machine_rates``), where a split cannot pay (docs/call-path.md, "Threads")."""
    threads = min(threads, max(1, int(_lib.fp_max_threads())))
    if threads <= 1:
        return 1
    if WAKES_PER_SPLIT <= 0:  # every call split (the test suite's thread sweeps: tests/conftest.py)
        return threads
    wake, flops_per_ns = machine_rates(threads)
    return threads if one_thread_ns(spec, flops_per_ns) >= WAKES_PER_SPLIT * wake else 1


def _refuse_bad_env() -> None:
    """A FASTPOINT_KERNEL the tables cannot honour stops the C backend (rather than testing another kernel)."""
    global _env_checked
    if not _env_checked:
        from .kernel_table import env_refusal

        why = env_refusal()
        if why:
            raise ValueError(why)
        _env_checked = True


_env_checked = False


class CBackend:
    name = "c"

    def available(self) -> bool:
        return _lib is not None

    def why_unavailable(self) -> Optional[str]:
        if _lib is None:
            return (f"the C extension fastpoint._cconv is not built ({_IMPORT_ERROR}); reinstall with a C "
                    "compiler present: pip install --force-reinstall --no-deps .")
        return None

    def prepack(self, layer: LayerSpec, weight: np.ndarray, alloc=_aligned_bytes,
                spec: Optional[ConvSpec] = None) -> Packed:
        """The packed weights in ``alloc(nbytes)`` (64-byte aligned bytes; a network's blocks: ops_conv.py).
        With the ``spec`` of the calls they serve, a Winograd layer packs only the U of the tile size that
        spec's map runs (csrc/winograd/winograd.h), else those of both."""
        _refuse_bad_env()
        f64 = int(layer.dtype == np.float64)
        p = _problem(layer, spec)
        buf = alloc(int(_lib.fp_packed_bytes(p, f64)))
        ctype = "double[]" if f64 else "float[]"
        pack = _lib.fp_pack_f64 if f64 else _lib.fp_pack_f32
        _check(pack(p, _ptr(weight, ctype), _ptr(buf, "char[]")))
        return Packed(buf, int(_lib.fp_isa()))

    def run(self, spec: ConvSpec, packed: Any, x: np.ndarray, bias: Optional[np.ndarray],
            out: np.ndarray, residual: Optional[np.ndarray] = None) -> None:
        f64 = x.dtype.char == "d"
        ctype = "double[]" if f64 else "float[]"
        args = (_problem_for(spec), _ptr(x, ctype), _ptr(packed.buffer, "char[]"), _ptr(bias, ctype), _ptr(out, ctype))
        if spec.layer.act is None and residual is None:
            _check((_lib.fp_conv_f64 if f64 else _lib.fp_conv_f32)(*args))
            return
        ep, keep = _epilogue(spec.layer, residual)
        _check((_lib.fp_conv_ep_f64 if f64 else _lib.fp_conv_ep_f32)(*args, ep))
        del keep

    def bind(self, spec: ConvSpec, packed: Any, bias: Optional[np.ndarray], residual: Optional[np.ndarray] = None):
        """``run`` for one spec with the weights' and bias' cffi views made once: ``runner(x, out)``
        (with ``residual``: that fixed array added in the epilogue of every call, ``bind_residual``).

        Per call it then makes only the views of x and out (and the problem struct when this Python
        thread's thread count differs from the last call's): about 0.8 us of Python instead of 1.8.
        The runner holds views of arrays the layer owns (packed weights, bias), never the caller's.
        """
        f64 = spec.layer.dtype == np.float64
        ctype = "double[]" if f64 else "float[]"
        conv = _lib.fp_conv_f64 if f64 else _lib.fp_conv_f32
        wptr, bptr = _ptr(packed.buffer, "char[]"), _ptr(bias, ctype)
        from_buffer = _ffi.from_buffer
        last = (get_num_threads(), _problem_for(spec))  # read and replaced whole: safe across threads
        if spec.layer.act is not None or residual is not None:  # one fp_epilogue for every call (read only)
            ep, keep = _epilogue(spec.layer, residual)
            conv_ep = _lib.fp_conv_ep_f64 if f64 else _lib.fp_conv_ep_f32

            def conv(p, x, w, b, y, _c=conv_ep, _e=ep, _k=keep):
                return _c(p, x, w, b, y, _e)

        def runner(x: np.ndarray, out: np.ndarray) -> None:
            nonlocal last
            threads, problem = last
            if threads != get_num_threads():
                last = threads, problem = get_num_threads(), _problem_for(spec)
            code = conv(problem, from_buffer(ctype, x), wptr, bptr, from_buffer(ctype, out))
            if code:
                _check(code)

        return runner

    def bind_residual(self, spec: ConvSpec, packed: Any, bias: Optional[np.ndarray], residual: np.ndarray):
        """``run(..., residual=residual)`` for one fixed residual array (C-contiguous, of the output's shape
        and dtype: checked by the caller) as ``runner(x, out)``: its fp_epilogue made once, as ``bind``'s
        problem struct. Per call ``run`` would look the problem up by the spec's hash (~3.7 us) and make the
        epilogue (~2.8 us): 11 of lraspp's convolutions add a residual (networks bind them: ops_conv.py).
        None for a subclass that runs kernels of its own (its ``run``, not this one's)."""
        if type(self).run is not CBackend.run:
            return None
        return CBackend.bind(self, spec, packed, bias, residual)

    def bind_call(self, spec: ConvSpec, check_finite: bool, out_shape: Tuple[int, ...]):
        """A one-shot call whole, with its per-call checks in C (csrc/call_entry.c), or None where this
        backend's one-shot runner is another (an activation beyond ReLU; a subclass with kernels of its own).

        ``call(x, w, bias, out)`` takes the caller's arrays as they are, of the plan's dtypes and shapes (any
        number of dimensions: only their memory is passed), and ``out`` None or anything; it returns the
        result (a new array of ``out_shape``, or ``out``), or None having done nothing the caller can see,
        for the caller's exact path to redo the call, copying or raising naming the argument: for an ``out``
        that is not an ndarray of ``out_shape`` and the dtype, an array that is not C-contiguous or an ``out``
        that is read-only (cffi's from_buffer refuses them before any C runs), a pointer not aligned to its
        elements or an ``out`` whose bytes meet an input's (``FP_CALL_EXACT``: the C entry returns before
        reading anything), and the rare call with padding and a NaN or Inf weight (``out`` is then written
        again, with the padding fix-up, core/nonfinite.py)."""
        if spec.layer.act is not None or not self.once_runs_conv(spec):
            return None
        _refuse_bad_env()
        dtype = spec.layer.dtype
        conv, f64, ctype = _lib.fp_call_once, int(dtype == np.float64), "char[]"
        from_buffer, null, check, empty, ndarray = _ffi.from_buffer, _ffi.NULL, int(check_finite), np.empty, np.ndarray
        last = (get_num_threads(), _problem_for(spec))  # read and replaced whole: safe across threads
        local = _threads._local

        def call(x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], out: Optional[np.ndarray]):
            nonlocal last
            if out is None:
                y = empty(out_shape, dtype)
            elif type(out) is ndarray and out.shape == out_shape and (out.dtype is dtype or out.dtype == dtype):
                y = out
            else:
                return None
            threads, problem = last
            if threads != (local.num_threads or _threads._num_threads):  # get_num_threads(), inline
                last = threads, problem = get_num_threads(), _problem_for(spec)
            try:
                code = conv(problem, f64, from_buffer(ctype, x), from_buffer(ctype, w),
                            null if bias is None else from_buffer(ctype, bias), from_buffer(ctype, y, True), check)
            except ValueError:  # not C-contiguous, or out read-only: nothing ran
                return None
            if code == 0:
                return y
            if code < 0:
                _check(code)
            return None  # FP_CALL_EXACT, or 1: a non-finite weight on a call with padding

        return call

    def once_runs_conv(self, spec: ConvSpec) -> bool:
        """Whether this backend's one-shot calls of ``spec`` run ``fp_conv_once_*`` (``bind_once`` below): a
        subclass whose own kernels run some specs (backends/c_lowered.py) says where they do not."""
        return type(self).bind_once is CBackend.bind_once

    def bind_once(self, spec: ConvSpec, check_finite: bool):
        """The one-shot runner of ``spec``: ``runner(x, w, bias, out)`` packs the caller's weights ``w`` into
        this thread's scratch (kept across calls, csrc/oneshot.c) and runs; it returns whether some weight is
        NaN or Inf (looked at only when ``check_finite``: calls with padding, core/nonfinite.py).  An activation
        beyond ReLU (the per-call epilogue, docs/epilogues.md; csrc/oneshot.c has no entry point with one yet):
        packed into a fresh buffer per call and run with the epilogue (``pack_each_call``)."""
        _refuse_bad_env()
        if spec.layer.act is not None:
            return pack_each_call(self, spec, check_finite)
        f64 = spec.layer.dtype == np.float64
        ctype = "double[]" if f64 else "float[]"
        conv = _lib.fp_conv_once_f64 if f64 else _lib.fp_conv_once_f32
        from_buffer, null, check = _ffi.from_buffer, _ffi.NULL, int(check_finite)
        last = (get_num_threads(), _problem_for(spec))  # read and replaced whole: safe across threads

        def runner(x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> bool:
            nonlocal last
            threads, problem = last
            if threads != get_num_threads():
                last = threads, problem = get_num_threads(), _problem_for(spec)
            code = conv(problem, from_buffer(ctype, x), from_buffer(ctype, w),
                        null if bias is None else from_buffer(ctype, bias), from_buffer(ctype, out), check)
            if code < 0:
                _check(code)
            return code == 1

        return runner

    # introspection used by `fastpoint info`, tests and benchmarks
    def kernel_name(self, spec: ConvSpec) -> str:
        f64 = int(spec.layer.dtype == np.float64)
        return _ffi.string(_lib.fp_kernel_name(_problem(spec.layer, spec), f64)).decode()

    def isa(self) -> str:
        return _ffi.string(_lib.fp_isa_name(_lib.fp_isa())).decode()


lib = _lib
ffi = _ffi
