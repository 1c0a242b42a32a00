"""The fast path of ``Conv2d.__call__``: what an earlier call validated, re-checked cheaply.

A small layer's kernel takes 10-30 us (MobileNet depthwise at 7x7-14x14), and the full argument
path (``prepare_input``, spec lookup, ``check_out``, the C problem lookup, four cffi views) cost
about 4.5 us more on every call.  The first call of a layer on an input shape takes that path and
then records a :class:`CallPlan` (one per input shape and dtype, at most 17 per layer).  Later calls
with an input of a planned shape and dtype re-check only what can differ between two arrays of the
same shape: their type, dtype, contiguity, alignment, writability and memory overlap.  Anything else
(a non-contiguous or misaligned input, an ``out`` that fails a check) goes the full path, which
copies, or raises the same errors as before.  Nothing is skipped: the checks are the same, done on
cached facts.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .nonfinite import apply_padding_nan, nonfinite_taps
from .spec import ConvSpec, c_array, check_out

# np.may_share_memory without its __array_function__ dispatch (half of its 0.2 us); same C function
_may_share_memory = getattr(np.may_share_memory, "_implementation", np.may_share_memory)


class CallPlan:
    """One validated (layer, backend, input shape, dtype): everything a repeat call needs.

    ``run(x4, out4)`` computes into a 4-d view; it is the backend's bound runner (``bind``) when the
    backend has one, else a closure over ``backend.run``.
    """

    __slots__ = ("x_shape", "dtype", "batched", "out_shape", "user_out_shape", "run", "spec", "bad_taps",
                 "params")

    def __init__(self, x_shape: Tuple[int, ...], spec: ConvSpec, batched: bool, backend: Any, packed: Any,
                 bias: Optional[np.ndarray], bad_taps: Optional[np.ndarray], user_params) -> None:
        self.x_shape = x_shape
        self.dtype = spec.layer.dtype
        self.batched = batched
        self.spec = spec
        self.out_shape = spec.out_shape
        self.user_out_shape = spec.out_shape if batched else spec.out_shape[1:]
        self.bad_taps = bad_taps
        bind = getattr(backend, "bind", None)
        run: Callable[[np.ndarray, np.ndarray], None]
        if bind is not None:
            run = bind(spec, packed, bias)
        else:
            def run(x4: np.ndarray, out4: np.ndarray, _r=backend.run, _s=spec, _p=packed, _b=bias) -> None:
                _r(_s, _p, x4, _b, out4)
        self.run = run
        self.params = tuple(arr for _, arr in user_params if arr is not None)  # for the out= overlap check

    def call(self, x: np.ndarray, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The result of the call, or None when a check failed (the caller then takes the full path)."""
        if out is None:
            result = np.empty(self.out_shape, dtype=self.dtype)
            self._compute(x, result)
            return result if self.batched else result[0]
        if (type(out) is not np.ndarray or out.shape != self.user_out_shape or out.dtype != self.dtype
                or not out.flags.carray):  # carray: C-contiguous, aligned and writable
            return None
        # byte ranges that meet: the full path decides exactly (np.shares_memory) and names the array
        if _may_share_memory(out, x):
            return None
        for arr in self.params:
            if _may_share_memory(out, arr):
                return None
        self._compute(x, out if self.batched else out[None])
        return out

    def _compute(self, x: np.ndarray, out4: np.ndarray) -> None:
        self.run(x if self.batched else x[None], out4)
        if self.bad_taps is not None:
            apply_padding_nan(self.spec, self.bad_taps, out4)

    def accepts(self, x) -> bool:
        """Whether ``x`` can use this plan: an ndarray of the planned shape and dtype, used as it is."""
        if type(x) is not np.ndarray or x.shape != self.x_shape or x.dtype != self.dtype:
            return False
        flags = x.flags
        return flags.c_contiguous and flags.aligned


# --------------------------------------------------------------------------------------------------
# one-shot calls: conv2d() / conv1x1()


