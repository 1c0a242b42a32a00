"""The convpx kernels (csrc/direct/direct_px.c, docs/direct.md "Few input channels"): output pixels in the vector
lanes for layers with few input channels per group, the 3-channel stems first.

Which layers take them, the stems' own shapes (and their edges: masked last vectors, odd widths, every padding
side) on every convpx row against the NumPy reference, each in-register activation and the epilogues that run on
the buffer, one-shot against prepacked, threads, batches and views.  Integer-valued data: exact comparisons.
"""

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback
from fastpoint.backends.kernel_table import forced_kernel
from fastpoint.core.spec import make_spec

from .conftest import int_array

pytestmark = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

ROWS = [k for k in fp.kernels() if k.backend == "c" and k.family == "convpx"]
BEST = next(k.name for k in ROWS if k.available)  # forced where the default rule would not take it (NHWC)


def kernel_of(layer, x, w):
    return cback.CBackend().kernel_name(make_spec(layer._layer.with_dtype(np.float32), x.shape, w.shape))


def data(rng, n, cin, h, w, layout):
    return int_array(rng, (n, cin, h, w) if layout == "NCHW" else (n, h, w, cin))


def test_few_input_channels_take_convpx_by_default():
    """NCHW layers with up to 8 input channels per group; NHWC ones stay on direct.c's tiles (the rule of
    docs/direct.md)."""
    rng = np.random.default_rng(0)
    cases = ((1, 1, "NCHW", "convpx"), (3, 1, "NCHW", "convpx"), (8, 1, "NCHW", "convpx"),
             (16, 2, "NCHW", "convpx"), (9, 1, "NCHW", "conv"), (32, 2, "NCHW", "conv"), (3, 1, "NHWC", "conv"))
    for cin, groups, layout, family in cases:
        w = int_array(rng, (16, cin // groups, 3, 3))
        x = data(rng, 1, cin, 9, 9, layout)
        layer = fp.Conv2d(w, padding=1, groups=groups, layout=layout, backend="c")
        name = kernel_of(layer, x, w)
        assert {k.name: k.family for k in fp.kernels()}[name] == family, (cin, groups, layout, name)


# the stems of the public models (scaled down in height), then widths around the vector and tile edges
STEMS = [dict(cin=3, cout=16, k=3, stride=2, padding=1, act=fp.Activation("hardswish")),  # lraspp
         dict(cin=3, cout=64, k=7, stride=2, padding=3, act="relu"),  # fcn_resnet50
         dict(cin=3, cout=32, k=3, stride=1, padding=1, act=fp.Activation("leaky_relu", 0.01))]  # BasicUNet


@pytest.mark.parametrize("name", [k.name for k in ROWS])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_stems_and_edges(name, layout):
    k = next(r for r in ROWS if r.name == name)
    if not k.available:
        pytest.skip(f"{name}: this CPU lacks {k.isa}")
    rng = np.random.default_rng(1)
    with forced_kernel(name):
        for stem in STEMS:
            for width in (1, 7, 15, 16, 17, 33, 47, 48, 49, 97, 130):
                x = data(rng, 1, stem["cin"], 6, width, layout)
                w = int_array(rng, (stem["cout"], stem["cin"], stem["k"], stem["k"]))
                b = int_array(rng, (stem["cout"],))
                kw = dict(stride=stem["stride"], padding=stem["padding"], layout=layout, activation=stem["act"])
                expected = fp.conv2d(x, w, b, backend="numpy", **kw)
                layer = fp.Conv2d(w, b, backend="c", **kw)
                out = np.full_like(expected, np.nan)
                np.testing.assert_allclose(layer(x, out=out), expected, rtol=1e-6, atol=1e-6,
                                           err_msg=f"{name} {stem} width {width}")
                assert kernel_of(layer, x, w) == name


ACTS = [None, "relu", "relu6", ("clip", -2.5, 4.0), "leaky_relu", ("leaky_relu", 0.3), "hardswish",
        "hardsigmoid", "sigmoid", ("prelu", 0.25)]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("with_res", [False, True])
def test_activations_in_registers_and_on_the_buffer(layout, with_res):
    """relu, clip, leaky relu and hardswish run in the kernel's registers (NCHW blocks straight into y); the
    others and any residual on the L1 buffer.  Values stay within rounding of the reference activations."""
    rng = np.random.default_rng(2)
    for cout in (8, 13, 16, 64, 70):  # whole blocks, a partial block, whole and partial 64-channel chunks
        x = data(rng, 2, 3, 7, 37, layout)
        w = int_array(rng, (cout, 3, 3, 3))
        b = int_array(rng, (cout,))
        plain = fp.conv2d(x, w, b, padding=1, layout=layout, backend="numpy")
        res = int_array(rng, plain.shape) if with_res else None
        for act in ACTS:
            expected = fp.conv2d(x, w, b, padding=1, layout=layout, activation=act, residual=res, backend="numpy")
            with forced_kernel(BEST):
                layer = fp.Conv2d(w, b, padding=1, layout=layout, activation=act, backend="c")
                got = layer(x, out=np.full_like(expected, np.nan), residual=res)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()),
                                       err_msg=f"{act!r} cout {cout} residual {with_res}")


