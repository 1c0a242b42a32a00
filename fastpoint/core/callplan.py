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

from typing import Any, Callable, Optional, Tuple

import numpy as np

from .nonfinite import apply_padding_nan
from .spec import ConvSpec

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
