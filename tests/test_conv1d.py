"""conv1d / Conv1d: every backend and C ISA path against the direct NumPy reference, and PyTorch."""

import itertools

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends.numpy import conv1d_ncl

from .conftest import TESTED_BACKENDS, int_array

# (cin, cout, L, K, stride, padding, dilation, groups)
CASES = [
    (3, 5, 17, 1, 1, 0, 1, 1),  # pointwise: the conv1x1 GEMM
    (16, 17, 33, 1, 2, 0, 1, 1),  # pointwise, strided
    (4, 6, 20, 1, 1, (0, 3), 1, 1),  # pointwise padded on the right only
    (4, 6, 20, 1, 3, 2, 1, 1),  # pointwise padded both sides
    (8, 8, 40, 2, 1, (64, 0), 64, 1),  # WaveNet's causal pair, L < K*d
    (8, 16, 50, 2, 1, (4, 0), 4, 1),
    (5, 7, 31, 3, 1, "same", 2, 1),
    (6, 6, 40, 31, 1, 15, 1, 6),  # Conformer depthwise
    (6, 6, 10, 31, 1, "same", 1, 6),  # depthwise, L < K (all padding)
    (1, 9, 64, 10, 5, 0, 1, 1),  # wav2vec2 stem, Cin = 1
    (6, 9, 29, 3, 2, (1, 2), 1, 3),  # grouped, uneven pair
    (17, 33, 45, 7, 1, 3, 1, 1),  # ECG-style, channels off the vector width
    (4, 4, 26, 4, 2, (3, 1), 3, 2),
    (32, 48, 70, 5, 1, (0, 4), 16, 1),
    (7, 19, 41, 3, 2, (2, 1), 2, 1),  # strided, groups 1: the lowered GEMM (backends/c_lowered.py)
    (33, 50, 100, 5, 3, 4, 1, 1),
    (5, 70, 60, 10, 5, (0, 9), 1, 1),
]


