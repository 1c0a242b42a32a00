"""Winograd F(4x4, 3x3) (``algorithm="winograd"``): the NumPy reference, the C kernels on every ISA path, the
keyword's rules.

Winograd rounds differently from a direct convolution (its matrices hold 1/4, 1/6, 1/24), so even on
integer-valued data it is not exact: every comparison is against a float64 direct convolution with the
bound of issue 16, max |y - ref| <= 1e-4 * max |ref|, on standard-normal data with weights scaled by
1/sqrt(fan_in).  Each ISA path is forced in-process (``isa`` fixture; conv2d packs afresh on every call)
and once through FASTPOINT_ISA in a subprocess.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback
from fastpoint.backends.numpy_winograd import conv2d_winograd_nchw, matrices

from .conftest import C_ISAS

needs_c = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

TOL = 1e-4


def data(rng, n, cin, cout, h, w, layout="NCHW", bias=True):
    x = rng.standard_normal((n, cin, h, w) if layout == "NCHW" else (n, h, w, cin)).astype(np.float32)
    wt = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return x, wt, b


def reference(x, w, b, padding, layout="NCHW", activation=None):
    """The float64 direct convolution of the NumPy backend."""
    return fp.conv2d(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                     padding=padding, layout=layout, activation=activation, backend="numpy")


def check_close(y, ref):
    assert y.shape == ref.shape and y.dtype == np.float32
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-30)
    err = float(np.abs(y - ref).max(initial=0.0))
    assert err <= TOL * scale, f"max |err| {err:.3g} > {TOL} x max |ref| {scale:.3g}"


def winograd(x, w, b, padding, layout="NCHW", activation=None, **kw):
    return fp.conv2d(x, w, b, padding=padding, layout=layout, activation=activation, backend="c",
                     algorithm="winograd", **kw)


# ------------------------------------------------------------------ the NumPy reference


def test_matrices_are_lavin_and_grays():
    AT, G, BT = matrices(4)
    assert np.array_equal(BT, [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
    assert np.array_equal(AT, [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
    assert np.allclose(G, [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                           [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], rtol=0, atol=1e-15)


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 2)])
def test_reference_equals_direct_in_float64(m, padding):
    rng = np.random.default_rng(m)
    x = rng.standard_normal((2, 3, 9, 11))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    pt, pb, pl, pr = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ref = fp.conv2d(xp, w, b, backend="numpy")
    y = conv2d_winograd_nchw(x, w, b, padding=padding, m=m)
    assert np.abs(y - ref).max() < 1e-12 * np.abs(ref).max()


# ------------------------------------------------------------------ the C kernels, every ISA path


@needs_c
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("padding", [0, 1, 2, (0, 2), (2, 1), "same"])
@pytest.mark.parametrize("hw", [(4, 4), (5, 7), (9, 6), (13, 30), (23, 29), (26, 21)])
def test_paddings_and_map_sizes(isa, layout, padding, hw):
    # below 32 tiles of 4x4 (the first four) F(2x2) runs, from there F(4x4): both see every case
    rng = np.random.default_rng(hash((layout, str(padding), hw)) % 2**32)
    x, w, b = data(rng, 1, 5, 7, *hw, layout=layout)
    check_close(winograd(x, w, b, padding, layout, "relu"), reference(x, w, b, padding, layout, "relu"))


@needs_c
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cin", [1, 3, 15, 16, 17, 33])
@pytest.mark.parametrize("cout", [1, 15, 16, 17, 33, 64, 100])
@pytest.mark.parametrize("n,hw", [(2, (10, 11)), (1, (22, 23))])  # F(2x2), F(4x4)
def test_channels_off_the_vector_width(isa, layout, cin, cout, n, hw):
    rng = np.random.default_rng(cin * 1000 + cout)
    x, w, b = data(rng, n, cin, cout, *hw, layout=layout)
    check_close(winograd(x, w, b, 1, layout), reference(x, w, b, 1, layout))


@needs_c
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_batch_and_threads(isa, layout, n, threads):
    rng = np.random.default_rng(n * 10 + threads)
    x, w, b = data(rng, n, 24, 40, 18, 21, layout=layout)
    with _threads(threads):
        y = winograd(x, w, b, 1, layout, "relu")
    check_close(y, reference(x, w, b, 1, layout, "relu"))


@needs_c
@pytest.mark.parametrize("dilation,padding", [(2, 2), (4, 4), ((2, 3), (1, 2)), (3, 0), ((1, 2), 1), (2, (2, 1))])
@pytest.mark.parametrize("n,cin,cout,hw", [(1, 16, 24, (32, 32)), (2, 5, 17, (17, 23)), (3, 33, 16, (12, 40)),
                                           (1, 8, 8, (9, 9))])
@pytest.mark.parametrize("threads", [1, 2])
def test_dilation_in_nhwc(isa, dilation, padding, n, cin, cout, hw, threads):
    """Dilated layers in NHWC run as dil_h x dil_w phase images of a dilation-1 convolution (F(4x4) or F(2x2)
    by the phase images' tiles), phases of unequal size where the map is not a multiple of the dilation;
    with the fused epilogue (bias, residual, ReLU)."""
    rng = np.random.default_rng(hash((str(dilation), str(padding), n, cin, hw, threads)) % 2**32)
    x, w, b = data(rng, n, cin, cout, *hw, layout="NHWC")
    ref = fp.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=padding,
                    dilation=dilation, layout="NHWC", backend="numpy")
    res = rng.standard_normal(ref.shape).astype(np.float32)
    with _threads(threads):
        check_close(winograd(x, w, b, padding, "NHWC", dilation=dilation), ref)
        layer = fp.Conv2d(w, b, padding=padding, dilation=dilation, layout="NHWC", activation="relu", backend="c",
                          algorithm="winograd")
        check_close(layer(x, residual=res), np.maximum(ref + res, 0))


@needs_c
@pytest.mark.parametrize("shape", [
    (1, 64, 64, 36, 36),    # several tile blocks of several rows
    (1, 32, 48, 8, 300),    # wide map: blocks are segments of a tile row
    (1, 96, 200, 7, 7),     # one block: the threads split the output channels
    (2, 1600, 20, 5, 6),    # a reduction longer than one GEMM k block
    (5, 20, 24, 9, 10),     # small maps of a batch: blocks of several whole images, uneven groups
    (8, 32, 48, 14, 13),    # the same, F(4x4) with partial tiles
])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocking_and_splits(isa, shape, threads):
    n, cin, cout, h, w_ = shape
    rng = np.random.default_rng(cin + threads)
    for layout in ("NCHW", "NHWC"):
        x, w, b = data(rng, n, cin, cout, h, w_, layout=layout)
        with _threads(threads):
            y = winograd(x, w, b, 1, layout)
        check_close(y, reference(x, w, b, 1, layout))


@needs_c
def test_integer_data_no_bias_unbatched_and_views(isa):
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, (12, 30, 25)).astype(np.float32)[:, ::2, ::-1]  # non-contiguous, negative stride
    w = rng.integers(-2, 3, (20, 12, 3, 3)).astype(np.float32)
    y = winograd(x, w, None, 1)
    assert y.shape == (20, 15, 25)
    check_close(y, reference(x[None], w, None, 1)[0])


@needs_c
def test_layer_out_and_prepacked_reuse(isa):
    rng = np.random.default_rng(4)
    x, w, b = data(rng, 2, 16, 24, 12, 12)
    layer = fp.Conv2d(w, b, padding=1, activation="relu", backend="c", algorithm="winograd")
    out = np.empty((2, 24, 12, 12), np.float32)
    assert layer(x, out=out) is out
    check_close(out, reference(x, w, b, 1, activation="relu"))
    assert np.array_equal(layer(x), out)  # the same packing, the same result
    assert "algorithm='winograd'" in repr(layer)


@needs_c
def test_nan_and_inf_propagate(isa):
    rng = np.random.default_rng(5)
    x, w, b = data(rng, 1, 8, 8, 8, 8)
    x[0, 3, 2, 5] = np.nan
    x[0, 1, 6, 1] = np.inf
    y = winograd(x, w, b, 1)
    ref = fp.conv2d(x, w, b, padding=1, backend="numpy")
    # every output the direct convolution makes non-finite is non-finite here too (Winograd spreads a
    # non-finite input over the 4x4 tiles that read it, as NaN: docs/winograd.md)
    assert np.all(~np.isfinite(y[~np.isfinite(ref)]))
    assert np.isfinite(y).sum() > 0


@needs_c
@pytest.mark.parametrize("name", list(C_ISAS))
def test_fastpoint_isa_switch_in_a_subprocess(name):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "from tests.test_winograd import _isa_in_use_after_a_check; print(_isa_in_use_after_a_check())"
    out = subprocess.check_output([sys.executable, "-c", code], env={**os.environ, "FASTPOINT_ISA": name}, cwd=root,
                                  text=True)
    assert int(out) == min(C_ISAS[name], cback.lib.fp_isa_supported())


def _isa_in_use_after_a_check() -> int:
    """(In the subprocess) one Winograd call checked against the reference; the ISA it ran."""
    rng = np.random.default_rng(0)
    x, w, b = data(rng, 2, 20, 33, 13, 18)
    check_close(winograd(x, w, b, 1), reference(x, w, b, 1))
    return int(cback.lib.fp_isa())


@needs_c
def test_kernel_names(isa):
    # F(4x4) from 32 tiles of 4x4 (a 24 x 24 map has 36), F(2x2) below (16 x 16 has 16)
    assert _kernel_name(algorithm="winograd", hw=24) == f"f32_winograd_4x4__{isa}"
    assert _kernel_name(algorithm="winograd", hw=16) == f"f32_winograd_2x2__{isa}"
    assert "winograd" not in _kernel_name(algorithm="auto")
    assert "winograd" not in _kernel_name(algorithm="direct")
    assert "winograd" not in _kernel_name(algorithm="winograd", dtype=np.float64)  # float64: the direct kernel
    # dilated: by the tiles of the phase images (32 x 32, dilation 2: 4 of 16 x 16, 64 tiles; 16 x 16, dilation 4:
    # 16 of 4 x 4, 16 tiles)
    assert _kernel_name(algorithm="winograd", hw=32, dilation=2) == f"f32_winograd_4x4__{isa}"
    assert _kernel_name(algorithm="winograd", hw=16, dilation=4) == f"f32_winograd_2x2__{isa}"
    assert "winograd" not in _kernel_name(algorithm="auto", hw=32, dilation=2)


# ------------------------------------------------------------------ the keyword


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_auto_and_direct_keep_todays_results(backend):
    if backend not in fp.backends():
        pytest.skip(f"{backend} backend unavailable")
    rng = np.random.default_rng(6)
    x, w, b = data(rng, 1, 8, 16, 9, 9)
    base = fp.conv2d(x, w, b, padding=1, backend=backend)
    assert np.array_equal(fp.conv2d(x, w, b, padding=1, backend=backend, algorithm="auto"), base)
    assert np.array_equal(fp.conv2d(x, w, b, padding=1, backend=backend, algorithm="direct"), base)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backends_without_winograd_run_the_direct_kernel(backend):
    if backend not in fp.backends():
        pytest.skip(f"{backend} backend unavailable")
    rng = np.random.default_rng(7)
    x, w, b = data(rng, 1, 8, 16, 9, 9)
    assert np.array_equal(fp.conv2d(x, w, b, padding=1, backend=backend, algorithm="winograd"),
                          fp.conv2d(x, w, b, padding=1, backend=backend))


@needs_c
def test_float64_runs_the_direct_kernel():
    rng = np.random.default_rng(8)
    x, w, b = (a.astype(np.float64) for a in data(rng, 1, 8, 16, 9, 9))
    assert np.array_equal(fp.conv2d(x, w, b, padding=1, backend="c", algorithm="winograd"),
                          fp.conv2d(x, w, b, padding=1, backend="c"))


@pytest.mark.parametrize("kwargs,why", [
    (dict(weight=(8, 4, 5, 5)), "3x3"),
    (dict(weight=(8, 4, 1, 1)), "3x3"),
    (dict(weight=(8, 4, 3, 1)), "3x3"),
    (dict(stride=2), "stride"),
    (dict(stride=(1, 2)), "stride"),
    (dict(dilation=2), "dilation 1 in layout NCHW"),  # NHWC takes it (test_dilation_in_nhwc)
    (dict(groups=2), "groups"),
    (dict(groups=4, weight=(8, 1, 3, 3)), "groups"),
])
@pytest.mark.parametrize("api", ["conv2d", "Conv2d"])
def test_winograd_refused_where_it_does_not_apply(kwargs, why, api):
    kwargs = dict(kwargs)
    w = np.zeros(kwargs.pop("weight", (8, 4, 3, 3)), np.float32)
    x = np.zeros((1, 4, 12, 12), np.float32)
    with pytest.raises(ValueError, match=why):
        if api == "conv2d":
            fp.conv2d(x, w, padding=1, algorithm="winograd", **kwargs)
        else:
            fp.Conv2d(w, padding=1, algorithm="winograd", **kwargs)


@pytest.mark.parametrize("bad", ["Winograd", "fft", "", None, 2])
def test_unknown_algorithm(bad):
    w = np.zeros((8, 4, 3, 3), np.float32)
    with pytest.raises((ValueError, TypeError), match="algorithm"):
        fp.Conv2d(w, algorithm=bad)


# ------------------------------------------------------------------ helpers


class _threads:
    """fp.set_num_threads(n) for a with-block, then the previous count back."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.before = fp.get_num_threads()
        fp.set_num_threads(self.n)

    def __exit__(self, *exc):
        fp.set_num_threads(self.before)


def _kernel_name(algorithm, dtype=np.float32, hw=16, dilation=1):
    """The C kernel a 16 <- 8 channel 3x3 layer runs on a (1, 8, hw, hw) input (NHWC where dilated)."""
    from fastpoint.core.spec import make_spec

    layout = "NCHW" if dilation == 1 else "NHWC"
    layer = fp.Conv2d(np.zeros((16, 8, 3, 3), dtype), padding=dilation, dilation=dilation, layout=layout,
                      backend="c", algorithm=algorithm)
    x_shape = (1, 8, hw, hw) if layout == "NCHW" else (1, hw, hw, 8)
    spec = make_spec(layer._layer.with_dtype(np.dtype(dtype)), x_shape, (16, 8, 3, 3))
    return cback.CBackend().kernel_name(spec)


@needs_c
def test_bench_runs_a_backend_with_an_algorithm():
    # fastpoint bench --algorithm winograd names the contender "c:winograd"
    from fastpoint.bench.runner import prepare_backend
    from fastpoint.bench.suites import layer

    la = layer("r50_3x3_256_14")
    prep = prepare_backend("c:winograd", la, 1, "NCHW")
    prep.run()
    x, w, b = la.arrays("NCHW")
    check_close(prep.result(), reference(x, w, b, 1))
    with pytest.raises(ValueError, match="winograd"):
        prepare_backend("c:winograd", layer("r50_1x1_256_64_56"), 1, "NCHW")


@needs_c
def test_load_onnx_algorithm_winograd_where_it_applies_and_pays():
    """load_onnx(algorithm="winograd"): the 3x3 stride-1 Conv of 16 input channels runs Winograd, the dilated
    one of 24 in an NHWC plan too; the 1x1,
    the strided 3x3 and the 3x3 stride-1 stem of 3 input channels (fewer than a vector: slower with Winograd,
    core/winograd.py) the default kernels (no ValueError for them); results within the bound of
    docs/winograd.md."""
    pytest.importorskip("onnx")
    from .onnx_graphs import helper, model

    rng = np.random.default_rng(11)
    inits = {"w0": (rng.standard_normal((16, 3, 3, 3)) / 5).astype(np.float32),
             "w1": (rng.standard_normal((24, 16, 3, 3)) / 12).astype(np.float32),
             "wd": (rng.standard_normal((24, 24, 3, 3)) / 15).astype(np.float32),
             "w2": (rng.standard_normal((8, 24, 1, 1)) / 5).astype(np.float32),
             "w3": (rng.standard_normal((8, 8, 3, 3)) / 9).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["s"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Conv", ["s", "w1"], ["a"], pads=[1, 1, 1, 1], name="c3"),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "wd"], ["d"], pads=[2, 2, 2, 2], dilations=[2, 2], name="c3d2"),
             helper.make_node("Conv", ["d", "w2"], ["b"], name="c1"),
             helper.make_node("Conv", ["b", "w3"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], name="c3s2")]
    m = model(nodes, [("x", [1, 3, 20, 22])], [("y", None)], inits)
    x = rng.standard_normal((1, 3, 20, 22)).astype(np.float32)
    for layout in ("NCHW", "NHWC"):
        net = fp.load_onnx(m, backend="c", algorithm="winograd", layout=layout)
        y = net(x)
        x64, w = x.astype(np.float64), {k: v.astype(np.float64) for k, v in inits.items()}
        a = np.maximum(fp.conv2d(fp.conv2d(x64, w["w0"], padding=1), w["w1"], padding=1), 0)
        a = fp.conv2d(a, w["wd"], padding=2, dilation=2)
        ref = fp.conv2d(fp.conv2d(a, w["w2"]), w["w3"], stride=2, padding=1)
        check_close(y, ref)
        algorithms = {n.name: {layer._layer.algorithm for layer in n.op._layers.values()}
                      for n in net._graph.nodes if n.op.op_type == "Conv"}
        dilated = "winograd" if layout == "NHWC" else "auto"  # dilated Winograd: NHWC only
        assert algorithms == {"stem": {"auto"}, "c3": {"winograd"}, "c3d2": {dilated}, "c1": {"auto"},
                              "c3s2": {"auto"}}, layout
        for n in net._graph.nodes:  # a Winograd node packs the U of one tile size (its map's), not both
            for lay in n.op._layers.values() if n.op.op_type == "Conv" else ():
                if lay._layer.algorithm == "winograd":
                    tiles = {"c3": "2x2", "c3d2": "4x4"}[n.name]  # 30 tiles of 4x4; phase images: 36
                    assert [key[0].split(":")[1][:16] for key in lay._packed] == ["f32_winograd_" + tiles], n.name
        auto = fp.load_onnx(m, backend="c", layout=layout)  # the default: the direct kernels everywhere
        auto(x)
        assert {layer._layer.algorithm for n in auto._graph.nodes if n.op.op_type == "Conv"
                for layer in n.op._layers.values()} == {"auto"}
    with pytest.raises(ValueError, match="algorithm"):
        fp.load_onnx(m, algorithm="fft")


def test_winograd_pays_from_a_vector_of_input_channels():
    """The network rule (core/winograd.py): Winograd from one vector of input channels of the ISA on."""
    from fastpoint.core.winograd import VECTOR_LANES, winograd_pays

    for isa_name, lanes in VECTOR_LANES.items():
        assert not winograd_pays(lanes - 1, isa_name) and not winograd_pays(3, isa_name)
        assert winograd_pays(lanes, isa_name) and winograd_pays(2048, isa_name)
    assert winograd_pays(16) and not winograd_pays(3)  # the ISA in use: at most 16 lanes


@needs_c
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_residual_epilogue_on_blocks_of_several_images(isa, layout):
    """The epilogue (residual + ReLU) lands on the right image when a block spans images."""
    rng = np.random.default_rng(21)
    x, w, b = data(rng, 5, 20, 24, 9, 10, layout=layout)
    res = rng.standard_normal(reference(x, w, b, 1, layout).shape).astype(np.float32)
    y = fp.Conv2d(w, b, padding=1, layout=layout, activation="relu", backend="c", algorithm="winograd")(x, residual=res)
    check_close(y, np.maximum(reference(x, w, b, 1, layout) + res, 0))
