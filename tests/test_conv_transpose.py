"""conv_transpose2d / conv_transpose1d: every backend and C ISA path against the scatter-add reference,
the reference against PyTorch, and the errors."""

import itertools

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends.numpy import conv_transpose2d_nchw
from fastpoint.core.threads import thread_limit
from fastpoint.core.transpose_spec import axis_phases

from .conftest import TESTED_BACKENDS, int_array

# (cin, cout, h, w, k, stride, padding, output_padding, dilation, groups)
CASES = [
    (8, 6, 5, 7, 2, 2, 0, 0, 1, 1),  # U-Net up-conv: one GEMM
    (17, 33, 3, 5, 2, 2, 0, 0, 1, 1),  # channels off the vector width
    (4, 4, 4, 4, 3, 3, 0, 0, 1, 1),  # K == stride == 3
    (5, 6, 6, 5, 3, 2, 1, 1, 1, 1),  # 3x3 s2 p1 output_padding 1
    (4, 6, 5, 5, 4, 2, 1, 0, 1, 2),  # DCGAN / FCN K4 s2 p1, grouped
    (3, 3, 4, 4, 16, 8, 4, 0, 1, 1),  # FCN-8s K16 s8 p4
    (4, 5, 5, 6, 1, 3, 0, 2, 1, 1),  # k < s: phases with no tap (bias only)
    (4, 5, 5, 6, 2, 3, 1, 1, 1, 1),
    (4, 6, 6, 5, 3, 3, 2, 1, 2, 1),  # dilation, one-tap phases past the input
    (4, 4, 5, 5, 5, 2, 3, 1, 3, 1),  # output_padding < dilation
    (6, 6, 7, 7, 3, 1, 1, 0, 1, 6),  # stride 1, depthwise
    (4, 8, 5, 4, 3, 1, 0, 0, 2, 2),
    (3, 4, 1, 9, (1, 4), (1, 2), (0, 1), (0, 1), 1, 1),  # 1-d shaped
]


