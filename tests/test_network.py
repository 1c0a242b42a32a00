"""fp.load_onnx / fp.Network on graphs built with onnx.helper, against ONNX Runtime (or onnx's reference)."""

import sys
import threading

import numpy as np
import pytest

import fastpoint as fp

from .onnx_graphs import bn_node, bn_params, helper, model, ort_run, reference_run

ort = pytest.importorskip("onnxruntime")


def conv_bn_relu_model(rng, cin=3, cout=8, k=3, pads=(1, 1, 1, 1), strides=(1, 1), group=1, bias=True):
    w = rng.standard_normal((cout, cin // group, k, k)).astype(np.float32)
    inits = {"w": w, **bn_params(rng, cout)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["c"], pads=list(pads), strides=list(strides), group=group, name="conv"),
             bn_node("c", "n"), helper.make_node("Relu", ["n"], ["y"], name="relu")]
    return model(nodes, [("x", ["N", cin, "H", "W"])], [("y", None)], inits)


@pytest.mark.parametrize("pads,strides,group", [((1, 1, 1, 1), (1, 1), 1), ((0, 1, 2, 1), (2, 1), 1),
                                                ((1, 1, 1, 1), (1, 1), 8), ((0, 0, 0, 0), (2, 2), 2)])
def test_conv_bn_relu_folded_matches_onnxruntime(pads, strides, group):
    rng = np.random.default_rng(0)
    m = conv_bn_relu_model(rng, cin=8, pads=pads, strides=strides, group=group)
    net = fp.load_onnx(m)
    x = rng.standard_normal((2, 8, 11, 13)).astype(np.float32)
    y = net(x)
    ref = ort_run(m, {"x": x})[0]
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    plan = net.plan()
    assert [s.node.op.op_type for s in plan.steps] == ["Conv"]  # BN folded, Relu fused
    assert plan.steps[0].node.op.fused == ["BatchNormalization", "Relu"]
    table = str(net)
    assert "BatchNormalization+Relu" in table and "Conv" in table


def test_bn_folding_is_done_in_float64():
    """Large mean/scale: folding in float32 loses digits the float64 fold keeps."""
    rng = np.random.default_rng(1)
    c = 4
    w = rng.standard_normal((c, 3, 3, 3)).astype(np.float32)
    inits = {"w": w, "bn_g": np.full(c, 1e3, np.float32), "bn_b": np.full(c, 7.0, np.float32),
             "bn_m": rng.uniform(50, 100, c).astype(np.float32), "bn_v": np.full(c, 1e-2, np.float32)}
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), bn_node("c", "y")],
              [("x", [1, 3, 8, 8])], [("y", None)], inits)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    y = fp.load_onnx(m)(x)
    # the exact answer in float64
    conv = fp.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
    k = inits["bn_g"].astype(np.float64) / np.sqrt(inits["bn_v"].astype(np.float64) + 1e-5)
    exact = (conv - inits["bn_m"][None, :, None, None]) * k[None, :, None, None] + 7.0
    np.testing.assert_allclose(y, exact, rtol=0, atol=2e-6 * np.abs(exact).max())


