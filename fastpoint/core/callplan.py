"""The call plan: what a call's arguments were validated into, kept by a layer or used once.

Every convolution call goes one way (docs/call-path.md)::

    arguments --parse--> CallPlan (validated spec, backend runner, weights packed or not) --run--> result

* **Kept** (``CallPlan.kept``): a ``Conv2d`` parses its first call of an input shape and dtype, binds the
  plan to its packed weights and keeps it (one per shape and dtype, at most 17 per layer).  A repeat call
  with an input of that shape and dtype re-checks only what can differ between two arrays of the same
  shape (``call``): their type, dtype, contiguity, alignment, writability and memory overlap.  Anything else
  (a non-contiguous or misaligned input, an ``out`` that fails a check) goes the full path, which copies,
  or raises the same errors as before.
* **Used once** (``CallPlan.once``): ``conv2d()`` / ``conv1x1()`` / ``conv1d()`` parse their arguments into a
  plan cached on the argument *facts* (``remember`` and ``CallPlan.matches`` for conv2d / conv1x1, keyed on
  dtype type codes; ``one_shot_plan`` for the others), which holds no array: each call brings its own
  weights, packed for that call only (``call_once``; the C backend packs into per-thread scratch reused
  across calls), so a caller changing its arrays in place between calls always gets the new result.  On
  the C backend the call itself is ``CallPlan.fast`` (backends/c.py ``bind_call``): the per-call memory
  checks and the kernel in one C entry, the exact path (``call_once_exact``) only when a check fails.

Both forms share the output checks (``_fast_out``: a fast check on cached facts, the full ``check_out`` when
it fails; the C entry's, for ``fast``) and the padding fix-up for non-finite weights (core/nonfinite.py).
Nothing is skipped: the checks are the same, done on cached facts.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .epilogue import check_residual
from .nonfinite import apply_padding_nan, nonfinite_taps
from .spec import ConvSpec, c_array, check_out

# np.may_share_memory without its __array_function__ dispatch (half of its 0.2 us); same C function
_may_share_memory = getattr(np.may_share_memory, "_implementation", np.may_share_memory)


class CallPlan:
    """One validated call (spec, backend, input shape, dtype), kept with packed weights or used once.

    ``run`` is the backend's bound runner: ``run(x4, out4)`` for a kept plan (``bind``, else a closure over
    ``backend.run``), ``run(x4, w, b, out4) -> bool`` for a one-shot plan (``bind_once``: packs ``w`` and says
    whether some weight was non-finite, asked only when the call has padding).
    """

    __slots__ = ("x_shape", "spec", "dtype", "batched", "out_shape", "user_out_shape", "padded", "run",
                 "run_residual", "bind_residual", "bad_taps", "params", "cast_w", "cast_b", "fast", "facts")

    def __init__(self, spec: ConvSpec, batched: bool, x_shape: Tuple[int, ...]) -> None:
        self.x_shape = x_shape
        self.spec = spec
        self.dtype = spec.layer.dtype
        self.batched = batched
        self.out_shape = spec.out_shape
        self.user_out_shape = spec.out_shape if batched else spec.out_shape[1:]
        self.padded = bool(spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right)
        self.bad_taps: Optional[np.ndarray] = None
        self.params: Tuple[np.ndarray, ...] = ()
        self.cast_w = self.cast_b = False
        self.fast: Optional[Callable[..., Optional[np.ndarray]]] = None
        #: a kept plan's ``bind_residual(res4) -> run(x4, out4) or None`` for one fixed residual array (the
        #: backend's epilogue made once: a network's arena), or None where the backend has no such binding
        self.bind_residual: Optional[Callable[[np.ndarray], Callable[[np.ndarray, np.ndarray], None]]] = None
        self.facts: Optional[tuple] = None

    # -- the two forms --------------------------------------------------------------------------------

    @classmethod
    def kept(cls, spec: ConvSpec, batched: bool, x_shape: Tuple[int, ...], backend: Any, packed: Any,
             bias: Optional[np.ndarray], bad_taps: Optional[np.ndarray], user_params) -> CallPlan:
        """A layer's plan: its packed weights and bias bound into the runner, ``bad_taps`` its non-finite
        weights (core/nonfinite.py), ``user_params`` the caller's (name, array) pairs for the overlap check."""
        plan = cls(spec, batched, x_shape)
        plan.bad_taps = bad_taps
        plan.params = tuple(arr for _, arr in user_params if arr is not None)
        bind = getattr(backend, "bind", None)
        if bind is not None:
            plan.run = bind(spec, packed, bias)
        else:
            def run(x4: np.ndarray, out4: np.ndarray, _r=backend.run, _s=spec, _p=packed, _b=bias) -> None:
                _r(_s, _p, x4, _b, out4)
            plan.run = run

        def run_residual(x4: np.ndarray, out4: np.ndarray, res4: np.ndarray, _r=backend.run, _s=spec,
                         _p=packed, _b=bias) -> None:  # a call's residual: the backend's per-call epilogue
            _r(_s, _p, x4, _b, out4, residual=res4)
        plan.run_residual = run_residual
        bind_residual = getattr(backend, "bind_residual", None)
        if bind_residual is not None:
            plan.bind_residual = partial(bind_residual, spec, packed, bias)
        return plan

    @classmethod
    def once(cls, spec: ConvSpec, batched: bool, x_shape: Tuple[int, ...], backend: Any,
             w_dtype: np.dtype, b_dtype: Optional[np.dtype]) -> CallPlan:
        """A one-shot call's plan: the backend's one-shot runner; the weight and bias dtypes of the parse key
        say whether each call casts them."""
        plan = cls(spec, batched, x_shape)
        plan.cast_w = w_dtype != plan.dtype
        plan.cast_b = b_dtype is not None and b_dtype != plan.dtype
        plan.run = backend_once(backend, spec, plan.padded)
        bind_call = getattr(backend, "bind_call", None)
        if bind_call is not None and not (plan.cast_w or plan.cast_b):
            plan.fast = bind_call(spec, plan.padded, plan.user_out_shape)
        return plan

    # -- kept: repeat calls of a layer ----------------------------------------------------------------

    def accepts(self, x) -> bool:
        """Whether ``x`` can use this kept plan: an ndarray of the planned shape and dtype, used as it is."""
        if type(x) is not np.ndarray or x.shape != self.x_shape or x.dtype != self.dtype:
            return False
        flags = x.flags
        return flags.c_contiguous and flags.aligned

    def call(self, x: np.ndarray, out: Optional[np.ndarray],
             residual: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """A kept plan's result for an ``x`` it accepts (and a ``residual``, if any, of the result's shape and
        dtype, C-contiguous and aligned: Conv2d checks it), or None when ``out`` failed a fast check (the
        caller then takes the full path, ``call_checked``)."""
        batched = self.batched
        res4 = None if residual is None else residual if batched else residual[None]
        if out is None:
            result = np.empty(self.out_shape, dtype=self.dtype)
            self._compute(x if batched else x[None], result, res4)
            return result if batched else result[0]
        out4 = self._fast_out(out, x, self.params if residual is None else self.params + (residual,))
        if out4 is None:
            return None
        self._compute(x if batched else x[None], out4, res4)
        return out

    def call_checked(self, x4: np.ndarray, out: Optional[np.ndarray], inputs,
                     residual: Optional[np.ndarray] = None) -> np.ndarray:
        """A kept plan's full path: ``x4`` the checked 4-d input, ``out`` checked exactly against ``inputs``
        (the caller's (name, array) pairs, named in the errors), then the ``residual``
        (core/epilogue.py ``check_residual``: converted where needed, refused where it meets ``out``)."""
        result = np.empty(self.out_shape, dtype=self.dtype) if out is None else \
            check_out(out, self.spec, self.dtype, self.batched, inputs)
        res4 = None if residual is None else check_residual(residual, self.out_shape, self.dtype, out, self.batched)
        if self.spec.n > 0:
            self._compute(x4, result, res4)
        if out is not None:
            return out
        return result if self.batched else result[0]

    def _compute(self, x4: np.ndarray, out4: np.ndarray, res4: Optional[np.ndarray] = None) -> None:
        if res4 is None:
            self.run(x4, out4)
        else:
            self.run_residual(x4, out4, res4)
        if self.bad_taps is not None:
            apply_padding_nan(self.spec, self.bad_taps, out4)

    # -- once: one-shot calls -------------------------------------------------------------------------

    def call_once(self, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
                  out: Optional[np.ndarray]) -> np.ndarray:
        """The result of a one-shot call with these arrays (of the facts the plan was parsed from).

        Where the backend checks a call's memory itself (``fast``: the C entry, backends/c.py ``bind_call``),
        the arrays go to it as they are, in one C call; a call that fails a check there (an ``out`` of
        another shape or dtype, an array not C-contiguous or misaligned, ``out`` read-only or meeting an
        input) comes back undone and takes the exact path, which copies or raises naming the argument."""
        fast = self.fast
        if fast is not None:
            y = fast(x, weight, bias, out)
            if y is not None:
                return y
        return self.call_once_exact(x, weight, bias, out)

    def call_once_exact(self, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
                         out: Optional[np.ndarray]) -> np.ndarray:
        """``call_once`` with the checks and copies in Python (``check_out`` for an out that fails a fast one)."""
        dtype = self.dtype
        flags = x.flags
        x4 = x if flags.c_contiguous and flags.aligned else c_array(x)
        if not self.batched:
            x4 = x4[None]
        flags = weight.flags
        w = weight if flags.c_contiguous and flags.aligned and not self.cast_w else c_array(weight, dtype)
        b = bias
        if bias is not None:
            flags = bias.flags
            if not (flags.c_contiguous and flags.aligned) or self.cast_b:
                b = c_array(bias, dtype)
        if out is None:
            result = np.empty(self.out_shape, dtype=dtype)
        else:
            result = self._fast_out(out, x, (weight,) if bias is None else (weight, bias))
            if result is None:  # the exact checks: they raise, naming the argument, or accept
                result = check_out(out, self.spec, dtype, self.batched,
                                   (("x", x), ("weight", weight), ("bias", bias)))
        if self.spec.n > 0 and self.run(x4, w, b, result):
            taps = nonfinite_taps(w)
            if taps is not None:
                apply_padding_nan(self.spec, taps, result)
        if out is not None:
            return out
        return result if self.batched else result[0]

    def matches(self, x, weight, bias, numbers: tuple) -> bool:
        """Whether a call whose ``remember`` key found this plan has the exact facts it was parsed from:
        ndarrays of its dtypes (the key holds their type codes, which byte order does not change) and
        ``numbers`` of plain types (``True == 1`` and ``1.0 == 1`` hash alike but validate differently).
        (api.py's callers first try the same test by identity alone, inline: ``facts`` is
        ``(x dtype, weight dtype, bias dtype) + numbers``, and small ints and interned strings are the
        parsed objects themselves.)"""
        x_dtype, w_dtype, b_dtype = self.facts[:3]
        if type(x) is not np.ndarray or type(weight) is not np.ndarray:
            return False
        if not (x.dtype is x_dtype or x.dtype == x_dtype) or not (weight.dtype is w_dtype or weight.dtype == w_dtype):
            return False
        if bias is not None and (type(bias) is not np.ndarray or not (bias.dtype is b_dtype or bias.dtype == b_dtype)):
            return False
        return _plain(numbers)

    # -- shared ---------------------------------------------------------------------------------------

    def _fast_out(self, out, x: np.ndarray, params: Tuple[np.ndarray, ...]) -> Optional[np.ndarray]:
        """``out`` as a 4-d view when it passes ``check_out``'s checks on cached facts, else None (then
        ``check_out`` decides exactly, and names what fails)."""
        if (type(out) is not np.ndarray or out.shape != self.user_out_shape or out.dtype != self.dtype
                or not out.flags.carray):  # carray: C-contiguous, aligned and writable
            return None
        # byte ranges that meet: check_out decides exactly (np.shares_memory) and names the array
        if _may_share_memory(out, x):
            return None
        for arr in params:
            if _may_share_memory(out, arr):
                return None
        return out if self.batched else out[None]


def backend_once(backend: Any, spec: ConvSpec, padded: bool) -> Callable[..., bool]:
    """The backend's one-shot runner for ``spec`` (``bind_once``), else prepack-and-run on each call."""
    bind_once = getattr(backend, "bind_once", None)
    if bind_once is not None:
        return bind_once(spec, padded)
    return pack_each_call(backend, spec, padded)


def pack_each_call(backend: Any, spec: ConvSpec, padded: bool) -> Callable[..., bool]:
    """A one-shot runner that packs with ``backend.prepack`` (a fresh packing) and runs ``backend.run``."""
    layer = spec.layer

    def run(x4: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], out4: np.ndarray) -> bool:
        backend.run(spec, backend.prepack(layer, w), x4, b, out4)
        return padded and not (np.isfinite(w.max()) and np.isfinite(w.min()))

    return run


