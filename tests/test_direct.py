"""The direct KxK kernels (csrc/direct/) on their edge cases, with every ISA path forced in turn.

Integer-valued data, so every path must equal the NumPy reference exactly.  Each ISA is forced
in-process with ``fp_set_isa`` (conv2d packs afresh on every call); one subprocess per ISA checks
the ``FASTPOINT_ISA`` switch itself.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback

from .conftest import C_ISAS as ISAS
from .conftest import assert_c_equals_reference, int_array

pytestmark = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

check = assert_c_equals_reference


def kernel_name(cin, cout, k, layout="NCHW", groups=1, padding=0, h=8, w=8):
    from fastpoint.core.spec import make_spec
    wt = np.zeros((cout, cin // groups, k, k), np.float32)
    layer = fp.Conv2d(wt, padding=padding, groups=groups, layout=layout, backend="c")
    shape = (1, cin, h, w) if layout == "NCHW" else (1, h, w, cin)
    return cback.CBackend().kernel_name(make_spec(layer._layer, shape, wt.shape))


def family(name):
    """The kernel table family of a kernel name."""
    return {k.name: k.family for k in fp.kernels()}[name]


def test_direct_is_chosen_for_kxk_but_not_plain_1x1():
    assert family(kernel_name(16, 32, 3, padding=1)) == "conv"
    assert family(kernel_name(36, 36, 3, groups=3)) == "conv"
    # few input channels per group (the stems) have their own kernels, pixels in the lanes
    assert family(kernel_name(3, 64, 7, padding=3)) == "convpx"
    assert family(kernel_name(12, 12, 3, groups=3)) == "convpx"
    assert family(kernel_name(16, 32, 1)) == "gemm"  # 1x1 belongs to the GEMM path
    assert family(kernel_name(16, 16, 3, groups=16)) != "conv"  # depthwise has its own kernel


@pytest.mark.parametrize("ow", [1, 2, 5, 6, 7, 8, 13, 14, 15, 27, 28, 29, 31])
def test_every_output_width_remainder(isa, ow):
    rng = np.random.default_rng(ow)
    check(int_array(rng, (1, 5, 3, ow)), int_array(rng, (40, 5, 3, 3)), int_array(rng, (40,)), padding=1)


@pytest.mark.parametrize("cout", [1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 80, 96])
@pytest.mark.parametrize("ow", [5, 7, 16])
def test_every_output_channel_remainder(isa, cout, ow):
    rng = np.random.default_rng(cout)
    check(int_array(rng, (1, 4, 4, ow)), int_array(rng, (cout, 4, 3, 3)), int_array(rng, (cout,)), padding=1,
          activation="relu")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("stride,dilation,padding", [
    (1, 1, 0), (1, 1, 1), (1, 1, 2), (2, 1, 1), (3, 1, 1), (2, 2, 2), (1, 3, 3), (3, 2, (0, 2)), (1, 2, "same"),
    (1, 1, "same"), ((2, 1), (1, 2), (1, 0)), (1, 1, (3, 0)),
])
def test_stride_dilation_padding(isa, layout, stride, dilation, padding):
    rng = np.random.default_rng(7)
    shape = (2, 6, 13, 17) if layout == "NCHW" else (2, 13, 17, 6)
    check(int_array(rng, shape), int_array(rng, (20, 6, 3, 3)), int_array(rng, (20,)), layout=layout, stride=stride,
          dilation=dilation, padding=padding)


@pytest.mark.parametrize("kh,kw", [(1, 7), (7, 1), (5, 5), (7, 7), (2, 2), (4, 4), (2, 3), (1, 3)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_kernel_shapes_and_same_padding(isa, kh, kw, layout):
    rng = np.random.default_rng(kh * 10 + kw)
    shape = (1, 5, 11, 12) if layout == "NCHW" else (1, 11, 12, 5)
    w = int_array(rng, (17, 5, kh, kw))
    check(int_array(rng, shape), w, layout=layout, padding="same")
    check(int_array(rng, shape), w, layout=layout, padding=(kh // 2, kw // 2), stride=2)


@pytest.mark.parametrize("groups,cin,cout", [(2, 8, 6), (3, 9, 12), (2, 6, 64), (4, 8, 36)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_grouped(isa, groups, cin, cout, layout):
    rng = np.random.default_rng(groups)
    shape = (2, cin, 9, 10) if layout == "NCHW" else (2, 9, 10, cin)
    check(int_array(rng, shape), int_array(rng, (cout, cin // groups, 3, 3)), int_array(rng, (cout,)), layout=layout,
          padding=1, groups=groups, activation="relu")


@pytest.mark.parametrize("h,w,padding", [(1, 1, 1), (1, 2, 1), (2, 1, 2), (3, 3, 0), (2, 2, 3)])
def test_tiny_images_and_wide_padding(isa, h, w, padding):
    rng = np.random.default_rng(h * 7 + w)
    for layout in ("NCHW", "NHWC"):
        shape = (1, 3, h, w) if layout == "NCHW" else (1, h, w, 3)
        check(int_array(rng, shape), int_array(rng, (18, 3, 3, 3)), int_array(rng, (18,)), layout=layout,
              padding=padding)


def test_stem_and_first_unet_layer_shapes(isa):
    rng = np.random.default_rng(3)
    check(int_array(rng, (1, 3, 30, 30)), int_array(rng, (64, 3, 7, 7)), int_array(rng, (64,)), stride=2, padding=3)
    check(int_array(rng, (1, 3, 20, 20)), int_array(rng, (64, 3, 3, 3)), int_array(rng, (64,)), padding=1,
          activation="relu")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_nan_reaches_exactly_the_windows_that_cover_it(isa, layout):
    rng = np.random.default_rng(11)
    x = int_array(rng, (1, 4, 9, 16))
    x[0, 2, 4, 7] = np.nan
    x[0, 1, 0, 0] = np.nan
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    check(x, int_array(rng, (33, 4, 3, 3)), int_array(rng, (33,)), layout=layout, padding=1, activation="relu")


def test_bias_none_and_large_reduction(isa):
    rng = np.random.default_rng(5)
    check(int_array(rng, (1, 70, 6, 9), -1, 1), int_array(rng, (32, 70, 3, 3), -1, 1), padding=1)


@pytest.mark.parametrize("name", list(ISAS))
def test_fastpoint_isa_switch_in_a_subprocess(name):
    code = ("import numpy as np, fastpoint as fp\n"
            "from fastpoint.backends.c import lib\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.integers(-3, 4, (1, 8, 10, 30)).astype(np.float32)\n"
            "w = rng.integers(-2, 3, (40, 8, 3, 3)).astype(np.float32)\n"
            "a = fp.conv2d(x, w, padding=1, backend='c'); b = fp.conv2d(x, w, padding=1, backend='numpy')\n"
            "assert np.array_equal(a, b)\n"
            "print(lib.fp_isa())\n")
    env = {**os.environ, "FASTPOINT_ISA": name}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) == min(ISAS[name], cback.lib.fp_isa_supported())


@pytest.mark.parametrize("cin,cout,ow", [(40, 64, 7), (41, 80, 5), (100, 32, 20), (45, 17, 9)])
def test_reduction_split_into_chunks(isa, cin, cout, ow):
    # long reductions run in input-channel chunks whose partial sums wait in a per-thread buffer (when
    # their weights do not fit in L1: 45 x 9 x 32 floats are 52 KiB)
    rng = np.random.default_rng(cin)
    check(int_array(rng, (2, cin, 5, ow), -1, 1), int_array(rng, (cout, cin, 3, 3), -1, 1), int_array(rng, (cout,)),
          padding=1, activation="relu")
    check(int_array(rng, (1, 4, ow, cin), -1, 1), int_array(rng, (cout, cin, 3, 3), -1, 1), layout="NHWC", padding=1)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cin,groups", [(15, 1), (16, 1), (17, 1), (33, 1), (34, 2), (48, 3)])
@pytest.mark.parametrize("w,stride,padding", [(15, 2, 1), (16, 1, 1), (17, 2, 0), (31, 2, 1), (32, 2, 2), (33, 1, 1),
                                              (34, 2, 1), (47, 3, 1), (66, 2, 3)])
def test_strip_fill_and_transposing_store(isa, layout, cin, groups, w, stride, padding):
    # AVX-512 fills NHWC strips with 16x16 register transposes and stride-2 NCHW strips with a
    # vector deinterleave, and stores NCHW tiles through a transpose: widths around the 16-wide
    # vectors, channel counts around 16 per group, group offsets into the pixel, every padding phase
    rng = np.random.default_rng(cin * 100 + w)
    shape = (1, cin, 4, w) if layout == "NCHW" else (1, 4, w, cin)
    cout = 3 * groups * 7
    check(int_array(rng, shape), int_array(rng, (cout, cin // groups, 3, 3)), int_array(rng, (cout,)), layout=layout,
          stride=stride, padding=padding, groups=groups, activation="relu")


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("n,h,w,stride,padding,groups", [(1, 9, 11, 1, 1, 1), (2, 7, 7, 1, 1, 1), (1, 20, 13, 2, 1, 1),
                                                         (2, 6, 9, 1, 0, 2)])
def test_weight_heavy_layers_split_channels_across_threads(isa, threads, layout, n, h, w, stride, padding, groups):
    # weights beyond half of L2 (192 x 192 x 3 x 3: 1.3 MB) are split by output channels across the
    # threads, and a thread that runs several channel chunks of one row block reuses its strip
    rng = np.random.default_rng(h * 10 + w)
    cin, cout = 192 * groups, 192 * groups
    shape = (n, cin, h, w) if layout == "NCHW" else (n, h, w, cin)
    saved = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(int_array(rng, shape, -1, 1), int_array(rng, (cout, cin // groups, 3, 3), -1, 1), int_array(rng, (cout,)),
              layout=layout, stride=stride, padding=padding, groups=groups, activation="relu")
    finally:
        fp.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cout,dilation", [(100, 1), (64, 2)])
def test_strip_past_l2_runs_each_chunk_over_a_group_of_channel_blocks(isa, threads, layout, cout, dilation):
    # weights past L2 give the strip the L3 share (1024 channels x 18 rows of 42 columns: 3 MB, past half
    # of any L2); each reduction chunk then runs over a group of channel blocks whose partial sums wait in
    # pbuf, the last group (100 channels: 7 blocks) shorter and ending in a lone block
    rng = np.random.default_rng(cout + threads)
    cin, h, w = 1024, 16, 40
    shape = (1, cin, h, w) if layout == "NCHW" else (1, h, w, cin)
    saved = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(int_array(rng, shape, -1, 1), int_array(rng, (cout, cin, 3, 3), -1, 1), int_array(rng, (cout,)),
              layout=layout, padding=dilation, dilation=dilation, activation="relu")
    finally:
        fp.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kh,stride,dilation,padding", [((7, 3), 1, 1, (3, 1)), ((5, 3), (2, 1), 1, (4, 1)),
                                                        (3, (3, 1), (2, 1), (2, 1)), (3, 1, 3, (3, 0)),
                                                        ((1, 3), 2, 1, (0, 1)), (3, (2, 2), 1, 0)])
def test_tall_kernels_vertical_strides_and_chunked_reductions(isa, threads, layout, kh, stride, dilation, padding):
    # the strip rows of a row block for tall kernels, vertical strides and dilations, padding rows above
    # and below, with the reduction in chunks (48 channels: 3x3 weights of 55 KiB, past L1) and the output
    # lines prefetched per tile
    rng = np.random.default_rng(sum(np.atleast_1d(kh)) * 7 + threads)
    k = (kh, kh) if isinstance(kh, int) else kh
    shape = (2, 48, 23, 9) if layout == "NCHW" else (2, 23, 9, 48)
    saved = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(int_array(rng, shape, -1, 1), int_array(rng, (40, 48) + k, -1, 1), int_array(rng, (40,)), layout=layout,
              stride=stride, dilation=dilation, padding=padding, activation="relu")
    finally:
        fp.set_num_threads(saved)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cin,cout,w", [(3, 40, 19), (20, 33, 14), (17, 64, 7)])
@pytest.mark.parametrize("act", ["leaky_relu", ("prelu", 0.25), "prelu-per-channel", "hardswish"])
@pytest.mark.parametrize("with_res", [False, True])
def test_epilogue_on_the_tile_buffer(isa, layout, cin, cout, w, act, with_res):
    # without a residual, the epilogue runs on the pixel-major tile buffer before the NCHW transposing
    # store (and before the NHWC store of a partial channel block), with per-channel PReLU slopes
    # indexed along the buffer's channels; with one, on the stored output
    rng = np.random.default_rng(cin * cout + w)
    if act == "prelu-per-channel":
        act = ("prelu", np.linspace(-0.5, 0.75, cout).astype(np.float32))
    shape = (2, cin, 5, w) if layout == "NCHW" else (2, 5, w, cin)
    x, wt, b = int_array(rng, shape), int_array(rng, (cout, cin, 3, 3)), int_array(rng, (cout,))
    plain = fp.conv2d(x, wt, b, backend="numpy", layout=layout, padding=1)
    res = int_array(rng, plain.shape) if with_res else None
    expected = fp.conv2d(x, wt, b, backend="numpy", layout=layout, padding=1, activation=act, residual=res)
    out = np.full_like(expected, np.nan)
    got = fp.Conv2d(wt, b, backend="c", layout=layout, padding=1, activation=act)(x, out=out, residual=res)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * float(np.abs(expected).max()))