# The sub-pixel GEMM (csrc/lowered/deconv_shuffle.c, NCHW): K a multiple of a stride of 4 or more, or not a
# multiple of the stride (phases with fewer taps: each of the four k ranges).  Paddings that crop partial blocks
# on every side or whole ones (padding > stride), output_padding rows no input reaches, widths of blocks off the
# GEMM tile, 3 taps per axis, anisotropic strides, channels off the vector width and the GEMM tile's rows.
SHUFFLE_CASES = [
    (21, 21, 6, 5, 16, 8, 4, 0, 1, 1),  # FCN-8s K16 s8 p4
    (3, 5, 7, 13, 8, 4, 2, 3, 1, 1),
    (5, 9, 4, 17, 12, 4, 9, 1, 1, 1),  # 3 taps, padding past a whole block
    (7, 3, 3, 50, (4, 8), (2, 4), (1, 3), (1, 2), 1, 1),
    (6, 5, 4, 41, (8, 4), (4, 2), (3, 1), (1, 1), 1, 1),  # stride 4 down, 2 across
    (2, 4, 5, 3, (16, 3), (8, 1), (7, 1), (5, 0), 1, 1),
    (33, 17, 2, 2, (5, 10), (5, 5), (0, 0), (4, 4), 1, 1),  # one K == stride axis
    (5, 6, 6, 7, 3, 2, 1, 1, 1, 1),  # 3x3 s2 p1 output_padding 1: phases of 4, 2, 2 and 1 taps
    (4, 9, 5, 4, 5, 2, 2, 1, 1, 1),  # 3 and 2 taps per axis
    (3, 11, 5, 5, 7, 4, 3, 2, 1, 1),
    (9, 4, 5, 5, 3, 2, 0, 0, 1, 1),
    (7, 5, 4, 6, (3, 4), (2, 2), (0, 1), (1, 0), 1, 1),  # one axis a multiple, the other not
    (3, 4, 1, 19, (1, 5), (1, 2), (0, 1), (0, 1), 1, 1),  # 1-d shaped
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _reference(x, w, b, k, s, p, op, d, g, relu=False):
    y = conv_transpose2d_nchw(x.astype(np.float64), w.astype(np.float64), _pair(s), _pair(p), _pair(op), _pair(d), g)
    if b is not None:
        y = y + b[:, None, None]
    return np.maximum(y, 0) if relu else y


def _arrays(case, n=2, seed=0, dtype=np.float32):
    cin, cout, h, w, k, s, p, op, d, g = case
    rng = np.random.default_rng(seed + len(str(case)))
    kh, kw = _pair(k)
    return (int_array(rng, (n, cin, h, w), dtype=dtype), int_array(rng, (cin, cout // g, kh, kw), -2, 2, dtype),
            int_array(rng, (cout,), -5, 5, dtype))


@pytest.mark.parametrize("backend", TESTED_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_equals_reference(backend, case, layout):
    x, w, b = _arrays(case)
    _, _, _, _, k, s, p, op, d, g = case
    expected = _reference(x, w, b, k, s, p, op, d, g, relu=True)
    xin = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    shape = expected.shape if layout == "NCHW" else expected.transpose(0, 2, 3, 1).shape
    out = np.full(shape, np.nan, np.float32)  # every output must be written
    fp.conv_transpose2d(xin, w, b, s, p, op, g, d, activation="relu", layout=layout, backend=backend, out=out)
    np.testing.assert_array_equal(out if layout == "NCHW" else out.transpose(0, 3, 1, 2), expected)


@pytest.mark.parametrize("case", CASES[:6] + SHUFFLE_CASES[2:3] + SHUFFLE_CASES[-3:-2], ids=str)
def test_every_c_isa(isa, case):
    x, w, b = _arrays(case, n=1, seed=1)
    _, _, _, _, k, s, p, op, d, g = case
    np.testing.assert_array_equal(fp.conv_transpose2d(x, w, b, s, p, op, g, d, backend="c"),
                                  _reference(x, w, b, k, s, p, op, d, g))


# The C backend's scatter-add GEMM (csrc/lowered/deconv_scatter.c): strides whose sw rows are interleaved
# (2, 3, 16) or not (dilation, stride 17), Cin past one k block, channel counts that split the threads'
# row units unevenly, padding that crops taps on every side.
SCATTER_CASES = [
    (3, 21, 16, 16, 4, 2, 1, 0, 1, 1),  # FCN-8s K4 s2 p1, 21 channels
    (3, 21, 5, 6, 16, 8, 4, 0, 1, 1),
    (700, 3, 3, 4, 3, 2, 1, 1, 1, 1),  # Cin over one k block: the tile is added once per block
    (5, 7, 4, 5, (3, 5), (3, 2), (2, 0), (1, 1), (1, 2), 1),
    (4, 5, 3, 40, (1, 18), (1, 16), (0, 3), (0, 5), 1, 1),  # stride 16 grouped, a row longer than a tile
    (4, 5, 3, 7, (2, 17), (1, 17), (0, 0), (0, 16), 1, 1),  # stride 17: element by element
    (9, 13, 7, 3, 5, 3, 6, 2, (3, 1), 1),  # padding larger than the kernel span reaches
    # the store's summed row groups (K - kx between s and 2s): K3 and K5 at stride 2, K5 and K6 at stride 3
    (6, 5, 5, 21, (3, 5), (2, 2), (1, 2), (1, 1), 1, 1),
    (6, 9, 4, 19, (2, 6), (1, 3), (0, 1), (0, 2), 1, 1),
    (4, 3, 3, 17, (2, 5), (1, 3), (0, 0), (0, 0), 1, 1),
]


@pytest.mark.parametrize("case", SCATTER_CASES, ids=str)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_scatter_gemm(case, layout, threads):
    x, w, b = _arrays(case, n=2, seed=7)
    _, _, _, _, k, s, p, op, d, g = case
    xin = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for bias, relu in ((b, True), (None, False)):
        expected = _reference(x, w, bias, k, s, p, op, d, g, relu=relu)
        shape = expected.shape if layout == "NCHW" else expected.transpose(0, 2, 3, 1).shape
        out = np.full(shape, np.nan, np.float32)  # every output is set before the GEMM adds to it
        with thread_limit(threads):
            fp.conv_transpose2d(xin, w, bias, s, p, op, g, d, activation="relu" if relu else None, layout=layout,
                                backend="c", out=out)
        np.testing.assert_array_equal(out if layout == "NCHW" else out.transpose(0, 3, 1, 2), expected)


@pytest.mark.parametrize("case", SHUFFLE_CASES, ids=str)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_shuffle_gemm(case, threads):
    from fastpoint.backends.c_lowered import deconv_shuffle_applies
    from fastpoint.core.transpose_spec import make_transpose_layer

    x, w, b = _arrays(case, n=2, seed=5)
    _, _, _, _, k, s, p, op, d, g = case
    assert deconv_shuffle_applies(make_transpose_layer(w, s, p, op, g, d, "NCHW", None))
    layer = fp.ConvTranspose2d(w, b, s, p, op, g, d, activation="relu", backend="c")
    for bias, relu in ((b, True), (None, False)):
        expected = _reference(x, w, bias, k, s, p, op, d, g, relu=relu)
        out = np.full(expected.shape, np.nan, np.float32)  # every output is written once
        with thread_limit(threads):
            fp.conv_transpose2d(x, w, bias, s, p, op, g, d, activation="relu" if relu else None, backend="c", out=out)
            np.testing.assert_array_equal(out, expected)
            if relu:
                np.testing.assert_array_equal(layer(x), expected)
                np.testing.assert_array_equal(layer(x[0]), expected[0])


@pytest.mark.parametrize("k, s, p", [(4, 2, 1), (2, 2, 0), (3, 3, 0)])
def test_one_shot_scatter_plan(k, s, p):
    """conv_transpose2d() on a lowered GEMM (the scatter-add GEMM; K == stride: the scattering GEMM) takes a
    cached plan and one C call (weights packed in the thread's scratch): each call's own weights and bias, out=
    and unbatched, NHWC, the views it leaves to the layer's path (a non-contiguous x, float64 bias, an out to
    check), and the aliasing refusal."""
    rng = np.random.default_rng(11)
    for layout in ("NCHW", "NHWC"):
        for _trial in range(3):  # the same argument facts: the cached plan, fresh arrays each time
            x = int_array(rng, (2, 5, 6, 7))
            w = int_array(rng, (5, 3, k, k), -2, 2)
            b = int_array(rng, (3,), -4, 4)
            expected = fp.conv_transpose2d(x, w, b, s, p, activation="relu", backend="numpy")
            xl = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            exp_l = expected if layout == "NCHW" else expected.transpose(0, 2, 3, 1)
            got = fp.conv_transpose2d(xl, w, b, s, p, activation="relu", layout=layout)
            np.testing.assert_array_equal(got, exp_l)
            out = np.full(exp_l.shape, np.nan, np.float32)
            assert fp.conv_transpose2d(xl, w, b, s, p, activation="relu", layout=layout, out=out) is out
            np.testing.assert_array_equal(out, exp_l)
            np.testing.assert_array_equal(fp.conv_transpose2d(xl[1], w, b, s, p, activation="relu", layout=layout),
                                          exp_l[1])
            np.testing.assert_array_equal(fp.conv_transpose2d(xl, w, None, s, p, layout=layout),
                                          fp.conv_transpose2d(xl, w, None, s, p, layout=layout, backend="numpy"))
    x = int_array(rng, (1, 4, 5, 10))
    w = int_array(rng, (4, 2, 3, 3), -2, 2)
    expected = fp.conv_transpose2d(x[..., ::2], w, None, 2, 1, backend="numpy")
    np.testing.assert_array_equal(fp.conv_transpose2d(x[..., ::2], w, None, 2, 1), expected)  # a strided view
    np.testing.assert_array_equal(fp.conv_transpose2d(x[..., ::2], w, np.zeros(2), 2, 1), expected)  # float64 bias
    with pytest.raises(ValueError):
        fp.conv_transpose2d(x, w, None, 2, 1, out=np.empty((1, 2, 9, 19), np.float32)[:, :, :, :1])
    big = np.zeros(4 * 2 * 9 * 19 + 200, np.float32)
    xa = big[:200].reshape(1, 4, 5, 10)
    with pytest.raises(ValueError, match="overlap|alias|share"):
        fp.conv_transpose2d(xa, w, None, 2, 1, out=big[:2 * 9 * 19].reshape(1, 2, 9, 19))


# The NHWC K == stride GEMM written in place by the micro-kernels (csrc/lowered/deconv_nhwc.c): kw*Cout around
# and off the column panels (NR 16, 48), rows not a multiple of MR (4, 6, 8), Cin past one k block (C read
# back), a 3x3 s3, an output past L2 (streaming stores).
NHWC_KSTRIDE_CASES = [  # (cin, cout, h, w, k)
    (5, 1, 3, 5, 2),
    (8, 24, 4, 13, 2),
    (17, 33, 3, 9, 2),
    (3, 50, 2, 7, 3),
    (1600, 5, 2, 3, 2),
    (8, 64, 2, 129, 2),
]


@pytest.mark.parametrize("case", NHWC_KSTRIDE_CASES, ids=str)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kstride_nhwc_in_place(isa, case, threads):
    cin, cout, h, w, k = case
    rng = np.random.default_rng(cin + cout)
    x = int_array(rng, (2, cin, h, w))
    wt = int_array(rng, (cin, cout, k, k), -2, 2)
    b = int_array(rng, (cout,), -5, 5)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for bias, act in ((b, "relu"), (None, None)):
        expected = _reference(x, wt, bias, k, k, 0, 0, 1, 1, relu=act == "relu").transpose(0, 2, 3, 1)
        out = np.full(expected.shape, np.nan, np.float32)  # every output written once
        with thread_limit(threads):
            fp.conv_transpose2d(xl, wt, bias, k, activation=act, layout="NHWC", backend="c", out=out)
            layer = fp.ConvTranspose2d(wt, bias, k, activation=act, layout="NHWC", backend="c")
            again = layer(xl)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(again, expected)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch, cin, cout, h, w", [(1, 32, 37, 64, 72), (2, 19, 8, 33, 40)])
def test_kstride_nchw_pair_store(isa, threads, batch, cin, cout, h, w):
    """The NCHW 2x2 store (deconv_gemm.c) writes a tile's kx = 0, 1 row pairs of each input-row run in one call
    of the interleave row (`rows`; the portable row: one `run` per pair): an output past L2 (2.7 MB: streamed)
    and one within it (0.3 MB, two images), Cout off the tile, runs cut by the input row's end (widths off NR),
    into the channel slice of a larger buffer (a network's Concat), bias and ReLU or neither, one-shot and
    prepacked, 1-3 threads."""
    rng = np.random.default_rng(cin)
    x = int_array(rng, (batch, cin, h, w))
    wt = int_array(rng, (cin, cout, 2, 2), -2, 2)
    b = int_array(rng, (cout,), -5, 5)
    for bias, act in ((b, "relu"), (None, None)):
        expected = _reference(x, wt, bias, 2, 2, 0, 0, 1, 1, relu=act == "relu")
        buf = np.full((batch, cout + 3) + expected.shape[2:], np.nan, np.float32)
        out = buf[:, 3:] if batch == 1 else np.full(expected.shape, np.nan, np.float32)
        with thread_limit(threads):
            fp.conv_transpose2d(x, wt, bias, 2, activation=act, out=out)
            again = fp.ConvTranspose2d(wt, bias, 2, activation=act)(x)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(again, expected)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cin, cout, h", [(1100, 71, 2), (512, 5, 17)])
def test_kstride_one_shot_row_blocks(isa, threads, cin, cout, h):
    """The one-shot NCHW K == stride GEMM on one thread packs the caller's weights per MC-row block inside the
    GEMM's loops (csrc/lowered/lowered_driver.c, a_raw): Cin 1100 makes MC ~110 rows, so Cout*4 = 284 rows are
    three blocks, the last panel partial.  Cin 512 makes NC ~250 columns, fewer than 17x18 pixels: several
    column blocks, so the call packs the weights first after all (FP_DECLINED), as on two threads.  Same result
    as the prepacked layer and the reference."""
    rng = np.random.default_rng(5)
    x = int_array(rng, (2, cin, h, h + 1))
    w = int_array(rng, (cin, cout, 2, 2), -2, 2)
    b = int_array(rng, (cout,), -4, 4)
    expected = _reference(x, w, b, 2, 2, 0, 0, 1, 1, relu=True)
    out = np.full(expected.shape, np.nan, np.float32)
    with thread_limit(threads):
        fp.conv_transpose2d(x, w, b, 2, activation="relu", out=out)
        again = fp.ConvTranspose2d(w, b, 2, activation="relu")(x)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(again, expected)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (4, 2, 1), (3, 2, 1)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_weights_packed_on_threads(threads, k, s, p, layout):
    """Weights large enough that the packing splits its panels between threads (lowered_driver.c; the sub-pixel
    GEMM's per phase, deconv_shuffle.c, for the 3x3 s2 NCHW), one-shot and prepacked, Cout*K*K off the
    micro-kernels' row counts."""
    rng = np.random.default_rng(threads)
    x = int_array(rng, (1, 70, 3, 4))
    w = int_array(rng, (70, 251, k, k), -2, 2)
    b = int_array(rng, (251,), -4, 4)
    expected = fp.conv_transpose2d(x, w, b, s, p, backend="numpy")
    xl = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with thread_limit(threads):
        got = fp.conv_transpose2d(xl, w, b, s, p, layout=layout)
        layer = fp.ConvTranspose2d(w, b, s, p, layout=layout)
        again = layer(xl)
    for y in (got, again):
        np.testing.assert_array_equal(y if layout == "NCHW" else y.transpose(0, 3, 1, 2), expected)


def test_phases_cover_every_tap_once():
    for k, s, p, d in itertools.product(range(1, 7), range(1, 5), range(0, 4), range(1, 4)):
        taps = sorted(t for ph in axis_phases(k, s, p, d) for t in ph.taps)
        assert taps == list(range(k))
        assert sorted(ph.first for ph in axis_phases(k, s, p, d)) == list(range(s))


@pytest.mark.parametrize("backend", TESTED_BACKENDS)
def test_unbatched_float64_noncontiguous_batch0(backend):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3))
    x = rng.standard_normal((4, 6, 14))[:, :, ::2]  # non-contiguous, float64
    got = fp.conv_transpose2d(x, w, None, 2, 1, 1, backend=backend)
    np.testing.assert_allclose(got, _reference(x[None], w, None, 3, 2, 1, 1, 1, 1)[0], rtol=1e-12, atol=1e-12)
    assert got.dtype == np.float64 and got.shape == (3, 12, 14)
    empty = fp.conv_transpose2d(np.zeros((0, 4, 3, 3), np.float32), w.astype(np.float32), stride=2, backend=backend)
    assert empty.shape == (0, 3, 7, 7)


@pytest.mark.parametrize("backend", TESTED_BACKENDS)
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_conv_transpose1d(backend, layout):
    rng = np.random.default_rng(3)
    x, w, b = int_array(rng, (2, 6, 11)), int_array(rng, (6, 2, 4), -2, 2), int_array(rng, (6,))
    expected = _reference(x[:, :, None], w[:, :, None], b, 4, (1, 3), (0, 2), (0, 1), (1, 2), 3)[:, :, 0]
    xin = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    layer = fp.ConvTranspose1d(w, b, 3, 2, 1, 3, 2, layout=layout, backend=backend)
    got = layer(xin)
    np.testing.assert_array_equal(got if layout == "NCL" else got.transpose(0, 2, 1), expected)
    unbatched = fp.conv_transpose1d(xin[0], w, b, 3, 2, 1, 3, 2, layout=layout, backend=backend)
    np.testing.assert_array_equal(unbatched, got[0])


def test_reference_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    for cin, cout, h, w, k, s, p, op, d, g in CASES:
        kh, kw = _pair(k)
        x = rng.standard_normal((2, cin, h, w))
        wt = rng.standard_normal((cin, cout // g, kh, kw))
        ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt), None, s, p, op, g,
                                                   d).numpy()
        np.testing.assert_allclose(conv_transpose2d_nchw(x, wt, _pair(s), _pair(p), _pair(op), _pair(d), g), ref,
                                   rtol=1e-10, atol=1e-10)
        got = fp.conv_transpose2d(x.astype(np.float32), wt.astype(np.float32), None, s, p, op, g, d)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(cin * kh * kw))


def test_layer_reuse_pickle_and_out_aliasing():
    import pickle

    rng = np.random.default_rng(5)
    x, w = int_array(rng, (1, 4, 3, 3)), int_array(rng, (4, 4, 2, 2))
    up = fp.ConvTranspose2d(w, stride=2)
    np.testing.assert_array_equal(up(x), up(x))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(up))(x), up(x))
    layer1d = fp.Conv1d(w[:, :, 0], dilation=2, padding=(2, 0))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(layer1d))(x[:, :, 0]), layer1d(x[:, :, 0]))
    with pytest.raises(ValueError, match="overlaps"):
        big = np.zeros((1, 4, 6, 6), np.float32)
        up(big[:, :, :3, :3], out=big)