def test_standalone_batch_norm_and_unfused_relu():
    """A BN that follows no Conv runs as its own step; a Relu whose input has two readers is not fused."""
    rng = np.random.default_rng(2)
    inits = {"w": rng.standard_normal((4, 4, 1, 1)).astype(np.float32), **bn_params(rng, 4)}
    nodes = [bn_node("x", "n"), helper.make_node("Conv", ["n", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["r", "c"], ["y"])]
    m = model(nodes, [("x", [2, 4, 5, 5])], [("y", None)], inits)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    net = fp.load_onnx(m)
    np.testing.assert_allclose(net(x), ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert [s.node.op.op_type for s in net.plan().steps] == ["BatchNormalization", "Conv", "Relu", "Add"]


def shape_subgraph_model():
    """PyTorch's pattern: y = x.reshape(x.shape[0], -1) through Shape -> Gather -> Unsqueeze -> Concat."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", 7, [], [0])),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Cast", ["shape"], ["shape64"], to=7),
             helper.make_node("Reshape", ["r", "shape64"], ["y"])]
    inits = {"ax": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    return model(nodes, [("x", ["batch", 3, "height", "width"])], [("y", None)], inits)


def test_shape_subgraph_folded_and_free_dims():
    m = shape_subgraph_model()
    net = fp.load_onnx(m)
    assert net.inputs[0].shape == ("batch", 3, "height", "width")
    assert net.inputs[0].name == "x" and net.outputs[0].name == "y"
    rng = np.random.default_rng(3)
    for shape in [(2, 3, 4, 5), (1, 3, 7, 9), (2, 3, 4, 5)]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(net(x), np.maximum(x, 0).reshape(shape[0], -1))
        plan = net.plan()
        assert [s.node.op.op_type for s in plan.steps] == ["Relu", "Reshape"]  # the rest folded
        assert plan.folded == 6
    assert len(net._plans) == 2  # one plan per input shape, reused


def test_arena_reuses_buffers_and_no_read_before_write(monkeypatch):
    """A chain of 12 convolutions needs 2-3 live buffers, not 12; a NaN-filled arena changes nothing."""
    rng = np.random.default_rng(4)
    nodes, inits, prev = [], {}, "x"
    for i in range(12):
        inits[f"w{i}"] = (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32)
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Sigmoid", [f"c{i}"], [f"s{i}"]))
        prev = f"s{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    m = model(nodes, [("x", [1, 8, 16, 16])], [("y", None)], inits)
    net = fp.load_onnx(m)
    plan = net.plan()
    one = 8 * 16 * 16 * 4
    assert plan.arena_bytes <= 3 * one  # Sigmoid runs in place over its conv's output; two buffers alternate
    assert plan.peak_bytes <= 3 * one
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    y = net(x)
    monkeypatch.setattr(type(plan), "arena_fill", float("nan"))
    y_nan = net(x)
    np.testing.assert_array_equal(y, y_nan)
    np.testing.assert_allclose(y, ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-6)
    y2 = net(x + 1)
    assert not np.array_equal(y, y2)  # the first result was not a view of an arena reused by the second call


def test_outputs_are_owned_by_the_caller():
    m = model([helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])],
              [("x", [2, 3])], [("y", None), ("z", None)])
    net = fp.load_onnx(m)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    out = net.run({"x": x})
    assert set(out) == {"y", "z"}
    assert not np.shares_memory(out["y"], x)
    np.testing.assert_array_equal(out["z"], np.maximum(x, 0))
    with pytest.raises(TypeError, match="net.run"):
        net(x)


def test_load_from_path_bytes_and_proto(tmp_path):
    m = shape_subgraph_model()
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    x = np.ones((1, 3, 2, 2), np.float32)
    for src in (m, m.SerializeToString(), str(path), path):
        np.testing.assert_array_equal(fp.load_onnx(src)(x), np.ones((1, 12), np.float32))
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto"):
        fp.load_onnx(12)
    with pytest.raises(ValueError, match="backend"):
        fp.load_onnx(m, backend="gpu")


@pytest.mark.parametrize("backend", ["numpy"] + [b for b in fp.backends() if b != "numpy"])
def test_backends_agree(backend):
    rng = np.random.default_rng(5)
    m = conv_bn_relu_model(rng)
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(fp.load_onnx(m, backend=backend)(x), ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_unsupported_op_and_attribute_fail_at_load():
    m = model([helper.make_node("Einsum", ["x"], ["y"], equation="ii", name="my_einsum")],
              [("x", [2, 2])], [("y", None)])
    with pytest.raises(NotImplementedError, match="'Einsum'.*my_einsum"):
        fp.load_onnx(m)
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r1", frobnicate=3)], [("x", [2])], [("y", None)])
    with pytest.raises(NotImplementedError, match="Relu node 'r1'.*'frobnicate'"):
        fp.load_onnx(m)
    w = np.ones((2, 2, 1, 1, 1), np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], name="c3d")], [("x", [1, 2, 3, 3, 3])], [("y", None)],
              {"w": w})
    with pytest.raises(NotImplementedError, match="Conv node 'c3d'.*3-d convolution"):
        fp.load_onnx(m)


def test_bad_inputs_are_named():
    net = fp.load_onnx(shape_subgraph_model())
    with pytest.raises(ValueError, match="missing \\['x'\\]"):
        net.run({"input": np.ones((1, 3, 2, 2), np.float32)})
    with pytest.raises(TypeError, match="float32"):
        net(np.ones((1, 3, 2, 2), np.float64))
    with pytest.raises(ValueError, match="shape"):
        net(np.ones((1, 4, 2, 2), np.float32))


def test_missing_onnx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'fastpoint\[onnx\]'"):
        fp.load_onnx(b"")


def test_concurrent_calls_share_a_plan_safely():
    rng = np.random.default_rng(6)
    m = conv_bn_relu_model(rng, cin=3, cout=16)
    net = fp.load_onnx(m)
    xs = [rng.standard_normal((1, 3, 12, 12)).astype(np.float32) for _ in range(4)]
    expected = [net(x) for x in xs]
    results = [None] * 4

    def work(i):
        for _ in range(5):
            results[i] = net(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


def test_elementwise_broadcast_matmul_gemm_softmax_against_reference():
    rng = np.random.default_rng(7)
    inits = {"a": rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "wm": rng.standard_normal((5, 6)).astype(
        np.float32), "wg": rng.standard_normal((7, 24)).astype(np.float32), "bg": rng.standard_normal(7).astype(
        np.float32), "slope": np.float32([[[[0.1]], [[0.2]], [[0.3]], [[0.4]]]])}
    nodes = [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Sub", ["m", "a"], ["s"]),
             helper.make_node("Div", ["s", "a"], ["d"]), helper.make_node("PRelu", ["d", "slope"], ["p"]),
             helper.make_node("HardSwish", ["p"], ["h"]), helper.make_node("MatMul", ["h", "wm"], ["mm"]),
             helper.make_node("Flatten", ["mm"], ["f"], axis=2), helper.make_node("Softmax", ["f"], ["sm"]),
             helper.make_node("Reshape", ["sm", "shape"], ["r"]),
             helper.make_node("Gemm", ["r", "wg", "bg"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    inits["shape"] = np.array([4, 24], np.int64)
    m = model(nodes, [("x", [1, 4, 4, 5])], [("y", None)], inits)
    x = rng.standard_normal((1, 4, 4, 5)).astype(np.float32)
    ref = reference_run(m, {"x": x})[0]
    np.testing.assert_allclose(fp.load_onnx(m)(x), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ort_run(m, {"x": x})[0], ref, rtol=1e-5, atol=1e-6)
