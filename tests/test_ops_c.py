"""The C op loops (csrc/ops/, fastpoint/ops/_c.py) against the NumPy reference they replace.

Max pooling and nearest resizing must be exactly equal; sums over integer-valued data too (same tap
order, one division); linear resizing runs the reference's products and sums without contraction, so
it is held to a few float32 ulps; the sigmoid's polynomial exp to 1e-6.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.ops import _c

pytestmark = pytest.mark.skipif(not _c.available(), reason="the C extension is not built")

CHANNELS = (1, 3, 16, 17)  # below, at and off the vector width


def _image(rng, n, c, h, w, layout, integer=False):
    x = rng.integers(-8, 9, (n, c, h, w)).astype(np.float32) if integer else \
        rng.standard_normal((n, c, h, w)).astype(np.float32)
    return x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = fp.get_num_threads()
    fp.set_num_threads(request.param)
    yield request.param
    fp.set_num_threads(old)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_max_pool_sweep_exact(layout, threads):
    rng = np.random.default_rng(0)
    for c, (h, w), k, s, p, d, ceil in itertools.product(CHANNELS, [(5, 7), (8, 8), (1, 3)], (1, 2, 3), (1, 2, 3),
                                                         (0, 1), (1, 2), (False, True)):
        if p > ((k - 1) * d + 1) // 2 or (k - 1) * d + 1 > min(h, w) + 2 * p:
            continue
        x = _image(rng, 2, c, h, w, layout)
        x.flat[::11] = np.nan  # NaN propagates as in np.maximum
        args = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil, layout=layout)
        ref = fp.max_pool2d(x, backend="numpy", **args)
        got = fp.max_pool2d(x, backend="c", **args)
        np.testing.assert_array_equal(got, ref, err_msg=str(args))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("hw,c", [((7, 70), 3), ((8, 33), 17), ((2, 130), 3), ((3, 2), 16), ((5, 9), 40),
                                  ((4, 64), 2), ((3, 95), 2)])
def test_max_pool_2x2_rows_wide(hw, c, layout, threads):
    """2x2 stride-2 pooling's one-pass rows (ops_impl.h), on rows and channel runs past a vector: NaN and
    -0.0 against 0.0 as the reference (sign bits compared too), odd sizes (the last row/column dropped),
    ceil mode (a last window off the image) and padding through the general loop."""
    rng = np.random.default_rng(5)
    x = _image(rng, 2, c, *hw, layout, integer=True)
    x.flat[::7] = np.nan
    x.flat[3::13] = -0.0
    x.flat[5::17] = 0.0
    for ceil, p in ((False, 0), (True, 0), (False, 1)):
        args = dict(kernel_size=2, stride=2, padding=p, ceil_mode=ceil, layout=layout)
        got, ref = fp.max_pool2d(x, backend="c", **args), fp.max_pool2d(x, backend="numpy", **args)
        np.testing.assert_array_equal(got, ref, err_msg=str(args))
        np.testing.assert_array_equal(np.signbit(got), np.signbit(ref), err_msg=str(args))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_avg_pool_sweep(layout, threads):
    rng = np.random.default_rng(1)
    for c, (h, w), k, s, p, ceil, inc, div in itertools.product(CHANNELS, [(6, 7), (3, 3)], (2, 3), (1, 2), (0, 1),
                                                                (False, True), (False, True), (None, 3)):
        if p > k // 2 or k > min(h, w) + 2 * p:
            continue
        args = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=inc, divisor_override=div,
                    layout=layout)
        xi = _image(rng, 2, c, h, w, layout, integer=True)  # exact sums: equal results
        np.testing.assert_array_equal(fp.avg_pool2d(xi, backend="c", **args),
                                      fp.avg_pool2d(xi, backend="numpy", **args))
        x = _image(rng, 2, c, h, w, layout)
        np.testing.assert_allclose(fp.avg_pool2d(x, backend="c", **args), fp.avg_pool2d(x, backend="numpy", **args),
                                   rtol=1e-6, atol=1e-6)


def test_pool_views_batch0_and_unbatched():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((2, 5, 12, 14)).astype(np.float32)
    for x in (base[:, ::2, 1:, ::-2], base.transpose(0, 1, 3, 2), base[:0], base[0]):
        for fn in (fp.max_pool2d, fp.avg_pool2d):
            ref = fn(x, 3, 2, 1, backend="numpy")
            got = fn(x, 3, 2, 1, backend="c")
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_backend_argument():
    x = np.ones((1, 1, 4, 4), np.float64)
    with pytest.raises(ValueError, match="float32"):
        fp.max_pool2d(x, 2, backend="c")
    with pytest.raises(ValueError, match="backend must be one of"):
        fp.max_pool2d(x, 2, backend="cuda")
    np.testing.assert_array_equal(fp.max_pool2d(x, 2), fp.max_pool2d(x, 2, backend="numpy"))  # float64: NumPy


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode,align", [("nearest", None), ("nearest-exact", None), ("bilinear", False),
                                        ("bilinear", True)])
def test_interpolate_sweep(layout, mode, align, threads):
    rng = np.random.default_rng(3)
    for c, (h, w), target in itertools.product(CHANNELS, [(4, 5), (1, 3), (9, 9)],
                                               [dict(size=(8, 10)), dict(size=(3, 2)), dict(scale_factor=1.7),
                                                dict(scale_factor=(0.6, 2.5)), dict(size=(1, 1))]):
        x = _image(rng, 2, c, h, w, layout)
        args = dict(mode=mode, align_corners=align, layout=layout, **target)
        if "scale_factor" in target and min(np.floor(np.multiply((h, w), target["scale_factor"]))) < 1:
            continue  # an empty output: refused before either backend runs
        ref = fp.interpolate(x, backend="numpy", **args)
        got = fp.interpolate(x, backend="c", **args)
        if mode.startswith("nearest"):
            np.testing.assert_array_equal(got, ref, err_msg=str(args))
        else:
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6, err_msg=str(args))


def test_interpolate_views_and_batch0():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((2, 6, 10, 12)).astype(np.float32)
    for x in (base[:, 1::2, ::-1, ::2], base[:0]):
        for mode in ("nearest", "bilinear"):
            ref = fp.interpolate(x, size=(7, 9), mode=mode, backend="numpy")
            got = fp.interpolate(x, size=(7, 9), mode=mode, backend="c")
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("c", [1, 17, 40, 600])
def test_resize_nhwc_rows_kept_match_planes(c, threads):
    """Linear resizing NHWC into NHWC keeps each source row blended along W (ops_impl.h resize_row_nhwc, while
    two rows fit in a quarter of L2: 600 channels x 61 columns do not, and take the per-pixel loop): the same
    products and sums as the NCHW plane loop, so both layouts agree bit for bit, on up- and downsampling,
    edge rows whose two taps are one source row, two images and an input view."""
    from fastpoint.network.ops_resize import source_coords
    from fastpoint.ops.interpolate import linear_taps

    rng = np.random.default_rng(11)
    base = rng.standard_normal((2, 9, 13, c)).astype(np.float32)
    for x_nhwc in (base, base[:, ::-1, 1:]):
        h, w = x_nhwc.shape[1:3]
        for (oh, ow), mode in (((2 * h, 61), "half_pixel"), ((5, 4), "half_pixel"), ((17, 23), "align_corners")):
            th = linear_taps(source_coords(mode, h, oh, oh / h), h, np.float32)
            tw = linear_taps(source_coords(mode, w, ow, ow / w), w, np.float32)
            got = _c.resize2d(x_nhwc, "NHWC", th, tw)
            ref = _c.resize2d(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)), "NCHW", th, tw)
            np.testing.assert_array_equal(got, ref.transpose(0, 2, 3, 1), err_msg=f"{c} {oh}x{ow} {mode}")


def test_global_average_pool():
    rng = np.random.default_rng(5)
    for c, hw in itertools.product(CHANNELS, [(1, 1), (7, 9), (32, 32)]):
        x = rng.standard_normal((2, c, *hw)).astype(np.float32)
        ref = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
        np.testing.assert_allclose(_c.global_avg_pool(x, "NCHW"), ref, rtol=1e-6, atol=1e-7)
        xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        np.testing.assert_allclose(_c.global_avg_pool(xh, "NHWC"), ref.transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-7)


def test_global_average_pool_threads_rule(monkeypatch):
    """An input that fits in one core's L2 is pooled on the calling thread (no pool wake-up); a larger one
    on every thread; the rule follows the detected L2 (``gap_caller_bytes``), not a fixed size."""
    from fastpoint.core.machine import cache_sizes

    calls = []

    class Lib:
        def fp_op_gap_f32(self, *args):
            calls.append(args[-1])
            return 0

    monkeypatch.setattr(_c, "_lib", Lib())
    old = fp.get_num_threads()
    fp.set_num_threads(2)
    try:
        l2 = cache_sizes()[2]
        assert _c.gap_caller_bytes() == l2
        for nbytes in (l2 // 2, 2 * l2):
            x = np.zeros((1, 16, 1, nbytes // 64), np.float32)
            _c.bind_global_avg_pool(x, "NCHW", np.empty((1, 16, 1, 1), np.float32))()
        monkeypatch.setattr(_c, "GAP_CALLER_BYTES", 0)  # the A/B hook: back to the small-op rule
        _c.bind_global_avg_pool(x, "NCHW", np.empty((1, 16, 1, 1), np.float32))()
        x = np.zeros((1, 16, 1, 64), np.float32)  # 4 KiB: under SMALL_OP_BYTES, one thread whatever the hook
        _c.bind_global_avg_pool(x, "NCHW", np.empty((1, 16, 1, 1), np.float32))()
    finally:
        fp.set_num_threads(old)
    assert calls == [1, 2, 2, 1]


@pytest.mark.parametrize("c", [63, 64, 65, 200, 960])
def test_global_average_pool_nhwc_channel_blocks(c, threads):
    """NHWC global average pooling cuts an image's channels into runs of whole vectors when there are fewer
    images than threads: one image and three, channel counts off the vector, the same means at 1 and 2 threads."""
    rng = np.random.default_rng(c)
    for n in (1, 3):
        x = rng.standard_normal((n, c, 5, 7)).astype(np.float32)
        ref = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
        xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = _c.global_avg_pool(xh, "NHWC")
        np.testing.assert_allclose(got, ref.transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-7)
        seq = np.zeros((n, c))  # the loop's own order: float64 sums per channel, pixel after pixel
        for p in xh.reshape(n, -1, c).transpose(1, 0, 2):
            seq = seq + p.astype(np.float64)
        np.testing.assert_array_equal(got.reshape(n, c), (seq / 35).astype(np.float32))
        old = fp.get_num_threads()
        fp.set_num_threads(1)
        np.testing.assert_array_equal(_c.global_avg_pool(xh, "NHWC"), got)
        fp.set_num_threads(old)


def _act_ref(v, act, alpha, beta):
    from fastpoint.network import ops_elementwise as E

    out = np.empty_like(v)
    if act is None:
        return v
    if act == "relu":
        E._relu(v, out)
    elif act == "sigmoid":
        E._sigmoid(v, out)
    elif act == "hardsigmoid":
        E._hard_sigmoid(v, out, alpha, beta)
    elif act == "hardswish":
        E._hard_swish(v, out)
    else:
        np.clip(v, np.float32(alpha), np.float32(beta), out=out)
    return out


@pytest.mark.parametrize("act", [None, "relu", "sigmoid", "hardsigmoid", "hardswish", "clip"])
def test_eltwise_chains(act, threads):
    rng = np.random.default_rng(6)
    alpha, beta = (0.2, 0.5) if act == "hardsigmoid" else (-1.0, 6.0) if act == "clip" else (0.0, 0.0)
    ops = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, None: None}
    for c, op in itertools.product(CHANNELS, ops):
        a = rng.standard_normal((2, c, 5, 7)).astype(np.float32) * 4
        a.flat[::13] = np.nan
        for b in (None, rng.standard_normal((1, c, 1, 1)).astype(np.float32) + 3,  # NCHW per channel
                  rng.standard_normal(7).astype(np.float32) + 3,  # last axis (NHWC's channel)
                  rng.standard_normal(a.shape).astype(np.float32), np.float32(1.5).reshape(())):
            if (b is None) != (op is None):
                continue
            with np.errstate(all="ignore"):
                v = a if op is None else ops[op](a, b).astype(np.float32)
                ref = _act_ref(v, act, alpha, beta)
            got = _c.eltwise(a, b, op, act, alpha, beta)
            tol = 1e-6 if act == "sigmoid" else 0
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol,
                                       err_msg=f"{op} {act} b={getattr(b, 'shape', None)}")
            inplace = a.copy()
            assert _c.eltwise(inplace, b, op, act, alpha, beta, out=inplace) is inplace  # out over its input
            np.testing.assert_array_equal(inplace, got)


def test_eltwise_declines_other_broadcasts():
    a = np.ones((2, 3, 4, 5), np.float32)
    assert _c.eltwise(a, np.ones((1, 3, 4, 1), np.float32), "add") is None  # two axes
    assert _c.eltwise(a.astype(np.float64), None, None, "relu") is None
    assert _c.eltwise(a[:0], None, None, "relu").shape == (0, 3, 4, 5)
    assert _c.eltwise(np.float32(2).reshape(()), np.float32(3).reshape(()), "add") is None  # 0-d: NumPy's


@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (2, 5, 7, 9), (1, 64, 17, 3), (3, 21, 32, 32), (1, 1, 1, 1),
                                   (1, 200, 3, 100), (0, 4, 5, 6), (1, 17, 1, 65), (2, 3, 5, 13), (1, 17, 3, 1)])
def test_layout_conversion_both_ways(shape, threads):
    """fp_op_transpose_f32: NCHW <-> NHWC exactly, for channels and pixel counts off the 16 x 64 tiles;
    pairs it does not take (a strided view, float64) are declined and left unwritten."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    b = np.full((shape[0], shape[2], shape[3], shape[1]), np.nan, np.float32).transpose(0, 3, 1, 2)
    assert _c.to_layout(a, b)
    np.testing.assert_array_equal(b, a)
    c = np.full(shape, np.nan, np.float32)
    assert _c.to_layout(b, c)
    np.testing.assert_array_equal(c, a)
    np.testing.assert_array_equal(_c.contiguous(b), a)
    assert _c.contiguous(b).flags.c_contiguous
    d = np.full(shape, np.nan, np.float32)
    if shape[2] > 1 and shape[0]:
        assert not _c.to_layout(a[:, :, ::-1], d) and np.isnan(d).all()
    assert not _c.to_layout(a.astype(np.float64), d) and (np.isnan(d).all() or not d.size)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_nhwc_pixels_into_nchw_planes(mode, threads):
    """A network's NHWC activations resized into its NCHW graph output (csrc/ops resize_row_c2p for
    linear): bit-equal to the same resize from NCHW planes, on sweeps of channels, sizes (up and down,
    rows shared between output rows or not), batches and a strided input view."""
    from fastpoint.ops.interpolate import axis_taps

    rng = np.random.default_rng(5)
    for c, (h, w), (oh, ow), n in itertools.product(CHANNELS, [(4, 5), (1, 3), (9, 9)],
                                                    [(8, 10), (3, 2), (1, 1), (33, 7)], (1, 2)):
        base = rng.standard_normal((n, h, 2 * w, c)).astype(np.float32)
        for pixels in (np.ascontiguousarray(base[:, :, :w]), base[:, :, ::2]):  # NHWC in memory
            x = pixels.transpose(0, 3, 1, 2)  # NCHW shape, channels contiguous
            taps = [axis_taps(h, oh, None, mode, False, np.float32), axis_taps(w, ow, None, mode, False, np.float32)]
            got = np.full((n, c, oh, ow), np.nan, np.float32)
            assert _c.resize2d(x, "NCHW", taps[0], taps[1], out=got) is got
            planes = _c.resize2d(np.ascontiguousarray(x), "NCHW", taps[0], taps[1])
            np.testing.assert_array_equal(got, planes, err_msg=f"{c} {h}x{w} -> {oh}x{ow} n={n}")
            ref = fp.interpolate(np.ascontiguousarray(x), size=(oh, ow), mode=mode, backend="numpy")
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("shift", [0, 1, 7])
def test_resize_nhwc_pixels_into_large_nchw_planes(shift, isa, threads):
    """Outputs larger than L2 (lraspp's 21@32^2 -> 21@256^2 logits): resize_row_c2p stores them
    non-temporally from the first aligned float of each row on; still bit-equal to the NCHW planes'
    resize, also into an output that starts off a vector boundary (``shift`` floats) and with rows whose
    length is no multiple of the vector; on every ISA's loop (AVX2 streams 32-byte lines, scalar none)."""
    from fastpoint.core.machine import cache_sizes
    from fastpoint.ops.interpolate import axis_taps

    rng = np.random.default_rng(6)
    for c, (h, w), (oh, ow) in [(21, (32, 32), (256, 256)), (5, (17, 13), (240, 251)), (3, (40, 9), (350, 333))]:
        x = rng.standard_normal((1, h, w, c)).astype(np.float32).transpose(0, 3, 1, 2)  # NHWC in memory
        taps = [axis_taps(h, oh, None, "bilinear", False, np.float32),
                axis_taps(w, ow, None, "bilinear", False, np.float32)]
        size = c * oh * ow
        assert c != 21 or 4 * size > cache_sizes()[2]  # the streamed path at least there (5.5 MB)
        got = np.full(size + shift, np.nan, np.float32)[shift:].reshape(1, c, oh, ow)
        assert _c.resize2d(x, "NCHW", taps[0], taps[1], out=got) is got
        planes = _c.resize2d(np.ascontiguousarray(x), "NCHW", taps[0], taps[1])
        np.testing.assert_array_equal(got, planes, err_msg=f"{c} {h}x{w} -> {oh}x{ow} shift {shift}")