def _pads(padding, k, dilation):
    if padding == "same":
        total = dilation * (k - 1)
        return (total // 2, total - total // 2)
    return padding if isinstance(padding, tuple) else (padding, padding)


def _reference(x, w, b, stride, padding, dilation, groups, relu=False):
    w3 = w if w.ndim == 3 else w[:, :, None]
    y = conv1d_ncl(x.astype(np.float64), w3.astype(np.float64), stride, _pads(padding, w3.shape[2], dilation),
                   dilation, groups)
    if b is not None:
        y = y + b[:, None]
    return np.maximum(y, 0) if relu else y


@pytest.mark.parametrize("backend", TESTED_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_conv1d_equals_reference(backend, case, layout):
    cin, cout, length, k, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(str(case)))
    x = int_array(rng, (2, cin, length))
    w = int_array(rng, (cout, cin // groups, k), -2, 2)
    b = int_array(rng, (cout,), -5, 5)
    expected = _reference(x, w, b, stride, padding, dilation, groups, relu=True)
    xin = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    got = fp.conv1d(xin, w, b, stride, padding, dilation, groups, activation="relu", layout=layout, backend=backend)
    if layout == "NLC":
        got = got.transpose(0, 2, 1)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", CASES[:6] + CASES[9:12] + CASES[-3:], ids=str)
def test_conv1d_every_c_isa(isa, case):
    cin, cout, length, k, stride, padding, dilation, groups = case
    rng = np.random.default_rng(1)
    x = int_array(rng, (3, cin, length))
    w = int_array(rng, (cout, cin // groups, k), -2, 2)
    expected = _reference(x, w, None, stride, padding, dilation, groups)
    out = np.full(expected.shape, np.nan, np.float32)  # every output must be written
    fp.conv1d(x, w, None, stride, padding, dilation, groups, backend="c", out=out)
    np.testing.assert_array_equal(out, expected)


CONV1D_ROWS = [k for k in fp.kernels() if k.family == "conv1d"]


def _direct_sweep(mr, nr):
    """The direct conv1d's cases (csrc/conv1d/), sized from one row's tile: output channels below, at, above and
    off its MR, lengths around its NR (interior and edge tiles, a partial last one), K 2..33, strides 1..5,
    dilations up to 64 with their causal and uneven pairs, Cin 1 stems, padding wider than the input."""
    for k, s, d, pads in [(2, 1, 64, (64, 0)), (2, 1, 64, (64, 64)), (3, 1, 1, (1, 1)), (7, 1, 1, (3, 3)),
                          (10, 5, 1, (0, 0)), (10, 5, 1, (4, 7)), (3, 2, 1, (0, 0)), (4, 3, 2, (5, 1)),
                          (33, 1, 1, (16, 16)), (31, 1, 1, (15, 15)), (5, 2, 3, (0, 9)), (2, 4, 5, (1, 0))]:
        for cin, cout, length in [(1, mr, nr * s + d * (k - 1)), (1, 2 * mr + 1, 3 * nr * s + 5),
                                  (3, mr - 1, nr * s - 1), (5, mr + 1, 2 * nr * s + 1), (17, 3, 40)]:
            if length + pads[0] + pads[1] >= d * (k - 1) + 1:
                yield cin, max(1, cout), length, k, s, pads, d


@pytest.mark.skipif(not CONV1D_ROWS, reason="C extension not built")
@pytest.mark.parametrize("name", [k.name for k in CONV1D_ROWS])
def test_direct_conv1d_every_row(name):
    """Each row of the conv1d table forced (it then runs every NCL float32 groups-1 layer with K > 1) against
    the reference, prepacked and one-shot, with bias and ReLU, into a NaN-filled out; a batch of 2."""
    from fastpoint.backends.kernel_table import forced_kernel

    row = next(k for k in CONV1D_ROWS if k.name == name)
    if not row.available:
        pytest.skip(f"{name}: this CPU lacks {row.isa}")
    rng = np.random.default_rng(5)
    with forced_kernel(name):
        for cin, cout, length, k, s, pads, d in _direct_sweep(*row.tile):
            x = int_array(rng, (2, cin, length))
            w = int_array(rng, (cout, cin, k), -2, 2)
            b = int_array(rng, (cout,), -5, 5)
            expected = _reference(x, w, b, s, pads, d, 1, relu=True)
            layer = fp.Conv1d(w, b, s, pads, d, activation="relu", backend="c")
            row_layer = layer._conv
            spec = row_layer._make_spec(row_layer._layer.with_dtype(np.float32), x[:, :, None, :].shape)
            assert row_layer._get_backend().kernel_name(spec) == name, "another kernel ran"
            out = np.full(expected.shape, np.nan, np.float32)
            case = (cin, cout, length, k, s, pads, d)
            np.testing.assert_array_equal(layer(x, out=out), expected, err_msg=f"{name} {case}")
            got = fp.conv1d(x, w, b, s, pads, d, activation="relu", backend="c")
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} one-shot {case}")
            np.testing.assert_array_equal(fp.conv1d(x[1], w, None, s, pads, d, backend="c"),
                                          _reference(x[1:], w, None, s, pads, d, 1)[0])  # unbatched
            # what the direct conv1d leaves to the 2-d kernels: float64, NLC
            np.testing.assert_array_equal(fp.conv1d(x.astype(np.float64), w.astype(np.float64), b, s, pads, d,
                                                    activation="relu", backend="c"), expected)
            nlc = fp.conv1d(np.ascontiguousarray(x.transpose(0, 2, 1)), w, b, s, pads, d, activation="relu",
                            layout="NLC", backend="c")
            np.testing.assert_array_equal(nlc.transpose(0, 2, 1), expected)


# (n, cin, cout, L, K, stride, pads, dilation)
THREAD_SPLIT_CASES = [(1, 1, 70, 400, 10, 5, (0, 0), 1), (1, 8, 9, 3000, 2, 1, (64, 64), 64),
                      (3, 5, 17, 700, 3, 2, (1, 1), 1), (1, 300, 17, 120, 31, 1, (15, 15), 1),
                      (2, 16, 40, 50, 7, 1, (3, 3), 1), (1, 3, 5, 10, 3, 1, (1, 1), 1)]


@pytest.mark.skipif(not CONV1D_ROWS, reason="C extension not built")
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_direct_conv1d_thread_splits(threads):
    """The direct conv1d's split of the work (csrc/conv1d/conv1d_driver.c) at several thread counts: a short row
    split by Cout blocks (wav2vec2's stem), a long one by equal segments, a batch, and a reduction so long that
    the Cout blocks run in several runs of L2-sized panels; every output written (NaN-filled out)."""
    rng = np.random.default_rng(threads)
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        for n, cin, cout, length, k, s, pads, d in THREAD_SPLIT_CASES:
            x = int_array(rng, (n, cin, length))
            w = int_array(rng, (cout, cin, k), -2, 2)
            b = int_array(rng, (cout,), -5, 5)
            expected = _reference(x, w, b, s, pads, d, 1)
            for name in [r.name for r in CONV1D_ROWS if r.available]:
                from fastpoint.backends.kernel_table import forced_kernel

                with forced_kernel(name):
                    out = np.full(expected.shape, np.nan, np.float32)
                    fp.conv1d(x, w, b, s, pads, d, backend="c", out=out)
                np.testing.assert_array_equal(out, expected, err_msg=f"{name} {threads}T {(n, cin, cout, length, k)}")
    finally:
        fp.set_num_threads(before)


# (cin, cout, L, K, stride, pads, dilation): strided layers wider than 16 input channels, which take the lowered
# conv1d GEMM (csrc/lowered/conv1d_gemm.c): stride 2 (its vectorized gather), 3 and 4, output channels off
# every MR, causal and uneven pairs, a reduction of two k blocks (Cin*K = 1800: the tiles read C back and the
# one-shot call's row pointers start at the block), and an output past L2 with rows not a multiple of 16 (the
# streaming row copy).
LOWERED_CASES = [(17, 19, 101, 3, 2, (0, 0), 1), (24, 9, 97, 3, 2, (2, 1), 2), (18, 10, 50, 2, 2, (4, 0), 4),
                 (20, 8, 60, 4, 3, (0, 3), 1), (19, 33, 75, 5, 4, (2, 2), 1), (600, 19, 40, 3, 2, (1, 1), 1),
                 (32, 70, 8300, 3, 2, (0, 0), 1)]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_lowered_conv1d_gemm_every_isa(isa, threads):
    """The lowered conv1d GEMM on each C ISA path at 1-3 threads, one-shot (the weights read in place) and
    prepacked, with bias and ReLU, into NaN-filled outputs, against the reference; NLC and float64 beside it."""
    rng = np.random.default_rng(threads)
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        for cin, cout, length, k, s, pads, d in LOWERED_CASES:
            n = 1 if length > 1000 else 2
            x = int_array(rng, (n, cin, length))
            w = int_array(rng, (cout, cin, k), -2, 2)
            b = int_array(rng, (cout,), -5, 5)
            expected = _reference(x, w, b, s, pads, d, 1, relu=True)
            msg = f"{isa} {threads}T {(cin, cout, length, k, s, pads, d)}"
            out = np.full(expected.shape, np.nan, np.float32)
            fp.conv1d(x, w, b, s, pads, d, activation="relu", backend="c", out=out)
            np.testing.assert_array_equal(out, expected, err_msg="one-shot " + msg)
            out = np.full(expected.shape, np.nan, np.float32)
            fp.Conv1d(w, b, s, pads, d, activation="relu", backend="c")(x, out=out)
            np.testing.assert_array_equal(out, expected, err_msg="prepacked " + msg)
            if length > 1000:
                continue
            nlc = fp.conv1d(np.ascontiguousarray(x.transpose(0, 2, 1)), w, b, s, pads, d, activation="relu",
                            layout="NLC", backend="c")
            np.testing.assert_array_equal(nlc.transpose(0, 2, 1), expected, err_msg="NLC " + msg)
            f64 = fp.conv1d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, pads, d,
                            activation="relu", backend="c")
            np.testing.assert_array_equal(f64, expected, err_msg="float64 " + msg)
    finally:
        fp.set_num_threads(before)


@pytest.mark.parametrize("backend", TESTED_BACKENDS)
def test_unbatched_float64_noncontiguous_batch0(backend):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 4, 3))
    x = rng.standard_normal((4, 50))[:, ::2]  # non-contiguous, float64
    got = fp.conv1d(x, w, None, 1, (2, 0), 3, backend=backend)
    np.testing.assert_allclose(got, _reference(x[None], w, None, 1, (2, 0), 3, 1)[0], rtol=1e-12, atol=1e-12)
    assert got.dtype == np.float64 and got.shape == (6, 21)
    nlc = fp.conv1d(np.ascontiguousarray(x.T)[::-1][::-1], w, None, 1, (2, 0), 3, layout="NLC", backend=backend)
    np.testing.assert_allclose(nlc.T, got, rtol=1e-12, atol=1e-12)
    empty = fp.conv1d(np.zeros((0, 4, 9), np.float32), w.astype(np.float32), padding=1, backend=backend)
    assert empty.shape == (0, 6, 9)


def test_layer_equals_function_and_out():
    rng = np.random.default_rng(3)
    w, b = int_array(rng, (8, 4, 2)), int_array(rng, (8,))
    layer = fp.Conv1d(w, b, dilation=4, padding=(4, 0))
    for length in (9, 16, 9):  # a second shape, then the first again (call plans)
        x = int_array(rng, (2, 4, length))
        out = np.full((2, 8, length), np.nan, np.float32)
        assert layer(x, out=out) is out
        np.testing.assert_array_equal(out, fp.conv1d(x, w, b, dilation=4, padding=(4, 0), backend="numpy"))


def test_kernel1_matches_conv1x1():
    rng = np.random.default_rng(4)
    x, w = int_array(rng, (2, 64, 100)), int_array(rng, (128, 64))
    np.testing.assert_array_equal(fp.conv1d(x, w), fp.conv1x1(x[:, :, None, :], w)[:, :, 0, :])


def test_causal_chunks_equal_one_call():
    """Streaming a causal dilated conv chunk by chunk (carrying the last (K-1)*d samples) is the one call."""
    rng = np.random.default_rng(5)
    k, d = 3, 4
    w, x = int_array(rng, (5, 5, k)), int_array(rng, (1, 5, 60))
    whole = fp.conv1d(x, w, padding=((k - 1) * d, 0), dilation=d)
    state = np.zeros((1, 5, (k - 1) * d), np.float32)
    parts = []
    for lo in range(0, 60, 20):
        chunk = np.concatenate([state, x[:, :, lo:lo + 20]], axis=2)
        parts.append(fp.conv1d(chunk, w, dilation=d))
        state = chunk[:, :, -(k - 1) * d:]
    np.testing.assert_array_equal(np.concatenate(parts, axis=2), whole)


def test_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    for (cin, cout, length, k, stride, padding, dilation, groups), layout in itertools.product(CASES, ["NCL"]):
        x = rng.standard_normal((2, cin, length)).astype(np.float32)
        w = rng.standard_normal((cout, cin // groups, k)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        pads = _pads(padding, k, dilation)
        ref = torch.nn.functional.conv1d(torch.nn.functional.pad(torch.from_numpy(x), pads), torch.from_numpy(w),
                                         torch.from_numpy(b), stride, 0, dilation, groups).numpy()
        got = fp.conv1d(x, w, b, stride, padding, dilation, groups, layout=layout)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(cin * k))


@pytest.mark.parametrize("call, exc, match", [
    (lambda x, w: fp.conv1d(x, w, padding=(1, 2, 3)), ValueError, "pair"),
    (lambda x, w: fp.conv1d(x, w, layout="NCHW"), ValueError, "NCL"),
    (lambda x, w: fp.conv1d(x[:, :, :, None], w), ValueError, r"\(N, C, L\)"),
    (lambda x, w: fp.conv1d(x, w[:, :3]), ValueError, "channels"),
    (lambda x, w: fp.conv1d(x, w, groups=3), ValueError, "groups"),
    (lambda x, w: fp.conv1d(x, w, stride=2, padding="same"), ValueError, "same"),
    (lambda x, w: fp.conv1d(x, w, padding=-1), ValueError, "padding"),
    (lambda x, w: fp.conv1d(x, w, stride=1.5), TypeError, "stride"),
    (lambda x, w: fp.conv1d(x[:, :, :2], w, dilation=4), ValueError, "spans"),
    (lambda x, w: fp.conv1d(x[:, :, :2], w, dilation=4, padding=(3, 0)), ValueError, "spans"),
    (lambda x, w: fp.conv1d(x, w[:, :, :, None]), ValueError, "weight"),
    (lambda x, w: fp.conv1d(x, w, out=np.zeros((2, 8, 10, 1), np.float32)), ValueError, "out"),
    (lambda x, w: fp.conv1d(x, w, out=np.zeros((2, 8, 7), np.float32)), ValueError, "out"),
    (lambda x, w: fp.conv1d(x, w, out=[1]), TypeError, "out"),
])
def test_bad_input(call, exc, match):
    x, w = np.zeros((2, 4, 10), np.float32), np.zeros((8, 4, 3), np.float32)
    with pytest.raises(exc, match=match):
        call(x, w)
