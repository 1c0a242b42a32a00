"""The depthwise kernels (csrc/dwconv/): multiplier 1 and more, borders, strides, dilation, both
layouts, NaN, with every ISA path forced in turn (see test_direct.py for the fixture's logic)."""
import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback

from .conftest import assert_c_equals_reference, int_array

pytestmark = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

check = assert_c_equals_reference


def dw(rng, c, mult, h, w, k=3, layout="NCHW", n=1):
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    return int_array(rng, shape), int_array(rng, (c * mult, 1, k, k)), int_array(rng, (c * mult,))


def test_dwconv_is_chosen():
    from fastpoint.core.spec import make_spec
    for layout in ("NCHW", "NHWC"):
        wt = np.zeros((32, 1, 3, 3), np.float32)
        layer = fp.Conv2d(wt, padding=1, groups=16, layout=layout)
        shape = (1, 16, 8, 8) if layout == "NCHW" else (1, 8, 8, 16)
        assert "dwconv" in cback.CBackend().kernel_name(make_spec(layer._layer, shape, wt.shape))


DW_KERNELS = {
    "avx512": "f32_dwconv_8x16c__avx512",
    "avx2": "f32_dwconv_4x16c__avx2",
    "scalar": "f32_dwconv_4x16c__scalar",
}


@pytest.mark.parametrize("layout,w", [("NCHW", 8), ("NHWC", 8), ("NHWC", 64)])
def test_micro_kernel_of_each_isa(isa, layout, w):
    """One driver, the ISA's micro-kernel: the run-time name is the kernel's <dtype>_dwconv_<tile>__<isa>."""
    from fastpoint.core.spec import make_spec
    wt = np.zeros((16, 1, 3, 3), np.float32)
    layer = fp.Conv2d(wt, padding=1, groups=16, layout=layout)
    shape = (1, 16, 8, w) if layout == "NCHW" else (1, 8, w, 16)
    assert cback.CBackend().kernel_name(make_spec(layer._layer, shape, wt.shape)) == DW_KERNELS[isa]


def test_wide_nchw_planes_go_generic_without_avx512(isa):
    """Kernels with scalar-code transposes leave NCHW planes of 32 columns and more to the generic loops."""
    from fastpoint.core.spec import make_spec
    wt = np.zeros((16, 1, 3, 3), np.float32)
    layer = fp.Conv2d(wt, padding=1, groups=16, layout="NCHW")
    name = cback.CBackend().kernel_name(make_spec(layer._layer, (1, 16, 8, 32), wt.shape))
    assert (name == DW_KERNELS[isa]) == (isa == "avx512"), name


@pytest.mark.parametrize("ow", list(range(1, 18)) + [31, 32, 33, 47, 50, 129])
def test_every_width_remainder(isa, ow):
    rng = np.random.default_rng(ow)
    for stride in (1, 2):
        x, w, b = dw(rng, 3, 1, 5, ow * stride)
        check(x, w, b, padding=1, stride=stride, groups=3)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mult", [1, 2, 3])
@pytest.mark.parametrize("stride,dilation,padding", [
    (1, 1, 1), (1, 1, 0), (2, 1, 1), (3, 1, 1), (1, 2, 2), (2, 2, 1), (1, 1, "same"), ((1, 2), (2, 1), (0, 1)),
    (1, 1, 3),
])
def test_multiplier_stride_dilation_padding(isa, layout, mult, stride, dilation, padding):
    rng = np.random.default_rng(mult)
    x, w, b = dw(rng, 17, mult, 11, 23, layout=layout, n=2)
    check(x, w, b, layout=layout, stride=stride, dilation=dilation, padding=padding, groups=17, activation="relu")


@pytest.mark.parametrize("k", [1, 2, 5, 7])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_kernel_sizes(isa, k, layout):
    rng = np.random.default_rng(k)
    x, w, b = dw(rng, 20, 1, 12, 19, k=k, layout=layout)
    check(x, w, b, layout=layout, padding="same", groups=20)


@pytest.mark.parametrize("c", [1, 15, 16, 17, 33, 48])
@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (7, 7), (9, 40), (5, 16), (4, 13)])
def test_channel_counts_and_tiny_maps(isa, c, h, w):
    rng = np.random.default_rng(c * h + w)
    for layout in ("NCHW", "NHWC"):
        x, wt, b = dw(rng, c, 1, h, w, layout=layout)
        if c > 1:
            check(x, wt, b, layout=layout, padding=1, groups=c)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_nan_stays_in_its_windows(isa, layout):
    rng = np.random.default_rng(2)
    x = int_array(rng, (1, 16, 10, 20))
    x[0, 3, 5, 9] = np.nan
    x[0, 15, 9, 19] = np.nan
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    check(x, int_array(rng, (16, 1, 3, 3)), int_array(rng, (16,)), layout=layout, padding=1, groups=16,
          activation="relu")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("n,c,mult,h,w,padding", [(3, 5, 1, 7, 7, 1), (2, 3, 2, 14, 14, 1), (3, 7, 1, 5, 16, "same"),
                                                  (1, 9, 1, 6, 9, 2)])