class OneShotPlan:
    """The parse of one-shot calls with the same argument facts: the validated spec and the backend's
    one-shot runner.  It holds no array: each call brings its own weights, packed for that call only
    (the C backend packs into per-thread scratch reused across calls, csrc/oneshot.c), so a caller
    changing its arrays in place between calls always gets the new result.

    ``run(x4, w, b, out4)`` computes into a 4-d view and says whether some weight was non-finite (asked
    only when the call has padding: core/nonfinite.py).
    """

    __slots__ = ("spec", "dtype", "batched", "out_shape", "run", "padded")

    def __init__(self, spec: ConvSpec, batched: bool, backend: Any) -> None:
        self.spec = spec
        self.dtype = spec.layer.dtype
        self.batched = batched
        self.out_shape = spec.out_shape
        self.padded = bool(spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right)
        self.run = backend_once(backend, spec, self.padded)

    def call(self, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], out: Optional[np.ndarray]):
        dtype, spec = self.dtype, self.spec
        x4 = c_array(x)
        if not self.batched:
            x4 = x4[None]
        w = c_array(weight, dtype)
        b = None if bias is None else c_array(bias, dtype)
        if out is None:
            result = np.empty(self.out_shape, dtype=dtype)
        else:
            result = check_out(out, spec, dtype, self.batched, (("x", x), ("weight", weight), ("bias", bias)))
        if spec.n > 0 and self.run(x4, w, b, result):
            taps = nonfinite_taps(w)
            if taps is not None:
                apply_padding_nan(spec, taps, result)
        if out is not None:
            return out
        return result if self.batched else result[0]


def backend_once(backend: Any, spec: ConvSpec, padded: bool) -> Callable[..., bool]:
    """The backend's one-shot runner for ``spec`` (``bind_once``), else prepack-and-run on each call."""
    bind_once = getattr(backend, "bind_once", None)
    if bind_once is not None:
        return bind_once(spec, padded)
    layer = spec.layer

    def run(x4: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], out4: np.ndarray) -> bool:
        backend.run(spec, backend.prepack(layer, w), x4, b, out4)
        return padded and not (np.isfinite(w.max()) and np.isfinite(w.min()))

    return run


_ONE_SHOT: Dict[tuple, OneShotPlan] = {}


def _plain(numbers: tuple) -> bool:
    """Whether the integer parameters can be part of a parse key: exact ints, strings ('same'), or pairs of
    exact ints.  ``True == 1`` and ``np.int64(1) == 1`` hash alike but validate differently (a bool stride
    is an error): such calls take the full parse every time."""
    for v in numbers:
        t = type(v)
        if t is not int and t is not str and not (t is tuple and len(v) == 2 and type(v[0]) is int
                                                  and type(v[1]) is int):
            return False
    return True


def one_shot_plan(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], numbers: tuple, names: tuple,
                  parse: Callable[[], OneShotPlan]) -> OneShotPlan:
    """The plan of a one-shot call on ndarrays: from the parse cache when an earlier call had the same
    argument facts (shapes and dtypes of the arrays, the exact values of ``numbers`` (stride, padding,
    dilation, groups) and ``names`` (activation, layout, backend)), else ``parse()``, which validates
    everything and raises on bad input.  Validation depends on nothing else, so a cached plan is what
    ``parse()`` would return; contiguity and alignment are handled per call (OneShotPlan.call)."""
    if not _plain(numbers):
        return parse()
    key = (x.shape, x.dtype, weight.shape, weight.dtype, None if bias is None else (bias.shape, bias.dtype),
           numbers, names)
    try:
        plan = _ONE_SHOT.get(key)
    except TypeError:  # an unhashable activation, layout or backend: parse() names it
        return parse()
    if plan is None:
        plan = parse()
        if len(_ONE_SHOT) >= 256:  # many shapes (dask chunks): keep it bounded
            _ONE_SHOT.clear()
        _ONE_SHOT[key] = plan
    return plan
