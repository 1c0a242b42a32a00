"""One-shot calls (fp.conv2d / fp.conv1x1 / fp.conv1d, core/callplan.py CallPlan.once): the same results as a
prepacked layer, safe under threads and in-place changes of the caller's arrays, no memory per call beyond the
output."""
from __future__ import annotations

import importlib
import threading
import tracemalloc

import numpy as np
import pytest

import fastpoint as fp
from fastpoint import api
from fastpoint.core import callplan, machine
from fastpoint.core.threads import thread_limit

from .conftest import int_array, run_in_threads

# (x shape NCHW, weight shape, kwargs): every kernel family of each backend
CASES = [
    ((2, 8, 9, 9), (16, 8, 1, 1), {}),                                  # 1x1 GEMM
    ((1, 64, 7, 7), (80, 64, 1, 1), {}),                                # small map 1x1 (transposed form)
    ((1, 5, 6, 7), (3, 5, 1, 1), dict(stride=2)),                       # strided 1x1
    ((2, 16, 8, 8), (16, 16, 3, 3), dict(padding=1)),                   # direct / dense 3x3
    ((1, 3, 11, 10), (7, 3, 3, 3), dict(padding=(2, 1), stride=2, dilation=(1, 2))),
    ((2, 24, 9, 9), (24, 1, 3, 3), dict(padding=1, groups=24)),         # depthwise
    ((1, 8, 5, 5), (8, 4, 3, 3), dict(padding="same", groups=2)),       # grouped, generic
    ((1, 70, 6, 6), (20, 70, 3, 3), dict(padding=1)),                   # K in chunks, a partial channel tile
    ((1, 12, 5, 5), (18, 4, 3, 3), dict(padding=1, groups=3)),          # groups of whole channel tiles
]


def _layout(x, layout):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_shot_equals_prepacked_bit_for_bit(any_backend, layout, case, dtype):
    xs, ws, kw = CASES[case]
    rng = np.random.default_rng(case)
    x, w, b = _layout(int_array(rng, xs, dtype=dtype), layout), int_array(rng, ws, dtype=dtype), int_array(rng, ws[:1])
    want = fp.Conv2d(w, b, layout=layout, backend=any_backend, activation="relu", **kw)(x)
    for _ in range(2):  # the second call takes the cached parse
        got = fp.conv2d(x, w, b, layout=layout, backend=any_backend, activation="relu", **kw)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_weights_changed_in_place_give_the_new_result(any_backend):
    rng = np.random.default_rng(1)
    x, w, b = int_array(rng, (1, 8, 6, 6)), int_array(rng, (8, 8, 3, 3)), int_array(rng, (8,))
    for _ in range(3):
        got = fp.conv2d(x, w, b, padding=1, backend=any_backend)
        np.testing.assert_array_equal(got, fp.conv2d(x, w, b, padding=1, backend="numpy"))
        w += 1  # same array, same shape: the parse is reused, the packing must not be
        b -= 2
        x *= -1


def test_parse_cache_never_returns_another_calls_plan(backend):
    """Calls that differ in one argument fact each get their own plan: shape, dtype, stride, flags, layout."""
    rng = np.random.default_rng(2)
    x, w = int_array(rng, (1, 4, 8, 8)), int_array(rng, (6, 4, 3, 3))
    variants = [
        (x, w, {}), (x, w, dict(padding=1)), (x, w, dict(stride=2)), (x, w, dict(stride=(1, 2))),
        (x, w, dict(dilation=2)), (x, w, dict(activation="relu")), (x.astype(np.float64), w, {}),
        (x[:, :, ::-1], w, {}), (x[..., :7], w, {}), (x[0], w, {}), (x, w.astype(np.float16), {}),
        (x, w[:5], {}), (np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, dict(layout="NHWC")),
    ]
    for _ in range(2):
        for xv, wv, kw in variants:
            got = fp.conv2d(xv, wv, backend=backend, **kw)
            np.testing.assert_array_equal(got, fp.conv2d(xv, wv, backend="numpy", **kw))