def assert_nan_reaches_its_windows(cin, width):
    """A NaN input reaches exactly the outputs of its windows through each in-register activation."""
    x = np.ones((1, cin, 5, width), np.float32)
    x[0, 1, 2, 7] = np.nan
    w = np.ones((16, cin, 3, 3), np.float32)
    for act in ("relu", "relu6", "leaky_relu", "hardswish"):
        got = fp.conv2d(x, w, padding=1, activation=act, backend="c")
        expected = fp.conv2d(x, w, padding=1, activation=act, backend="numpy")
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=act)


def test_nan_stays_nan_through_each_activation():
    assert_nan_reaches_its_windows(3, 20)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_strides_dilation_groups_and_padding_sides(layout):
    rng = np.random.default_rng(3)
    cases = [(dict(stride=3, padding=(2, 0)), (3, 3)), (dict(stride=(2, 1), padding=(0, 3)), (3, 3)),
             (dict(dilation=2, padding=2), (3, 3)), (dict(dilation=(1, 3), padding=(1, 3), stride=2), (3, 3)),
             (dict(groups=2, padding=1, stride=2), (3, 3)), (dict(padding="same"), (2, 4)),
             (dict(stride=2), (1, 5))]
    for kw, (kh, kwid) in cases:
        groups = kw.get("groups", 1)
        x = data(rng, 2, 2 * groups, 11, 29, layout)
        w = int_array(rng, (12, 2, kh, kwid))
        b = int_array(rng, (12,))
        expected = fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw)
        with forced_kernel(BEST):
            layer = fp.Conv2d(w, b, layout=layout, backend="c", **kw)
            np.testing.assert_array_equal(layer(x, out=np.full_like(expected, np.nan)), expected, err_msg=str(kw))
            assert kernel_of(layer, x, w) == BEST


def test_one_shot_equals_prepacked_and_threads_agree():
    rng = np.random.default_rng(4)
    for layout in ("NCHW", "NHWC"):
        x = data(rng, 2, 3, 40, 53, layout)
        w = int_array(rng, (32, 3, 7, 7))
        b = int_array(rng, (32,))
        kw = dict(stride=2, padding=3, layout=layout, activation="relu")
        with forced_kernel(BEST if layout == "NHWC" else ""):
            layer = fp.Conv2d(w, b, backend="c", **kw)
            assert kernel_of(layer, x, w) in {k.name for k in ROWS}
            once = fp.conv2d(x, w, b, backend="c", **kw)
            np.testing.assert_array_equal(layer(x), once)
            np.testing.assert_array_equal(once, fp.conv2d(x, w, b, backend="numpy", **kw))
            before = fp.get_num_threads()
            try:
                fp.set_num_threads(2)
                np.testing.assert_array_equal(layer(x), once)
            finally:
                fp.set_num_threads(before)


