"""The NHWC plan's stem: a convolution reading the graph's few-channel NCHW image straight into its NHWC
output (csrc/ops/stem__avx512.c via Conv.bind_feed), against the staged path and ONNX Runtime."""

import itertools

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.ops import _c

from .onnx_graphs import bn_node, bn_params, helper, model, ort_run

pytest.importorskip("onnxruntime")
needs_loop = pytest.mark.skipif(not _c.available() or _c.isa_name() != "avx512",
                                reason="the stem loop is AVX-512 only (other ISAs stage the input)")

ACTS = {"relu": ("Relu", {}), "hardswish": ("HardSwish", {}), "sigmoid": ("Sigmoid", {}), "none": None,
        "clip": ("Clip", None), "leaky": ("LeakyRelu", {"alpha": 0.1})}


def stem_model(rng, cin, cout, k, stride, pad, dilation, act, x_shape, bias=True):
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    inits = {"w": w, **bn_params(rng, cout)}
    ins = ["x", "w"] + (["b"] if bias else [])
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ins, ["c"], pads=[pad] * 4, strides=[stride] * 2, dilations=[dilation] * 2,
                              name="stem"), bn_node("c", "n")]
    last = "n"
    if ACTS[act] is not None:
        op, attrs = ACTS[act]
        extra = []
        if op == "Clip":
            inits.update(lo=np.float32(0.0), hi=np.float32(6.0))
            extra, attrs = ["lo", "hi"], {}
        nodes.append(helper.make_node(op, ["n"] + extra, ["a"], **attrs))
        last = "a"
    # a second convolution reads the stem's NHWC output, so the plan is NHWC and the stem a staged feed
    w2 = rng.standard_normal((8, cout, 1, 1)).astype(np.float32)
    inits["w2"] = w2
    nodes.append(helper.make_node("Conv", [last, "w2"], ["y"], name="next"))
    return model(nodes, [("x", list(x_shape))], [("y", None)], inits)


def _stem_used(net) -> bool:
    plan = net.plan()
    prog = plan._arenas.program
    return any(getattr(e, "__qualname__", "").startswith("_feed_entry") for e in prog)


@needs_loop
@pytest.mark.parametrize("threads", [1, 2])
def test_stem_matches_staged_path_and_onnxruntime(threads):
    """Sweeps of input channels (1-4), output channels (one vector, below, at and above it, two), kernel,
    stride, padding (none, partial, more than the kernel half), dilation, fused activation, odd sizes
    (columns left over after the 8-pixel blocks, images narrower than a block) and batch 2."""
    rng = np.random.default_rng(0)
    old = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        cases = list(itertools.product([1, 3, 4], [16, 5, 24, 32], [(3, 2, 1, 1), (1, 1, 0, 1), (5, 1, 2, 1),
                                                                  (3, 1, 2, 2), (7, 2, 3, 1)]))
        for i, (cin, cout, (k, s, p, d)) in enumerate(cases):
            act = list(ACTS)[i % len(ACTS)]
            shape = [(1, cin, 33, 29), (2, cin, 9, 6), (1, cin, 4, 3)][i % 3]
            if (shape[2] + 2 * p - d * (k - 1) - 1) < 0 or (shape[3] + 2 * p - d * (k - 1) - 1) < 0:
                continue
            m = stem_model(rng, cin, cout, k, s, p, d, act, shape, bias=i % 2 == 0)
            x = rng.standard_normal(shape).astype(np.float32)
            net = fp.load_onnx(m, layout="NHWC")
            got = net(x)
            assert _stem_used(net), (cin, cout, k, s, p, d, act)
            staged = fp.load_onnx(m, layout="NHWC")
            staged.plan().no_stem = True
            want = staged(x)
            assert not _stem_used(staged)
            ref = ort_run(m, {"x": x})[0]
            tag = f"cin={cin} cout={cout} k={k} s={s} p={p} d={d} act={act} shape={shape}"
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=tag)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), err_msg=tag)
    finally:
        fp.set_num_threads(old)