def test_parse_cache_keeps_validation(backend):
    """Values that compare equal to a cached call's but are invalid (True for 1) still raise."""
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    fp.conv2d(x, w, stride=1, backend=backend)
    with pytest.raises(TypeError, match="stride"):
        fp.conv2d(x, w, stride=True, backend=backend)
    fp.conv2d(x, w, padding=(1, 1), backend=backend)
    with pytest.raises(TypeError, match="padding"):
        fp.conv2d(x, w, padding=(1, True), backend=backend)
    with pytest.raises(ValueError, match="activation"):
        fp.conv2d(x, w, activation=["relu"], backend=backend)
    with pytest.raises(ValueError, match="out must have shape"):
        fp.conv2d(x, w, backend=backend, out=np.empty((1, 3, 5, 5), np.float32))
    x3, w3 = np.ones((1, 3, 5, 5), np.float32), np.ones((3, 3, 3, 3), np.float32)
    fp.conv2d(x3, w3, padding=1, backend=backend)
    with pytest.raises(ValueError, match="overlaps x"):
        fp.conv2d(x3, w3, padding=1, backend=backend, out=x3)


def test_a_repeat_call_skips_the_parse(backend, monkeypatch):
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    want = fp.conv2d(x, w, padding=1, backend=backend)

    def parse(*a, **k):
        raise AssertionError("the full parse ran on a repeat call")

    monkeypatch.setattr(api, "_parse_one_shot", parse)
    np.testing.assert_array_equal(fp.conv2d(x, w, padding=1, backend=backend), want)
    with pytest.raises(AssertionError):
        fp.conv2d(x, w, padding=2, backend=backend)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_non_finite_weights_on_the_padding(backend, layout):
    """NaN / Inf weights on padded taps give NaN there, as in the reference (``0 * w``): the C backend finds
    them and fixes the padded outputs up (core/nonfinite.py); the Numba kernels read zero padding written
    out, so they need no check at all.  Every padded case: dense, strided and dilated, depthwise, grouped."""
    rng = np.random.default_rng(3)
    cases = [((1, 3, 5, 5), (4, 3, 3, 3), dict(padding=1))] + [c for c in CASES if "padding" in c[2]]
    for xs, ws, kw in cases:
        x, w = _layout(int_array(rng, xs), layout), int_array(rng, ws)
        for bad in (np.nan, np.inf, -np.inf):
            wb = w.copy()
            wb[ws[0] // 2, ws[1] - 1, 0, 0] = bad
            want = fp.conv2d(x, wb, layout=layout, backend="numpy", **kw)
            np.testing.assert_array_equal(fp.conv2d(x, wb, layout=layout, backend=backend, **kw), want)
            np.testing.assert_array_equal(fp.conv2d(x, w, layout=layout, backend=backend, **kw),
                                          fp.conv2d(x, w, layout=layout, backend="numpy", **kw))


def test_concurrent_one_shot_calls(backend):
    """Threads packing different weights of one shape at once: each gets its own weights' result."""
    rng = np.random.default_rng(4)
    x = int_array(rng, (2, 32, 10, 10))
    weights = [int_array(rng, (48, 32, 3, 3)) for _ in range(4)]
    wants = [fp.conv2d(x, w, padding=1, backend="numpy") for w in weights]
    errors = []

    def work():
        for i in range(12):
            k = i % len(weights)
            if not np.array_equal(fp.conv2d(x, weights[k], padding=1, backend=backend), wants[k]):
                errors.append(k)

    run_in_threads(work, 4)
    assert not errors


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_extra_memory_is_the_output(backend, layout):
    """After a warm-up, a one-shot call allocates (in NumPy) its result and nothing else of size: the packed
    weights live in per-thread scratch (C), or are read in place (Numba NCHW), and Numba's padded copy of the
    input is a buffer the plan keeps per Python thread, reused by every later call.  (The Numba kernels'
    own task buffers, L1- and L2-sized partial sums and panels, are allocated per call and per worker, as for
    a layer: the call runs on one thread so that the allowance holds one worker's, whatever the machine's
    thread count.)"""
    rng = np.random.default_rng(5)
    x, w, b = _layout(int_array(rng, (1, 64, 28, 28)), layout), int_array(rng, (256, 64, 3, 3)), int_array(rng, (256,))
    y = np.empty((1, 256, 28, 28), np.float32)
    allowed = y.nbytes + (64 << 10)
    assert allowed < y.nbytes + min(w.nbytes, x.nbytes)  # a per-call packing or input copy would not fit
    with thread_limit(1):
        fp.conv2d(x, w, b, padding=1, backend=backend, layout=layout)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            y = fp.conv2d(x, w, b, padding=1, backend=backend, layout=layout)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < allowed, f"peak {peak} bytes for a {y.nbytes}-byte result (weights {w.nbytes})"


def test_parse_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(callplan, "_ONE_SHOT", {})
    w = np.ones((1, 1, 1, 1), np.float32)
    for n in range(300):
        fp.conv2d(np.ones((1, 1, 1, n + 1), np.float32), w)
    assert 0 < len(callplan._ONE_SHOT) <= 256


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_c_one_shot_equals_prepacked_on_every_isa(isa, layout):
    """Each ISA's packing (AVX-512 16 x 16 blocks, element-wise edges) on sizes off the vector width:
    Cout 50 and Cin 37 leave partial panels and blocks in every form."""
    rng = np.random.default_rng(6)
    cases = [((1, 37, 7, 7), (50, 37, 1, 1), {}), ((1, 37, 20, 20), (50, 37, 1, 1), {}),
             ((1, 37, 6, 6), (50, 37, 3, 3), dict(padding=1)), ((1, 40, 6, 6), (40, 1, 3, 3), dict(groups=40)),
             ((1, 36, 6, 6), (51, 12, 3, 3), dict(groups=3, padding=1))]
    for xs, ws, kw in cases:
        x, w, b = _layout(int_array(rng, xs), layout), int_array(rng, ws), int_array(rng, ws[:1])
        want = fp.Conv2d(w, b, layout=layout, backend="c", **kw)(x)
        np.testing.assert_array_equal(fp.conv2d(x, w, b, layout=layout, backend="c", **kw), want)
        np.testing.assert_array_equal(want, fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_c_packing_inside_the_gemm_loops(layout, threads):
    """1x1 one-shot calls pack W^T panel by panel inside the GEMM loops (fp_gemm_run_unpacked) when the
    threads split output channels, else pack first: both equal the prepacked layer, over several k blocks
    (Cin 2100) and partial panels (Cout 100, 7x7 and 20x20 maps)."""
    rng = np.random.default_rng(7)
    w, b = int_array(rng, (100, 2100, 1, 1), -1, 1), int_array(rng, (100,))
    with thread_limit(threads):
        for hw in (7, 20):
            x = _layout(int_array(rng, (1, 2100, hw, hw), -1, 1), layout)
            want = fp.conv2d(x, w, b, layout=layout, backend="numpy")
            np.testing.assert_array_equal(fp.Conv2d(w, b, layout=layout, backend="c")(x), want)
            np.testing.assert_array_equal(fp.conv2d(x, w, b, layout=layout, backend="c", activation="relu"),
                                          np.maximum(want, 0))
            np.testing.assert_array_equal(fp.conv2d(x, w, b, layout=layout, backend="c"), want)


def _weights_past_l2():
    """(Cin, Cout) of 1x1 weights just past the detected L2 with 53 pixels of input in half of it, Cin past
    2048 (several k blocks in either layout) and Cout off a multiple of 16: the one-shot calls that read W's
    rows in place (csrc/gemm/gemm_once_wrows.c)."""
    cin = 2400
    cout = int(1.1 * machine.cache_sizes()[2] / (4 * cin)) + 1
    return cin, cout + (4 if cout % 16 == 0 else 0)


# maps (batch, h, w): tails past the 48-pixel tiles of 1, 2, 4 and 5 pixels, no full tile, and batch 2 (NCHW:
# image by image; NHWC: 98 pixels of X past half of L2, so the panel path)
WROWS_MAPS = [(1, 7, 7), (1, 5, 10), (1, 4, 13), (1, 1, 53), (1, 4, 5), (2, 7, 7)]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_c_one_shot_reading_weights_past_l2_in_place(layout, threads):
    """1x1 one-shot calls on small maps whose weights exceed L2 swap the operands (W's rows read in place, X
    packed, the last 1-4 pixels summed on register-transposed blocks of W): bit-identical to the prepacked
    layer on real-valued data (the same FMA chain for every output), equal to the reference on integer-valued
    data, with bias, without, with ReLU, at 1-3 threads."""
    rng = np.random.default_rng(21)
    cin, cout = _weights_past_l2()
    w = rng.standard_normal((cout, cin, 1, 1)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    wi, bi = int_array(rng, w.shape, -1, 1), int_array(rng, b.shape)
    with thread_limit(threads):
        for n, h, wd in WROWS_MAPS:
            x = _layout(rng.standard_normal((n, cin, h, wd)).astype(np.float32), layout)
            for bias, act in ((b, None), (None, "relu")):
                want = fp.Conv2d(w, bias, layout=layout, backend="c", activation=act)(x)
                for _ in range(2):
                    got = fp.conv2d(x, w, bias, layout=layout, backend="c", activation=act)
                    np.testing.assert_array_equal(got, want)
            xi = _layout(int_array(rng, (n, cin, h, wd), -1, 1), layout)
            np.testing.assert_array_equal(fp.conv2d(xi, wi, bi, layout=layout, backend="c"),
                                          fp.conv2d(xi, wi, bi, layout=layout, backend="numpy"))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_c_one_shot_reading_weights_past_l2_from_two_python_threads(layout):
    """Two Python threads, weights of their own, 2 pool threads each: each chunk packs X into its own thread's
    scratch, so neither sees the other's."""
    rng = np.random.default_rng(22)
    cin, cout = _weights_past_l2()
    x = _layout(int_array(rng, (1, cin, 7, 7), -1, 1), layout)
    weights = [(int_array(rng, (cout, cin), -1, 1), int_array(rng, (cout,))) for _ in range(2)]
    wants = [fp.conv1x1(x, w, b, layout=layout, backend="numpy") for w, b in weights]
    ids = iter(range(2))
    errors = []

    def work():
        me = next(ids)
        with thread_limit(2):
            for _ in range(6):
                if not np.array_equal(fp.conv1x1(x, *weights[me], layout=layout, backend="c"), wants[me]):
                    errors.append(me)

    run_in_threads(work, 2)
    assert not errors


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_one_shot_weights_read_in_place_or_packed_per_block(layout, threads):
    """Numba's one-shot kernels on layers large enough for several workers, channel blocks and position
    blocks: NCHW reads the caller's weights in place (the partial tile copied; Cout 100 = 16 tiles of 6
    + 4, 50 per group), NHWC packs each channel block inside its loops (partial 32-wide tiles); both equal
    the prepacked layer bit for bit, with and without padding, and see a NaN among the weights."""
    rng = np.random.default_rng(8)
    cases = [((1, 300, 7, 7), (100, 300, 1, 1), {}), ((1, 64, 30, 30), (100, 64, 3, 3), dict(padding=1)),
             ((2, 96, 12, 12), (100, 48, 3, 3), dict(padding=1, groups=2)), ((1, 700, 5, 5), (70, 700, 1, 1), {})]
    with thread_limit(threads):
        for xs, ws, kw in cases:
            x, w, b = _layout(int_array(rng, xs, -2, 2), layout), int_array(rng, ws, -2, 2), int_array(rng, ws[:1])
            want = fp.Conv2d(w, b, layout=layout, backend="numba", **kw)(x)
            np.testing.assert_array_equal(want, fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw))
            for _ in range(2):
                np.testing.assert_array_equal(fp.conv2d(x, w, b, layout=layout, backend="numba", **kw), want)
            for where in ((-1, -1, -1, -1), (50, ws[1] // 2, 1, 1)) if "padding" in kw else ():
                w[where] = np.inf  # in the partial tile; mid-K in a full one (K in chunks)
                np.testing.assert_array_equal(fp.conv2d(x, w, b, layout=layout, backend="numba", **kw),
                                              fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw))
                w[where] = 0


# conv1d one-shot calls take the plan of their one-row 2-d call: (x shape NCL, weight shape, kwargs)
CASES_1D = [
    ((2, 8, 20), (16, 8, 1), {}),                                       # kernel 1: conv1x1's GEMM
    ((1, 6, 33), (8, 6, 3), dict(stride=2, padding=1)),                 # strided K > 1 (C: conv1d's GEMM)
    ((2, 6, 17), (6, 6, 2), dict(padding=(2, 0), dilation=2)),          # causal pair
    ((1, 12, 15), (12, 1, 3), dict(padding="same", groups=12)),         # depthwise
    ((1, 8, 9), (4, 4, 3), dict(groups=2)),                             # grouped
    ((1, 5, 9), (3, 5, 1), dict(padding=(0, 2))),                       # kernel 1, right only: the layer path
]


def _layout_1d(x, layout):
    return np.ascontiguousarray(x.transpose(0, 2, 1)) if layout == "NLC" else x


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("case", range(len(CASES_1D)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv1d_one_shot_equals_prepacked_bit_for_bit(any_backend, layout, case, dtype):
    xs, ws, kw = CASES_1D[case]
    rng = np.random.default_rng(10 + case)
    x, w, b = _layout_1d(int_array(rng, xs, dtype=dtype), layout), int_array(rng, ws), int_array(rng, ws[:1])
    want = fp.Conv1d(w, b, layout=layout, backend=any_backend, activation="relu", **kw)(x)
    out = np.full_like(want, np.nan)
    for _ in range(2):  # the second call takes the cached parse
        got = fp.conv1d(x, w, b, layout=layout, backend=any_backend, activation="relu", **kw)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert fp.conv1d(x, w, b, layout=layout, backend=any_backend, activation="relu", out=out, **kw) is out
        np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(fp.conv1d(x[0], w, b, layout=layout, backend=any_backend, activation="relu",
                                            **kw), want[0])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv1x1_one_shot_equals_prepacked(any_backend, layout):
    rng = np.random.default_rng(11)
    for xs, stride in (((2, 24, 9, 9), 1), ((1, 24, 7, 7), 2), ((1, 40, 16, 16), 1)):
        x, w, b = _layout(int_array(rng, xs), layout), int_array(rng, (32, xs[1])), int_array(rng, (32,))
        want = fp.Conv2d(w[:, :, None, None], b, stride, layout=layout, backend=any_backend)(x)
        for _ in range(2):
            np.testing.assert_array_equal(fp.conv1x1(x, w, b, stride, layout=layout, backend=any_backend), want)


def test_arrays_of_the_same_facts_are_checked_on_every_call(backend):
    """A cached parse still sees what a different array of the same shape and dtype can do differently:
    non-contiguous or misaligned x, weight and bias (copied), non-finite weights, and an out that is
    read-only, not contiguous or overlaps an input (refused, naming it)."""
    rng = np.random.default_rng(12)
    x, w, b = int_array(rng, (1, 4, 6, 6)), int_array(rng, (5, 4, 3, 3)), int_array(rng, (5,))
    want = fp.conv2d(x, w, b, padding=1, backend="numpy")

    def misaligned(a):
        raw = np.zeros(a.nbytes + 1, np.uint8)
        m = raw[1:].view(a.dtype).reshape(a.shape)
        m[...] = a
        return m

    np.testing.assert_array_equal(fp.conv2d(x, w, b, padding=1, backend=backend), want)  # the parse, cached
    for xv, wv, bv in ((np.asfortranarray(x), w, b), (misaligned(x), w, b), (x, np.asfortranarray(w), b),
                       (x, misaligned(w), b), (x, w, misaligned(b)), (x, w, np.repeat(b, 2)[::2])):
        np.testing.assert_array_equal(fp.conv2d(xv, wv, bv, padding=1, backend=backend), want)
    bad = w.copy()
    bad[2, 1, 0, 0] = np.nan
    np.testing.assert_array_equal(fp.conv2d(x, bad, b, padding=1, backend=backend),
                                  fp.conv2d(x, bad, b, padding=1, backend="numpy"))
    ro = np.empty_like(want)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        fp.conv2d(x, w, b, padding=1, backend=backend, out=ro)
    with pytest.raises(ValueError, match="contiguous"):
        fp.conv2d(x, w, b, padding=1, backend=backend, out=np.empty((1, 5, 6, 12), np.float32)[..., ::2])
    buf = np.zeros(2000, np.float32)
    for name, args in (("x", (buf[:144].reshape(x.shape), w, b)), ("weight", (x, buf[:180].reshape(w.shape), b)),
                       ("bias", (x, w, buf[:5]))):
        with pytest.raises(ValueError, match=f"overlaps {name}"):
            fp.conv2d(*args, padding=1, backend=backend, out=buf[:180].reshape(want.shape))
    out = np.empty_like(want)
    assert fp.conv2d(x, w, b, padding=1, backend=backend, out=out) is out
    np.testing.assert_array_equal(out, want)


CONCURRENT = [((1, 32, 10, 10), (48, 32, 3, 3), dict(padding=1)),     # direct
              ((1, 64, 7, 7), (96, 64, 1, 1), {}),                       # 1x1, small map
              ((2, 16, 12, 12), (40, 16, 1, 1), {}),                     # 1x1
              ((1, 48, 9, 9), (48, 1, 3, 3), dict(padding=1, groups=48))]  # depthwise


def _per_thread_cases(rng, shapes, layout, n_threads):
    """(x, kwargs, [(w, b) per thread], [reference per thread]) for each (x shape, w shape, kwargs)."""
    cases = []
    for xs, ws, kw in shapes:
        x = _layout(int_array(rng, xs), layout)
        per_thread = [(int_array(rng, ws), int_array(rng, ws[:1])) for _ in range(n_threads)]
        wants = [fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw) for w, b in per_thread]
        cases.append((x, kw, per_thread, wants))
    return cases


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_concurrent_one_shot_calls_with_their_own_weights(backend, layout):
    """Each Python thread calls with weights of its own (same shapes, so the same cached plans and the same
    per-thread scratch sizes): a packing shared between threads would give one thread another's result."""
    n_threads = 4
    cases = _per_thread_cases(np.random.default_rng(13), CONCURRENT, layout, n_threads)
    ids = iter(range(n_threads))
    errors = []

    def work():
        me = next(ids)
        outs = [np.empty_like(wants[me]) for _, _, _, wants in cases]
        with thread_limit(1 + me % 2):
            for i in range(8):
                for (x, kw, per_thread, wants), out in zip(cases, outs):
                    w, b = per_thread[me]
                    got = fp.conv2d(x, w, b, layout=layout, backend=backend, out=out if i % 2 else None, **kw)
                    if not np.array_equal(got, wants[me]):
                        errors.append((me, i))

    run_in_threads(work, n_threads)
    assert not errors


def test_concurrent_conv1d_one_shot_calls(backend):
    rng = np.random.default_rng(14)
    x = int_array(rng, (1, 6, 33))
    weights = [(int_array(rng, (8, 6, 3)), int_array(rng, (8,))) for _ in range(4)]
    wants = [fp.conv1d(x, w, b, stride=2, padding=1, backend="numpy") for w, b in weights]
    ids = iter(range(4))
    errors = []

    def work():
        me = next(ids)
        for _ in range(10):
            w, b = weights[me]
            if not np.array_equal(fp.conv1d(x, w, b, stride=2, padding=1, backend=backend), wants[me]):
                errors.append(me)

    run_in_threads(work, 4)
    assert not errors


def test_a_repeat_conv1d_call_skips_the_parse(backend, monkeypatch):
    conv1d_module = importlib.import_module("fastpoint.conv1d")  # (fastpoint.conv1d is also the function)
    x, w = np.ones((1, 2, 9), np.float32), np.ones((3, 2, 3), np.float32)
    want = fp.conv1d(x, w, padding=(2, 0), backend=backend)

    def parse(*a, **k):
        raise AssertionError("the full parse ran on a repeat call")

    monkeypatch.setattr(conv1d_module, "_parse_one_shot", parse)
    np.testing.assert_array_equal(fp.conv1d(x, w, padding=(2, 0), backend=backend), want)
    with pytest.raises(AssertionError):
        fp.conv1d(x, w, padding=(1, 0), backend=backend)


@pytest.mark.parametrize("activation", ["relu6", "leaky_relu", "hardswish", "sigmoid", ("clip", -1.0, 2.0),
                                        ("leaky_relu", 0.25)])
def test_one_shot_epilogues_equal_prepacked(any_backend, activation):
    """Activations beyond ReLU on the one-shot path (a name from the parse cache, a tuple parsed every call)
    and a residual: the same values as the prepacked layer's."""
    rng = np.random.default_rng(15)
    for xs, ws, kw in CASES[:4]:
        x, w, b = int_array(rng, xs), int_array(rng, ws), int_array(rng, ws[:1])
        layer = fp.Conv2d(w, b, activation=activation, backend=any_backend, **kw)
        want = layer(x)
        for _ in range(2):
            np.testing.assert_array_equal(fp.conv2d(x, w, b, activation=activation, backend=any_backend, **kw), want)
        res = int_array(rng, want.shape)
        np.testing.assert_array_equal(fp.conv2d(x, w, b, activation=activation, backend=any_backend, residual=res,
                                                **kw), layer(x, residual=res))
    x1, w1 = int_array(rng, (1, 6, 33)), int_array(rng, (8, 6, 3))
    want = fp.Conv1d(w1, None, stride=2, padding=1, activation=activation, backend=any_backend)(x1)
    for _ in range(2):
        np.testing.assert_array_equal(fp.conv1d(x1, w1, stride=2, padding=1, activation=activation,
                                                backend=any_backend), want)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_c_depthwise_packing_after_the_split(layout, threads):
    """Depthwise one-shot calls pack the caller's weights on the threads that use them (csrc/dwconv: NCHW per
    job, NHWC once per thread and call): equal to the prepacked layer and the reference on channels off the
    vector width, a channel multiplier, several images and 5x5 taps; weights changed in place between calls
    give the new result (no thread keeps the last call's packing); a NaN on a padded tap is found."""
    rng = np.random.default_rng(11)
    cases = [((2, 37, 9, 9), (37, 1, 3, 3), dict(padding=1, groups=37)),
             ((1, 40, 7, 7), (80, 1, 3, 3), dict(padding=1, groups=40)),
             ((3, 96, 14, 14), (96, 1, 5, 5), dict(padding=2, groups=96, stride=2)),
             ((1, 960, 7, 7), (960, 1, 3, 3), dict(padding=1, groups=960))]
    with thread_limit(threads):
        for xs, ws, kw in cases:
            x, w, b = _layout(int_array(rng, xs), layout), int_array(rng, ws), int_array(rng, ws[:1])
            for _ in range(2):
                want = fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw)
                np.testing.assert_array_equal(fp.Conv2d(w, b, layout=layout, backend="c", **kw)(x), want)
                np.testing.assert_array_equal(fp.conv2d(x, w, b, layout=layout, backend="c", **kw), want)
                w += 1
            wb = w.copy()
            wb[ws[0] - 1, 0, 0, 0] = np.nan
            np.testing.assert_array_equal(fp.conv2d(x, wb, b, layout=layout, backend="c", **kw),
                                          fp.conv2d(x, wb, b, layout=layout, backend="numpy", **kw))


@pytest.mark.skipif("c" not in fp.backends(), reason="C extension not built")
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_c_depthwise_one_shot_from_two_python_threads_at_two_pool_threads(layout):
    """Two Python threads make one-shot depthwise calls at once, each with weights of its own, both allowed 2
    pool threads.  The NHWC driver keeps, per pool thread, which call its packing in scratch slot 2 belongs
    to (a call number and the scratch pointer, csrc/dwconv/dwconv_driver.c), so that a thread's second chunk
    of a call does not pack again: that holds only if each thread runs one call's chunks at a time and every
    call takes a new number.  A pool thread that ran a chunk of one thread's call and then one of the other's
    with the first packing kept would give the second thread the first one's weights, so each result is
    compared with the reference of its own weights.  960 channels @7x7 (several chunks per thread) and 40
    channels @9x9 with a channel multiplier of 2."""
    shapes = [((1, 960, 7, 7), (960, 1, 3, 3), dict(padding=1, groups=960)),
              ((1, 40, 9, 9), (80, 1, 3, 3), dict(padding=1, groups=40))]
    n_threads = 2
    work_items = _per_thread_cases(np.random.default_rng(17), shapes, layout, n_threads)
    ids = iter(range(n_threads))
    barrier = threading.Barrier(n_threads)
    errors = []

    def work():
        me = next(ids)
        with thread_limit(2):
            barrier.wait()
            for i in range(300):
                x, kw, per_thread, wants = work_items[i % len(work_items)]
                w, b = per_thread[me]
                if not np.array_equal(fp.conv2d(x, w, b, layout=layout, backend="c", **kw), wants[me]):
                    errors.append((me, i))

    run_in_threads(work, n_threads)
    assert not errors, f"{len(errors)} wrong results, first {errors[:5]}"