# --------------------------------------------------------------------------------------------------
# the parse cache of one-shot calls

_ONE_SHOT: Dict[tuple, Any] = {}


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


def one_shot_plan(key: tuple, numbers: tuple, parse: Callable[[], Any]) -> Any:
    """The plan of a one-shot call: from the parse cache when an earlier call had the same argument facts
    (``key``: the op, the shapes and dtypes of the arrays, the exact values of ``numbers`` (stride, padding,
    dilation, groups, ...) and the names (activation, layout, backend, ...)), else ``parse()``, which
    validates everything and raises on bad input.  Validation depends on nothing else, so a cached plan is
    what ``parse()`` would return; contiguity, alignment, casts and ``out`` are handled per call
    (``CallPlan.call_once``)."""
    if not _plain(numbers):  # before the look-up: True would find the plan of 1
        return parse()
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


def remember(key: tuple, plan: CallPlan, x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
             numbers: tuple) -> None:
    """Keep a freshly parsed one-shot plan under a key of its argument facts that holds the arrays' shapes
    and dtype type codes, the ``numbers`` and the names; ``CallPlan.matches`` then checks, on a hit, what
    the key leaves out (api.py's ``conv2d``: the cheapest key that stays exact).  Only calls with plain
    arrays and numbers are kept."""
    if not (type(x) is np.ndarray and type(weight) is np.ndarray and (bias is None or type(bias) is np.ndarray)
            and _plain(numbers)):
        return
    plan.facts = (x.dtype, weight.dtype, None if bias is None else bias.dtype) + numbers
    if len(_ONE_SHOT) >= 256:  # many shapes (dask chunks): keep it bounded
        _ONE_SHOT.clear()
    _ONE_SHOT[key] = plan