@needs_loop
def test_stem_declines_inputs_it_does_not_take():
    """A non-contiguous input (a strided view) runs the general path: same result."""
    rng = np.random.default_rng(1)
    m = stem_model(rng, 3, 16, 3, 2, 1, 1, "hardswish", (1, 3, 20, 18))
    net = fp.load_onnx(m, layout="NHWC")
    x = rng.standard_normal((1, 3, 20, 36)).astype(np.float32)
    first = net(np.ascontiguousarray(x[..., ::2]))
    assert _stem_used(net)
    np.testing.assert_array_equal(net(x[..., ::2]), first)
    ref = ort_run(m, {"x": np.ascontiguousarray(x[..., ::2])})[0]
    np.testing.assert_allclose(first, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@needs_loop
def test_stem_of_a_model_file_reads_its_weights(tmp_path):
    """Loaded from a file, a fixed-shape model's convolution weights stay in the file until packed
    (wire.StandIn stand-ins that read as NaN): the stem loop must take the real, folded weights. Bit for
    bit the result of the same model loaded from its ModelProto (weights kept as arrays)."""
    import onnx

    rng = np.random.default_rng(3)
    m = stem_model(rng, 3, 16, 3, 2, 1, 1, "hardswish", (1, 3, 40, 36))
    path = tmp_path / "stem.onnx"
    onnx.save(m, path)
    x = rng.standard_normal((1, 3, 40, 36)).astype(np.float32)
    net = fp.load_onnx(path, layout="NHWC")
    got = net(x)
    assert _stem_used(net)
    kept = fp.load_onnx(m, layout="NHWC")
    want = kept(x)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, want)


def test_stem_loop_refuses_what_it_cannot_run():
    """prepare_conv_stem declines more than 32 output channels or more than 4 input channels."""
    if not _c.available():
        pytest.skip("no C extension")
    w = np.ones((33, 3, 3, 3), np.float32)
    assert _c.prepare_conv_stem((1, 3, 8, 8), w, None, (1, 1), (1, 1), (1, 1), False, None) is None
    w = np.ones((16, 5, 3, 3), np.float32)
    assert _c.prepare_conv_stem((1, 5, 8, 8), w, None, (1, 1), (1, 1), (1, 1), False, None) is None


@pytest.mark.parametrize("isa", ["avx2", "scalar"], indirect=True)
def test_other_isas_stage_the_input(isa):
    """Without AVX-512 the stem loop is not bound (its C entry answers FP_ERR_ARGS, writing nothing): the
    plan stages the input as before, same result as ONNX Runtime."""
    rng = np.random.default_rng(2)
    m = stem_model(rng, 3, 16, 3, 2, 1, 1, "relu", (1, 3, 17, 19))
    x = rng.standard_normal((1, 3, 17, 19)).astype(np.float32)
    assert _c.prepare_conv_stem((1, 3, 17, 19), np.ones((16, 3, 3, 3), np.float32), None, (1, 1), (2, 2), (1, 1),
                                False, None) is None
    net = fp.load_onnx(m, layout="NHWC")
    got = net(x)
    assert not _stem_used(net)
    ref = ort_run(m, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    y = np.full((1, 9, 10, 16), np.nan, np.float32)
    dims = _c._ffi.new("int64_t[6]", [1, 3, 17, 19, 9, 10])
    geom = _c._ffi.new("int64_t[8]", [3, 3, 2, 2, 1, 1, 1, 1])
    w = np.zeros((27, 16), np.float32)
    rc = _c._lib.fp_op_conv_stem_f32(_c._fptr(x), dims, geom, _c._fptr(w), _c._fptr(np.zeros(16, np.float32)), 16,
                                     _c._fptr(y), _c._ffi.NULL, 0, 1)
    assert rc == -3 and np.isnan(y).all()  # FP_ERR_ARGS
