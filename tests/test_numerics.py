"""IEEE special values on every backend and kernel family, and the C backend's flush-to-zero mode.

* NaN in an input pixel gives NaN in exactly the outputs whose window covers it - zero weights
  included (0 * NaN is NaN: no kernel may skip a zero weight) - with or without ReLU
  (ReLU(NaN) = NaN, as in PyTorch).
* +Inf with positive weights gives +Inf over the window; ReLU(-Inf) = 0.
* The C and Numba kernels read subnormal inputs as zero and write subnormal results as zero
  (FTZ/DAZ, see docs/guarantees.md), on every thread of the call, and put the caller's (and, for
  Numba, each worker thread's) floating-point mode back.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array

# (name, x shape NCHW, weight shape, conv kwargs)
FAMILIES = [
    ("dense3x3", (2, 5, 9, 8), (7, 5, 3, 3), dict(padding=1)),
    ("pointwise", (1, 17, 6, 7), (9, 17, 1, 1), dict()),
    ("pointwise-stride2", (1, 16, 9, 9), (32, 16, 1, 1), dict(stride=2)),
    ("depthwise", (1, 16, 9, 10), (16, 1, 3, 3), dict(padding=1, groups=16)),
    ("depthwise-mult2-s2", (2, 8, 11, 9), (16, 1, 5, 5), dict(padding=2, groups=8, stride=2)),
    ("grouped", (1, 12, 8, 8), (6, 4, 3, 3), dict(padding=(1, 0), groups=3)),
    ("strided-dilated", (1, 4, 13, 12), (5, 4, 3, 3), dict(stride=2, dilation=2, padding=2)),
    ("same-even-kernel", (1, 3, 7, 9), (4, 3, 2, 4), dict(padding="same")),
]
LAYOUTS = ["NCHW", "NHWC"]


def _to_layout(a, layout):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layout == "NHWC" else a


def _window_mask(marked, weight, kwargs, layout):
    """Outputs whose receptive field contains a marked input pixel (an all-ones conv of the marks)."""
    ones = np.ones_like(weight, dtype=np.float64)
    hits = fp.conv2d(_to_layout(marked.astype(np.float64), layout), ones, layout=layout, backend="numpy", **kwargs)
    return hits > 0


def _special_pixels(shape, rng, count=3):
    marked = np.zeros(shape, bool)
    marked[0, 0, 0, 0] = True  # the top-left pixel is in some window whatever the stride
    for _ in range(count):
        marked[tuple(int(rng.integers(0, s)) for s in shape)] = True
    return marked


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("family", FAMILIES, ids=[f[0] for f in FAMILIES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_spreads_over_exactly_its_windows(any_backend, family, layout, dtype):
    _, xs, ws, kwargs = family
    rng = np.random.default_rng(0)
    x = int_array(rng, xs, dtype=dtype)
    w = int_array(rng, ws, dtype=dtype)
    w.reshape(-1)[::3] = 0  # zero weights must not hide a NaN
    marked = _special_pixels(xs, rng)
    x[marked] = np.nan
    mask = _window_mask(marked, w, kwargs, layout)
    for act in (None, "relu"):
        y = fp.conv2d(_to_layout(x, layout), w, layout=layout, activation=act, backend=any_backend, **kwargs)
        assert mask.any()
        np.testing.assert_array_equal(np.isnan(y), mask, err_msg=f"activation={act}")
        if act == "relu":
            assert (y[~mask] >= 0).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_inf_spreads_and_relu_of_minus_inf_is_zero(any_backend, family, layout):
    _, xs, ws, kwargs = family
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=xs).astype(np.float32)
    w = rng.integers(1, 3, size=ws).astype(np.float32)  # positive: no inf - inf
    marked = _special_pixels(xs, rng)
    mask = _window_mask(marked, w, kwargs, layout)
    for sign in (1, -1):
        xi = x * sign
        xi[marked] = sign * np.inf
        y = fp.conv2d(_to_layout(xi, layout), w, layout=layout, backend=any_backend, **kwargs)
        np.testing.assert_array_equal(np.isinf(y), mask)
        assert (np.sign(y[mask]) == sign).all() and np.isfinite(y[~mask]).all()
        r = fp.conv2d(_to_layout(xi, layout), w, layout=layout, activation="relu", backend=any_backend, **kwargs)
        assert (r[mask] == (np.inf if sign > 0 else 0)).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_nonfinite_weight_times_padding_is_nan(any_backend, layout, special):
    """0 * NaN and 0 * Inf are NaN: a non-finite weight on the zero padding gives NaN, as in PyTorch."""
    rng = np.random.default_rng(2)
    x = int_array(rng, (2, 4, 6, 7))
    w = int_array(rng, (3, 4, 3, 3))
    b = int_array(rng, (3,))
    w[1, 2, 0, 1] = special
    b[2] = np.nan
    for padding, stride, dilation in [(0, 1, 1), (1, 1, 1), (2, 2, 1), ((1, 3), 1, 2), ("same", 1, 2)]:
        kw = dict(padding=padding, stride=stride, dilation=dilation, activation="relu", layout=layout)
        expected = fp.conv2d(_to_layout(x, layout), w, b, backend="numpy", **kw)
        got = fp.conv2d(_to_layout(x, layout), w, b, backend=any_backend, **kw)
        np.testing.assert_array_equal(got, expected, err_msg=f"padding={padding} stride={stride}")
        ch = (lambda a, c: a[:, c]) if layout == "NCHW" else (lambda a, c: a[..., c])
        assert np.isnan(ch(got, 2)).all() and not np.isnan(ch(got, 0)).any()
        if padding == 1:  # row 0 of the output puts tap (0, 1) on the top padding
            assert np.isnan(ch(got, 1)[:, 0]).all()


c_only = pytest.mark.skipif("c" not in fp.backends(), reason="C extension not built")


@c_only
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_c_kernels_flush_subnormals_on_every_thread(layout, dtype, threads):
    tiny = np.finfo(dtype).smallest_normal
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        for xs, ws, kw in [((4, 8, 9, 9), (16, 8, 3, 3), dict(padding=1)),
                           ((4, 16, 9, 9), (16, 1, 3, 3), dict(padding=1, groups=16)),
                           ((4, 16, 9, 9), (32, 16, 1, 1), {}),
                           ((1, 256, 56, 56), (64, 256, 1, 1), {})]:  # big enough for the GEMM pool's helpers
            x = np.full(xs, tiny / 4, dtype)  # subnormal inputs: read as 0
            w = np.ones(ws, dtype)
            y = fp.conv2d(_to_layout(x, layout), w, layout=layout, backend="c", **kw)
            assert (y == 0).all(), f"{int((y != 0).sum())} outputs not flushed ({xs}, {ws}, {kw})"
            x = np.full(xs, tiny * 2, dtype)  # normal inputs, products below the normal range: written as 0
            w = np.full(ws, 1 / 64, dtype)
            y = fp.conv2d(_to_layout(x, layout), w, layout=layout, backend="c", **kw)
            assert ((y == 0) | (np.abs(y) >= tiny)).all(), "a subnormal result was written"
    finally:
        fp.set_num_threads(before)


@c_only
def test_callers_floating_point_mode_is_restored():
    sub = np.finfo(np.float32).smallest_normal
    fp.conv2d(np.ones((1, 2, 4, 4), np.float32), np.ones((2, 2, 1, 1), np.float32), backend="c")
    # NumPy in this thread still produces (and reads) subnormals: the C call left FTZ/DAZ off
    assert np.float32(sub) / np.float32(4) != 0
    assert np.float32(sub / 4) * np.float32(2) != 0


numba_only = pytest.mark.skipif("numba" not in fp.backends(), reason="numba not installed")


@numba_only
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_kernels_flush_subnormals_on_every_thread(layout, dtype, threads):
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the Numba kernels flush on x86-64 only")
    tiny = np.finfo(dtype).smallest_normal
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        for xs, ws, kw in [((4, 8, 9, 9), (16, 8, 3, 3), dict(padding=1)),
                           ((4, 16, 9, 9), (16, 1, 3, 3), dict(padding=1, groups=16)),
                           ((4, 16, 9, 9), (32, 16, 1, 1), {})]:
            x = np.full(xs, tiny / 4, dtype)  # subnormal inputs: read as 0
            w = np.ones(ws, dtype)
            y = fp.conv2d(_to_layout(x, layout), w, layout=layout, backend="numba", **kw)
            assert (y == 0).all(), f"{int((y != 0).sum())} outputs not flushed ({xs}, {ws}, {kw})"
            x = np.full(xs, tiny * 2, dtype)  # normal inputs, products below the normal range: written as 0
            w = np.full(ws, 1 / 64, dtype)
            y = fp.conv2d(_to_layout(x, layout), w, layout=layout, backend="numba", **kw)
            assert ((y == 0) | (np.abs(y) >= tiny)).all(), "a subnormal result was written"
        # the caller's thread runs tasks too: its mode is put back
        sub = np.finfo(np.float32).smallest_normal
        assert np.float32(sub) / np.float32(4) != 0
        assert np.float32(sub / 4) * np.float32(2) != 0
    finally:
        fp.set_num_threads(before)


@numba_only
def test_numba_flush_is_per_call_and_restored_on_every_thread():
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("MXCSR exists on x86-64 only")
    from numba import njit

    from fastpoint.backends.numba_kernels import workers
    from fastpoint.backends.numba_kernels.fpenv import FTZ_DAZ, flush_enter, flush_leave, mxcsr
    from fastpoint.backends.numba_kernels.simd import fetch_add

    if workers.max_threads() < 2:
        pytest.skip("needs 2 CPUs")

    @njit(nogil=True)
    def modes(inside, after, ids, counter):  # the pattern of every kernel: flush around the task loop
        me = fetch_add(ids, 0, 1)
        old = flush_enter()
        task, me = workers.start(counter, 2, 1)
        while task < 2:
            if task == 0:  # wait (bounded) until the helper has started, so both threads take part
                for _ in range(2_000_000_000):
                    if fetch_add(ids, 0, 0) >= 2:
                        break
            inside[me] = mxcsr()
            task = workers.next_task(counter, me, 1, 1)
        flush_leave(old)
        after[me] = mxcsr()

    inside = np.zeros(2, np.int64)
    after = np.full(2, -1, np.int64)
    workers.run(modes, (inside, after, np.zeros(1, np.int64)), 2)
    for _ in range(1000):  # the helper writes `after` just after its last task is counted
        if (after >= 0).all():
            break
        time.sleep(0.001)
    assert (inside & FTZ_DAZ == FTZ_DAZ).all()
    assert (after & FTZ_DAZ == 0).all(), "a thread kept FTZ/DAZ after its call"