def test_small_maps_several_images(isa, layout, n, c, mult, h, w, padding):
    # several images: NCHW tile jobs and NHWC row pairs decode the image from the job index
    rng = np.random.default_rng(n * c)
    x, wt, b = dw(rng, c, mult, h, w, layout=layout, n=n)
    check(x, wt, b, layout=layout, padding=padding, groups=c, activation="relu")
    check(x, wt, None, layout=layout, padding=padding, groups=c, dilation=2)


# The blocked kernels: NHWC blocks of 1-8 pixels (the last block shifted back), row pairs for 3x3
# stride 1, zero-masked border columns; NCHW on transposed 16-channel tiles in bands of rows (or
# the generic loops for wide planes without AVX-512).

@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_width_and_height(isa, layout):
    rng = np.random.default_rng(40)
    for w in range(1, 41):
        for h in range(1, 6):
            x, wt, b = dw(rng, 17, 1, h, w, layout=layout)
            check(x, wt, b, layout=layout, padding=1, groups=17, activation="relu")
            if w % 3 == 0:
                check(x, wt, b, layout=layout, padding=1, stride=2, groups=17)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("stride", [1, 2, (1, 2), (2, 1), 3])
@pytest.mark.parametrize("dilation", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", [0, 1, 2, (0, 2)])
def test_stride_dilation_padding_grid(isa, layout, stride, dilation, padding):
    rng = np.random.default_rng(7)
    x, wt, b = dw(rng, 16, 1, 9, 19, layout=layout)
    check(x, wt, b, layout=layout, stride=stride, dilation=dilation, padding=padding, groups=16)


@pytest.mark.parametrize("c", [15, 16, 17, 31, 32, 33, 48, 96, 97, 112])
@pytest.mark.parametrize("mult", [1, 2])
def test_channel_counts_and_array_offsets(isa, c, mult):
    # NHWC channel blocks start early to align the output stores: arrays at every 4-byte offset
    rng = np.random.default_rng(c + mult)
    x, wt, b = dw(rng, c, mult, 6, 11, layout="NHWC")
    expected = fp.conv2d(x, wt, b, backend="numpy", layout="NHWC", padding=1, groups=c)
    for xo, yo in [(0, 0), (1, 3), (4, 4), (15, 2), (7, 0)]:
        xb = np.zeros(x.size + 16, np.float32)
        xv = xb[xo:xo + x.size].reshape(x.shape)
        xv[...] = x
        yb = np.full(expected.size + 16, np.nan, np.float32)
        yv = yb[yo:yo + expected.size].reshape(expected.shape)
        fp.conv2d(xv, wt, b, backend="c", layout="NHWC", padding=1, groups=c, out=yv)
        np.testing.assert_array_equal(yv, expected)
        assert np.isnan(yb[:yo]).all() and np.isnan(yb[yo + expected.size:]).all()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bands_and_threads(isa, layout, threads):
    # a 130-wide plane: NCHW tiles hold about 11 input rows, so the plane runs in many bands
    old = fp.get_num_threads()
    try:
        fp.set_num_threads(threads)
        rng = np.random.default_rng(threads)
        x, wt, b = dw(rng, 18, 1, 40, 130, layout=layout, n=2)
        check(x, wt, b, layout=layout, padding=1, groups=18, activation="relu")
        check(x, wt, b, layout=layout, padding=1, stride=2, groups=18)
        x, wt, b = dw(rng, 40, 1, 7, 7, layout=layout)
        check(x, wt, b, layout=layout, padding=1, groups=40)
    finally:
        fp.set_num_threads(old)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_nan_at_every_block_position(isa, layout):
    # NaN at each column of a 14-wide map (two 7-pixel blocks) and in rows inside and outside pairs
    rng = np.random.default_rng(3)
    for col in range(14):
        x = int_array(rng, (1, 16, 6, 14))
        x[0, col % 16, col % 6, col] = np.nan
        if layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        check(x, int_array(rng, (16, 1, 3, 3)), None, layout=layout, padding=1, groups=16)


def test_float64_depthwise(isa):
    rng = np.random.default_rng(64)
    for layout in ("NCHW", "NHWC"):
        x, wt, b = (a.astype(np.float64) for a in dw(rng, 17, 2, 9, 13, layout=layout))
        check(x, wt, b, layout=layout, padding=1, groups=17, activation="relu")


@pytest.mark.parametrize("yo", [0, 1, 6])
@pytest.mark.parametrize("c,hw", [(112, 64), (32, 112)])
def test_large_nhwc_output_streamed(isa, yo, c, hw):
    # outputs over 1.5 MiB with channels a multiple of 16 are written with streaming stores when
    # the output vectors can be aligned (shifted channel blocks from 96 channels on)
    rng = np.random.default_rng(yo)
    x, wt, b = dw(rng, c, 1, hw, hw, layout="NHWC")
    expected = fp.conv2d(x, wt, b, backend="numpy", layout="NHWC", padding=1, groups=c, activation="relu")
    yb = np.full(expected.size + 16, np.nan, np.float32)
    yv = yb[yo:yo + expected.size].reshape(expected.shape)
    fp.conv2d(x, wt, b, backend="c", layout="NHWC", padding=1, groups=c, activation="relu", out=yv)
    np.testing.assert_array_equal(yv, expected)
    assert np.isnan(yb[:yo]).all() and np.isnan(yb[yo + expected.size:]).all()


@pytest.mark.parametrize("mult", [1, 2])
def test_two_threads_channel_groups_at_offsets(isa, mult):
    # few rows at 2 threads: rows split into channel groups, whose boundaries follow the shifted
    # (store-aligned) vector grid when the output array is not 64-byte aligned
    old = fp.get_num_threads()
    try:
        fp.set_num_threads(2)
        rng = np.random.default_rng(mult)
        for c, hw in [(112 // mult, 7), (208 // mult, 5)]:
            x, wt, b = dw(rng, c, mult, hw, hw, layout="NHWC")
            expected = fp.conv2d(x, wt, b, backend="numpy", layout="NHWC", padding=1, groups=c)
            for yo in (0, 3, 9):
                yb = np.full(expected.size + 16, np.nan, np.float32)
                yv = yb[yo:yo + expected.size].reshape(expected.shape)
                fp.conv2d(x, wt, b, backend="c", layout="NHWC", padding=1, groups=c, out=yv)
                np.testing.assert_array_equal(yv, expected)
    finally:
        fp.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", [64, 80, 200, 400])
def test_nhwc_column_strips(isa, threads, c):
    # NHWC 3x3 stride 1 from 64 channels runs in column strips (one block of columns x one channel
    # group walked down the rows, a narrower last block): widths around the block sizes, heights
    # with and without row pairs, channel groups (400 channels make two), several images, arrays at
    # 4-byte offsets, NaN in the interior and on the border
    old = fp.get_num_threads()
    try:
        fp.set_num_threads(threads)
        rng = np.random.default_rng(c + threads)
        for h, w, pad in [(1, 9, 1), (3, 13, 0), (5, 11, 1), (6, 16, 1), (7, 23, 2), (4, 3, 1)]:
            x, wt, b = dw(rng, c, 1, h, w, layout="NHWC", n=2)
            x[1, h // 2, w - 1, c - 1] = np.nan
            x[0, 0, w // 2, c // 2] = np.nan
            expected = fp.conv2d(x, wt, b, backend="numpy", layout="NHWC", padding=pad, groups=c,
                                 activation="relu")
            for xo, yo in [(0, 0), (4, 9)]:
                xb = np.zeros(x.size + 16, np.float32)
                xv = xb[xo:xo + x.size].reshape(x.shape)
                xv[...] = x
                yb = np.full(expected.size + 16, -7.0, np.float32)
                yv = yb[yo:yo + expected.size].reshape(expected.shape)
                fp.conv2d(xv, wt, b, backend="c", layout="NHWC", padding=pad, groups=c, activation="relu", out=yv)
                np.testing.assert_array_equal(yv, expected)
                assert (yb[:yo] == -7).all() and (yb[yo + expected.size:] == -7).all()
    finally:
        fp.set_num_threads(old)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("k,stride,dilation", [(3, 1, 2), (5, 1, 1), (5, 2, 1), (5, 1, 2), (7, 1, 1), (5, (2, 1), 1),
                                               (5, 1, (1, 2))])
def test_straight_line_kernel_shapes(isa, layout, k, stride, dilation):
    # the shapes with their own AVX-512 blocks (3x3 dilation 2, 5x5 stride 1/2 and dilation 2, 7x7): every
    # width up to two 8-pixel blocks and beyond (shifted last block), maps smaller than the kernel's reach
    # (every block an edge block, rows with taps in the padding), channels off the vector, ReLU, several images
    rng = np.random.default_rng(k * 10 + (stride if isinstance(stride, int) else 9))
    reach = (k - 1) * (dilation if isinstance(dilation, int) else max(dilation)) // 2
    for w in list(range(1, 19)) + [23, 33]:
        for c, h in [(17, 5), (32, 9)]:
            x, wt, b = dw(rng, c, 1, h, w, k=k, layout=layout, n=2 if w == 23 else 1)
            check(x, wt, b, layout=layout, stride=stride, dilation=dilation, padding=reach, groups=c,
                  activation="relu" if w % 2 else None)
            if w % 5 == 0 and min(h, w) > 2 * reach:
                check(x, wt, None, layout=layout, stride=stride, dilation=dilation, padding=0, groups=c)