def test_views_and_empty_batches():
    rng = np.random.default_rng(5)
    base = int_array(rng, (2, 3, 12, 40))
    w = int_array(rng, (16, 3, 3, 3))
    view = base[:, ::-1, :, ::2]  # negative channel stride, strided columns
    expected = fp.conv2d(np.ascontiguousarray(view), w, padding=1, backend="numpy")
    np.testing.assert_array_equal(fp.conv2d(view, w, padding=1, backend="c"), expected)
    empty = fp.conv2d(base[:0], w, padding=1, backend="c")
    assert empty.shape == (0, 16, 12, 40)


# Narrow NCHW layers on wide maps (docs/direct.md, "Pixel lanes for narrow NCHW layers"): direct.c's layers whose
# output rows are whole vectors of the convpx kernel and whose reductions are at most 64 x 9 steps run the
# pixel-lane row loop on direct.c's own packing (fp_direct_px_pays), mc of each 16-lane block per tile.
LANES = {"avx512": 16, "avx2": 8, "scalar": 16}  # pixels per vector of each ISA's convpx row
FAMILY = {k.name: k.family for k in fp.kernels()}


def default_family(cin, cout, k, x_shape, **kw):
    w = np.zeros((cout, cin // kw.get("groups", 1), k, k), np.float32)
    layer = fp.Conv2d(w, backend="c", **kw)
    return FAMILY[kernel_of(layer, np.zeros(x_shape, np.float32), w)]


def test_narrow_nchw_layers_on_wide_maps_take_pixel_lanes(isa):
    lanes = LANES[isa]
    cases = [  # cin, k, ow, keywords, layout, family
        (32, 3, 2 * lanes, {}, "NCHW", "convpx"), (64, 3, 4 * lanes, {}, "NCHW", "convpx"),  # 576 steps
        (16, 5, 3 * lanes, {}, "NCHW", "convpx"), (9, 3, 16 * lanes, {}, "NCHW", "convpx"),
        (32, 3, lanes, {}, "NCHW", "conv"),  # one vector a row
        (65, 3, 2 * lanes, {}, "NCHW", "conv"), (12, 7, 2 * lanes, {}, "NCHW", "conv"),  # 585, 588 steps
        (32, 3, 2 * lanes + 4, {}, "NCHW", "conv"),  # a masked last vector
        (32, 3, 2 * lanes, {"stride": 2}, "NCHW", "conv"), (32, 3, 2 * lanes, {"dilation": 2}, "NCHW", "conv"),
        (32, 3, 2 * lanes, {"groups": 2}, "NCHW", "conv"), (32, 3, 2 * lanes, {}, "NHWC", "conv")]
    for cin, k, ow, kw, layout, family in cases:
        stride, dil = kw.get("stride", 1), kw.get("dilation", 1)
        pad = dil * (k - 1) // 2
        width = (ow - 1) * stride + dil * (k - 1) + 1 - 2 * pad
        shape = (1, cin, 6, width) if layout == "NCHW" else (1, 6, width, cin)
        got = default_family(cin, 24, k, shape, padding=pad, layout=layout, **kw)
        assert got == family, (isa, cin, k, ow, kw, layout)


@pytest.mark.parametrize("cin", [9, 15, 16, 17, 32, 64])
def test_pixel_lanes_on_direct_packing(isa, cin):
    """Every vector count per row (2..7 vectors: one tile, a 3 + 2 split, ...), output channels below, at, above
    and off the kernel's mc and the 16-lane blocks it reads, kernel shapes and paddings (including the even
    kernels' 'same'), all equal to the reference with a NaN-filled out=."""
    rng = np.random.default_rng(cin)
    lanes = LANES[isa]
    name = next(k.name for k in ROWS if k.isa == isa)
    shapes = [((3, 3), 1), ((3, 3), 0), ((1, 3), (0, 1)), ((3, 1), (1, 0)), ((2, 2), "same")]
    if cin <= 23:
        shapes.append(((5, 5), 2))
    for nv in (2, 3, 4, 5, 7):
        for cout in (8, 13, 16, 24, 70):
            (kh, kwid), pad = shapes[(nv + cout) % len(shapes)]
            pw = (kwid - 1) // 2 if pad == "same" else pad[1] if isinstance(pad, tuple) else pad
            width = nv * lanes if pad == "same" else nv * lanes + kwid - 1 - 2 * pw
            x = int_array(rng, (2, cin, 5, width))
            w = int_array(rng, (cout, cin, kh, kwid))
            b = int_array(rng, (cout,))
            expected = fp.conv2d(x, w, b, padding=pad, backend="numpy")
            layer = fp.Conv2d(w, b, padding=pad, backend="c")
            assert kernel_of(layer, x, w) == name, (nv, cout, kh, kwid, pad)
            np.testing.assert_array_equal(layer(x, out=np.full_like(expected, np.nan)), expected,
                                          err_msg=f"{isa} cin {cin} cout {cout} {nv} vectors {kh}x{kwid} pad {pad}")


def test_pixel_lanes_activations_residual_and_nan(isa):
    """The in-register activations and the buffered ones (sigmoid, PReLU, a residual) on direct.c's packing."""
    rng = np.random.default_rng(7)
    lanes = LANES[isa]
    for cout in (8, 24):
        x = int_array(rng, (1, 32, 4, 3 * lanes))
        w = int_array(rng, (cout, 32, 3, 3))
        b = int_array(rng, (cout,))
        plain = fp.conv2d(x, w, b, padding=1, backend="numpy")
        for res in (None, int_array(rng, plain.shape)):
            for act in ACTS:
                expected = fp.conv2d(x, w, b, padding=1, activation=act, residual=res, backend="numpy")
                layer = fp.Conv2d(w, b, padding=1, activation=act, backend="c")
                assert FAMILY[kernel_of(layer, x, w)] == "convpx"
                got = layer(x, out=np.full_like(expected, np.nan), residual=res)
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()),
                                           err_msg=f"{isa} {act!r} cout {cout} residual {res is not None}")
    assert_nan_reaches_its_windows(16, 2 * lanes)


