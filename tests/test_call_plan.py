"""Repeat calls of a Conv2d take the call plan (fastpoint/core/callplan.py): same results, same checks.

The bad-argument classes are also run on a layer's second call by tests/test_invalid_subprocess.py
(entry "Conv2d again"); here: valid inputs that must leave the fast path or use it correctly.
"""
import pickle

import numpy as np
import pytest

import fastpoint as fp
from fastpoint import api
from fastpoint.core import callplan
from fastpoint.core.threads import thread_limit

from .conftest import int_array, run_in_threads

KW = dict(padding=1, stride=1)


def _layer(backend, layout="NCHW", w=None, b=None):
    rng = np.random.default_rng(3)
    w = int_array(rng, (6, 4, 3, 3)) if w is None else w
    b = int_array(rng, (6,)) if b is None else b
    return fp.Conv2d(w, b, layout=layout, backend=backend, **KW), w, b


def _ref(x, w, b, layout="NCHW"):
    return fp.conv2d(x, w, b, layout=layout, backend="numpy", **KW)


def test_second_call_uses_the_plan_and_skips_the_full_path(backend, monkeypatch):
    layer, w, b = _layer(backend)
    x = int_array(np.random.default_rng(1), (2, 4, 9, 9))
    out = np.empty((2, 6, 9, 9), np.float32)
    layer(x, out=out)
    assert layer._plan is not None
    want = _ref(x, w, b)

    def full_path(*a, **k):
        raise AssertionError("the full argument path ran on a repeat call")

    monkeypatch.setattr(api, "prepare_input", full_path)
    monkeypatch.setattr(callplan, "check_out", full_path)
    out[:] = np.nan
    assert layer(x, out=out) is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(layer(x), want)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_inputs_that_leave_the_fast_path_still_give_the_reference(backend, layout):
    rng = np.random.default_rng(2)
    layer, w, b = _layer(backend, layout)
    shape = (2, 4, 9, 9) if layout == "NCHW" else (2, 9, 9, 4)
    x = int_array(rng, shape)
    np.testing.assert_array_equal(layer(x), _ref(x, w, b, layout))
    wide = int_array(rng, shape[:-1] + (shape[-1] * 2,))
    raw = np.zeros(x.size * 4 + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(shape)
    misaligned[...] = x + 1
    readonly = x.copy()
    readonly.flags.writeable = False
    for xi in (wide[..., ::2],                       # same shape, not contiguous
               np.asfortranarray(x),                 # same shape, Fortran order
               misaligned,                           # same shape, misaligned
               x.astype(np.float64),                 # same shape, other dtype
               x.tolist(),                           # not an array
               readonly,                             # read-only input is fine
               x[:1],                                # another batch size
               x[0],                                 # unbatched
               x):                                   # back to the first plan's shape
        want = _ref(np.asarray(xi), w, b, layout)
        got = layer(xi)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.asarray(xi).dtype
        got2 = layer(xi)  # the plan of this shape, if it made one
        np.testing.assert_array_equal(got2, want)


def test_unbatched_calls_with_out(backend):
    layer, w, b = _layer(backend)
    x = int_array(np.random.default_rng(4), (4, 7, 7))
    out = np.full((6, 7, 7), np.nan, np.float32)
    for _ in range(3):
        assert layer(x, out=out) is out
        np.testing.assert_array_equal(out, _ref(x, w, b))
        x += 1
    with pytest.raises(ValueError, match="out must have shape"):
        layer(x, out=np.empty((1, 6, 7, 7), np.float32))


def test_out_checks_on_a_repeat_call(backend):
    layer, w, b = _layer(backend)
    x = np.zeros((1, 4, 6, 6), np.float32)
    layer(x, out=np.empty((1, 6, 6, 6), np.float32))
    ro = np.empty((1, 6, 6, 6), np.float32)
    ro.flags.writeable = False
    buf = np.zeros(10_000, np.float32)
    cases = [(np.empty((1, 6, 6, 6), np.float64), TypeError, "dtype"),
             (np.empty((1, 6, 6, 7), np.float32)[..., :6], ValueError, "contiguous"),
             (ro, ValueError, "writable"),
             (np.empty((1, 6, 6, 5), np.float32), ValueError, "shape"),
             ([0.0], TypeError, "numpy.ndarray")]
    for out, exc, word in cases:
        with pytest.raises(exc, match=word):
            layer(x, out=out)
    # out overlapping x: x is a view into the same buffer, of the planned shape
    with pytest.raises(ValueError, match="overlaps x"):
        layer(buf[100:244].reshape(1, 4, 6, 6), out=buf[:216].reshape(1, 6, 6, 6))
    # out overlapping the user's weight or bias of this layer
    wbuf = np.zeros(1000, np.float32)
    layer2 = fp.Conv2d(wbuf[:216].reshape(6, 4, 3, 3), wbuf[300:306], backend=backend, padding=1)
    layer2(x)
    for lo, name in ((0, "weight"), (300, "bias")):
        with pytest.raises(ValueError, match=f"overlaps {name}"):
            layer2(x, out=wbuf[lo:lo + 216].reshape(1, 6, 6, 6))
    # byte ranges that meet without sharing an element go the exact path, which accepts them
    inter = np.zeros(2 * 216, np.float32)
    xs = inter[::2][:144].reshape(1, 4, 6, 6)  # not contiguous: copied, so not the planned fast path
    out = np.empty((1, 6, 6, 6), np.float32)
    np.testing.assert_array_equal(layer(xs, out=out), _ref(xs, w, b))


def test_nonfinite_weights_on_repeat_calls(backend):
    w = np.ones((2, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.nan
    layer = fp.Conv2d(w, None, padding=1, backend=backend)
    x = np.ones((1, 1, 5, 5), np.float32)
    want = fp.conv2d(x, w, padding=1, backend="numpy")
    for _ in range(3):
        np.testing.assert_array_equal(layer(x), want)  # NaN placement included (equal_nan by default)


def test_thread_count_changes_between_calls(backend):
    layer, w, b = _layer(backend)
    x = int_array(np.random.default_rng(5), (1, 4, 20, 20))
    want = _ref(x, w, b)
    before = fp.get_num_threads()
    try:
        for n in (1, 2, 1, 3, 2):
            fp.set_num_threads(n)
            np.testing.assert_array_equal(layer(x), want)
            with thread_limit(1):
                np.testing.assert_array_equal(layer(x), want)
    finally:
        fp.set_num_threads(before)


def test_one_layer_from_several_threads_with_their_own_limits(backend):
    layer, w, b = _layer(backend)
    x = int_array(np.random.default_rng(6), (1, 4, 16, 16))
    want = _ref(x, w, b)
    count = iter(range(100))

    def work():
        n = 1 + next(count) % 2
        out = np.empty_like(want)
        with thread_limit(n):
            for _ in range(30):
                np.testing.assert_array_equal(layer(x, out=out), want)

    run_in_threads(work, 4)


def test_a_used_layer_pickles(any_backend):
    layer, w, b = _layer(any_backend)
    x = int_array(np.random.default_rng(7), (1, 4, 8, 8))
    first = layer(x)
    copy = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(copy(x), first)
    np.testing.assert_array_equal(copy(x), first)


# one case per kernel of each backend (Numba: dense NCHW/NHWC, 1x1 direct, grouped, depthwise per-plane,
# small-plane and NHWC); repeat calls run the bound launcher with its precomputed tables
KINDS = [
    ("NCHW", (2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, activation="relu")),
    ("NHWC", (1, 9, 9, 8), (16, 8, 3, 3), dict(padding=1, stride=2)),
    ("NCHW", (1, 8, 6, 6), (12, 8, 1, 1), {}),
    ("NCHW", (1, 8, 7, 7), (8, 2, 3, 3), dict(groups=4, padding=1)),
    ("NCHW", (2, 16, 7, 7), (16, 1, 3, 3), dict(groups=16, padding=1)),
    ("NCHW", (1, 4, 40, 40), (4, 1, 3, 3), dict(groups=4, padding=1, dilation=2)),
    ("NHWC", (1, 7, 7, 16), (32, 1, 3, 3), dict(groups=16, padding=1)),
]


@pytest.mark.parametrize("layout,xs,ws,kw", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_repeat_calls_of_every_kernel_kind(backend, layout, xs, ws, kw, dtype):
    rng = np.random.default_rng(8)
    x, w = int_array(rng, xs, dtype=dtype), int_array(rng, ws)
    b = int_array(rng, (ws[0],)) if "activation" not in kw else None
    layer = fp.Conv2d(w, b, layout=layout, backend=backend, **kw)
    before = fp.get_num_threads()
    try:
        for threads in (1, 2, 1, 2):
            fp.set_num_threads(threads)
            want = fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw)
            out = np.full_like(want, np.nan)
            assert layer(x, out=out) is out
            np.testing.assert_array_equal(out, want)
            x += 1
    finally:
        fp.set_num_threads(before)


def test_alternating_shapes_each_keep_their_plan(backend, monkeypatch):
    layer, w, b = _layer(backend)
    rng = np.random.default_rng(9)
    xs = [int_array(rng, (1, 4, 9, 9)), int_array(rng, (1, 4, 5, 7)), int_array(rng, (4, 6, 6))]
    wants = [_ref(x, w, b) for x in xs]
    for x in xs:
        layer(x)
    assert len(layer._plans) == 3

    def full_path(*a, **k):
        raise AssertionError("the full argument path ran for a planned shape")

    monkeypatch.setattr(api, "prepare_input", full_path)
    for _ in range(2):
        for x, want in zip(xs, wants):
            np.testing.assert_array_equal(layer(x), want)


def test_one_layer_from_several_threads_with_their_own_shapes(backend):
    layer, w, b = _layer(backend)
    rng = np.random.default_rng(10)
    xs = [int_array(rng, (1, 4, 6 + i, 5 + 2 * i)) for i in range(4)]
    wants = [_ref(x, w, b) for x in xs]
    count = iter(range(100))

    def work():
        i = next(count)
        for k in range(40):
            j = (i + k) % len(xs)
            np.testing.assert_array_equal(layer(xs[j]), wants[j])

    run_in_threads(work, 4)