@pytest.mark.parametrize("call, exc, match", [
    (lambda x, w: fp.conv_transpose2d(x, w, stride=2, output_padding=2), ValueError, "output_padding"),
    (lambda x, w: fp.conv_transpose2d(x, w, output_padding=1), ValueError, "output_padding"),
    (lambda x, w: fp.conv_transpose2d(x, w, padding=3), ValueError, "empty"),
    (lambda x, w: fp.conv_transpose2d(x, w, groups=3), ValueError, "groups"),
    (lambda x, w: fp.conv_transpose2d(x, w[:3]), ValueError, "channels"),
    (lambda x, w: fp.conv_transpose2d(x, w, padding=(1, 2, 3)), TypeError, "padding"),
    (lambda x, w: fp.conv_transpose2d(x, w, padding="same"), ValueError, "padding"),
    (lambda x, w: fp.conv_transpose2d(x, w, layout="NCL"), ValueError, "layout"),
    (lambda x, w: fp.conv_transpose2d(x[0, 0], w), ValueError, r"\(N, C, H, W\)"),
    (lambda x, w: fp.conv_transpose2d(x, w[0]), ValueError, "weight"),
    (lambda x, w: fp.conv_transpose2d(x.astype(np.int32), w), TypeError, "x"),
    (lambda x, w: fp.conv_transpose2d(x, w, np.zeros(3, np.float32)), ValueError, "bias"),
    (lambda x, w: fp.conv_transpose2d(x, w, out=np.zeros((2, 5, 5, 5), np.float32)), ValueError, "out"),
    (lambda x, w: fp.conv_transpose1d(x[:, :, 0], w[:, :, 0], layout="NCHW"), ValueError, "NCL"),
    (lambda x, w: fp.conv_transpose1d(x[:, :, 0], w), ValueError, "weight"),
])
def test_bad_input(call, exc, match):
    x, w = np.zeros((2, 4, 2, 2), np.float32), np.zeros((4, 5, 3, 3), np.float32)
    with pytest.raises(exc, match=match):
        call(x, w)


def test_fastpoint_check_op_cases(backend):
    """The conv1d / transposed cases `fastpoint check` runs pass on every fast backend."""
    from fastpoint.core.check_ops import op_cases, run_op_case

    failed = [case.name for case in op_cases() if not run_op_case(case, backend)[0]]
    assert not failed, failed