def test_pixel_lanes_row_blocks_threads_one_shot_and_views():
    """A 256-pixel map of 32 channels (row blocks from half of L2, several per thread), at 1-3 threads, one-shot
    (which packs as direct.c and runs the same loop) bit-identical to prepacked, a negative-stride view, batch 0."""
    rng = np.random.default_rng(8)
    x = int_array(rng, (2, 32, 40, 256), -1, 1)
    w = int_array(rng, (32, 32, 3, 3), -1, 1)
    b = int_array(rng, (32,))
    kw = dict(padding=1, activation=fp.Activation("leaky_relu", 0.25))
    expected = fp.conv2d(x, w, b, backend="numpy", **kw)
    layer = fp.Conv2d(w, b, backend="c", **kw)
    assert FAMILY[kernel_of(layer, x, w)] == "convpx"
    before = fp.get_num_threads()
    try:
        for threads in (1, 2, 3):
            fp.set_num_threads(threads)
            np.testing.assert_array_equal(layer(x, out=np.full_like(expected, np.nan)), expected, err_msg=threads)
            np.testing.assert_array_equal(fp.conv2d(x, w, b, backend="c", **kw), expected, err_msg=threads)
    finally:
        fp.set_num_threads(before)
    view = x[:, ::-1, :, :]
    np.testing.assert_array_equal(layer(view), fp.conv2d(np.ascontiguousarray(view), w, b, backend="numpy", **kw))
    assert layer(x[:0]).shape == (0, 32, 40, 256)
