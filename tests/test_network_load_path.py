"""What load plus first inference does beyond the plain passes: the header parse off the reader's window
(wire.py), the one-pass fusions (fusion.py, graph.py), the first call of a bound convolution
(ops_conv.py ``kept_plan``), the graph outputs' first arrays (plan.py) and the finiteness sum
(core/nonfinite.py). Each against the slower, obviously right way it replaces.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastpoint as fp  # noqa: E402
from fastpoint.core.nonfinite import nonfinite_taps  # noqa: E402
from fastpoint.network import fusion, wire  # noqa: E402
from fastpoint.network import graph as G  # noqa: E402


def _tensor_bytes(t: onnx.TensorProto) -> bytes:
    return t.SerializeToString()


def _both_ways(data: bytes):
    """The window parse and the field-by-field walk of one serialized TensorProto (each ends at its end)."""
    results = []
    for parse in (wire._tensor, wire._tensor_fields):
        r = wire._Reader(io.BytesIO(data), len(data))
        results.append(parse(r, len(data)))
        assert r.pos() == len(data)
    return results


@pytest.mark.parametrize("case", ["plain", "long name", "doc after payload", "packed dims", "typed data",
                                  "unknown dtype", "scalar", "bad size"])
def test_header_parse_off_the_window_equals_the_field_walk(case):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = numpy_helper.from_array(a, "w")
    if case == "long name":
        t.name = "n" * (3 * wire._Reader.WINDOW)  # past the window: the field walk takes it
    elif case == "doc after payload":
        t.doc_string = "after"  # field 12 follows raw_data (9)
    elif case == "typed data":
        t = helper.make_tensor("w", TensorProto.FLOAT, a.shape, a.ravel().tolist())
    elif case == "unknown dtype":
        t = helper.make_tensor("w", TensorProto.BFLOAT16, [2], [1.0, 2.0])
    elif case == "scalar":
        t = numpy_helper.from_array(np.array(3, np.int64), "w")
    elif case == "bad size":
        t.raw_data = t.raw_data[:-4]
    data = _tensor_bytes(t)
    if case == "packed dims":  # dims as one packed field (protobuf allows either encoding)
        body = bytes([1 << 3 | 2, 3, 2, 3, 4]) + _tensor_bytes(t)[6:]
        assert _tensor_bytes(t)[:6] == bytes([8, 2, 8, 3, 8, 4])
        data = body
    window, fields = _both_ways(data)
    assert window == fields
    if case in ("plain", "long name", "doc after payload", "packed dims", "scalar"):
        name, p = window
        assert name == t.name and p.dims == tuple(t.dims) and p.dtype == numpy_helper.to_array(t).dtype
        assert data[p.pos:p.pos + p.nbytes] == t.raw_data
    else:
        assert window is None


def test_whole_models_read_like_onnx_load(tmp_path):
    """Many tensors (more than a window's worth of headers), nodes between them: the stripped model and
    the arrays are onnx.load's."""
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "x"
    for i in range(40):
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}"))
        prev = f"c{i}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4, 3, 3])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    stripped, arrays, order = G.read(path)
    assert order == [t.name for t in proto.graph.initializer]
    for t in proto.graph.initializer:
        assert np.array_equal(arrays[t.name], numpy_helper.to_array(t))
    full = onnx.load(path)
    del full.graph.initializer[:]
    assert stripped == full


def _conv(name, x, w, y):
    return helper.make_node("Conv", [x, w], [y], name=name)


def test_one_pass_fusions_match_node_by_node():
    """Adds with two convolution candidates (the later one fuses), a conv read twice (not fused), an
    activation on a fused residual, an activation on a graph output: the same graph as fusing node by
    node with recounted readers (the pre-one-pass algorithm, written out here)."""
    rng = np.random.default_rng(1)
    w = {f"w{i}": rng.standard_normal((4, 4, 1, 1)).astype(np.float32) for i in range(6)}
    nodes = [_conv("a", "x", "w0", "a"), _conv("b", "a", "w1", "b"),
             helper.make_node("Add", ["a", "b"], ["s"], name="add1"),  # a is read twice: b fuses
             helper.make_node("Relu", ["s"], ["r"], name="relu1"),
             _conv("c", "r", "w2", "c"), _conv("d", "r", "w3", "d"),
             helper.make_node("Add", ["c", "d"], ["t"], name="add2"),  # both sole readers: the later (d)
             helper.make_node("HardSwish", ["t"], ["h"], name="hs"),
             _conv("e", "h", "w4", "e"), helper.make_node("Sigmoid", ["e"], ["y1"], name="sig"),
             _conv("f", "h", "w5", "f"), helper.make_node("Relu", ["f"], ["y2"], name="relu2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "f", "y2")],
                          [numpy_helper.from_array(v, k) for k, v in w.items()])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    def signature(graph):
        return [(n.name, n.op.op_type, list(n.inputs), list(n.outputs), list(n.op.fused)) for n in graph.nodes]

    fast = G.parse(proto)
    fusion.fuse_epilogues(fast)
    slow = G.parse(proto)
    _fuse_node_by_node(slow)
    assert signature(fast) == signature(slow)
    by_name = {n.name: n for n in fast.nodes}
    assert by_name["b"].op.fused == ["Add", "Relu"] and by_name["d"].op.fused == ["Add", "HardSwish"]
    assert "relu2" in by_name  # f is a graph output too: its Relu stays
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    ref = fp.load_onnx(proto, backend="numpy").run({"x": x})
    for name, value in fp.load_onnx(proto).run({"x": x}).items():
        np.testing.assert_allclose(value, ref[name], rtol=1e-5, atol=1e-5)


def _fuse_node_by_node(graph):
    """Both fusions as they were before the one-pass rewrite: readers recounted for every candidate."""
    def sole_reader(name):
        count = sum(n.inputs.count(name) for n in graph.nodes) + sum(o.name == name for o in graph.outputs)
        readers = [n for n in graph.nodes if name in n.inputs]
        return readers[0] if count == 1 and len(readers) == 1 else None

    def producer(name):
        return next((n for n in graph.nodes if name in n.outputs), None)

    def index(node):
        return next(i for i, n in enumerate(graph.nodes) if n is node)

    for add in [n for n in graph.nodes if n.op.op_type == "Add" and len(n.inputs) == 2]:
        cands = [(index(c), k, c) for k in (0, 1) for c in [producer(add.inputs[k])]
                 if c is not None and c.op.op_type == "Conv" and c.op.weight is not None and not c.op.residual
                 and c.op.activation is None and add.inputs[1 - k] not in graph.initializers
                 and add.inputs[1 - k] != add.inputs[k] and sole_reader(add.inputs[k]) is add]
        if cands:
            _, k, conv = max(cands, key=lambda c: c[0])
            conv.inputs[len(conv.inputs):] = [""] * (3 - len(conv.inputs))
            conv.inputs[3:] = [add.inputs[1 - k]]
            conv.op.residual = True
            conv.op.fused.append("Add")
            conv.outputs[0] = add.outputs[0]
            del graph.nodes[index(conv)]
            graph.nodes[index(add)] = conv
    for node in list(graph.nodes):
        act = fusion.activation_of(graph, node)
        conv = producer(node.inputs[0]) if act is not None else None
        if (conv is not None and conv.op.op_type in fusion.CONV_TYPES and conv.op.activation is None
                and sole_reader(node.inputs[0]) is node):
            conv.op.activation, conv.op.act_params = act
            conv.op.fused.append(node.op.op_type)
            conv.outputs[0] = node.outputs[0]
            del graph.nodes[index(node)]


def _nan_weight_model(rng):
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    w[2, 5, 0, 1] = np.nan
    w[6, 1, 2, 2] = np.inf
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 5])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), w


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_first_bound_call_keeps_the_layers_plan_and_the_padding_nan(layout):
    """The bound runner's first call makes the layer's kept plan (no full call) and later calls reuse
    it; non-finite weights still get the padding fix-up (NaN where the window puts them on the zeros)."""
    rng = np.random.default_rng(2)
    proto, w = _nan_weight_model(rng)
    x = rng.standard_normal((1, 8, 6, 5)).astype(np.float32)
    ref = np.maximum(fp.conv2d(x, w, padding=1, backend="numpy"), 0)
    net = fp.load_onnx(proto, layout=layout)
    for _ in range(3):
        np.testing.assert_allclose(net(x), ref, rtol=1e-5, atol=1e-5)
    assert np.isnan(ref).any()
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.nan_to_num(w, nan=0.5, posinf=2.0), "w"))
    net = fp.load_onnx(proto, layout=layout)
    y1 = net(x)
    layer = next(n.op for n in net._graph.nodes if n.op.op_type == "Conv")._layers
    (only,) = layer.values()
    assert len(only._plans) == 1  # made by the first call, kept, reused
    np.testing.assert_array_equal(net(x), y1)
    assert len(only._plans) == 1


def test_graph_outputs_first_array_is_writable_and_recycled():
    rng = np.random.default_rng(3)
    proto, w = _nan_weight_model(rng)
    w = np.nan_to_num(w)
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    net = fp.load_onnx(proto)
    x = rng.standard_normal((1, 8, 6, 5)).astype(np.float32)
    y = net(x)
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
    addr, first = y.ctypes.data, y.copy()
    del y
    y = net(x)
    assert y.ctypes.data == addr and np.array_equal(y, first)  # dropped: written again


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kernel", [1, 3])
def test_a_layer_without_padding_skips_the_check_and_keeps_nan_and_inf(layout, kernel):
    """A layer that never pads needs no padding fix-up: its non-finite weights are not looked for (no
    taps), and the kernels alone put NaN / Inf exactly where the reference does."""
    rng = np.random.default_rng(8)
    w = rng.integers(-3, 4, (20, 8, kernel, kernel)).astype(np.float32)  # integer values: any summation order
    w[1, 2, 0, 0], w[7, 0, -1, -1], w[19, 5, 0, -1] = np.nan, np.inf, -np.inf
    x = rng.integers(-2, 3, (1, 8, 9, 7)).astype(np.float32)
    ref = fp.conv2d(x, w, backend="numpy")
    assert np.isnan(ref).any() and np.isinf(ref).any()
    xl = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for backend in fp.backends():
        layer = fp.Conv2d(w, layout=layout, backend=backend)
        for _ in range(2):
            y = layer(xl)
            np.testing.assert_array_equal(y if layout == "NCHW" else y.transpose(0, 3, 1, 2), ref)
        assert all(packed[3] is None for packed in layer._packed.values())  # no taps: no pass over W
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 9, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(ref.shape))],
                          [numpy_helper.from_array(w, "w")])
    net = fp.load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), layout=layout)
    for _ in range(2):
        np.testing.assert_array_equal(net(x), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_finite_sum_check_matches_the_elementwise_mask(dtype):
    rng = np.random.default_rng(4)
    big = np.finfo(dtype).max
    cases = [rng.standard_normal((4, 3, 3, 3)), np.full((4, 3, 3, 3), big / 2)]  # the second overflows its sum
    for bad in (np.nan, np.inf, -np.inf):
        w = rng.standard_normal((4, 3, 3, 3))
        w[1, 2, 0, 1] = bad
        cases.append(w)
    w = rng.standard_normal((4, 3, 3, 3))
    w[0, 0, 0, 0], w[3, 1, 2, 2] = np.inf, -np.inf  # their sum is NaN
    cases.append(w)
    for w in cases:
        w = w.astype(dtype)
        finite = np.isfinite(w)
        want = None if finite.all() else ~finite.all(axis=1)
        got = nonfinite_taps(w)
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_array_equal(got, want)


def test_load_time_tool_repeats_in_fresh_processes(tmp_path):
    """tools/load_time.py --repeat: one summary line per tree from fresh processes of the one-run mode."""
    import json
    import os
    import subprocess
    import sys

    proto, w = _nan_weight_model(np.random.default_rng(5))
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.nan_to_num(w), "w"))
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "tools", "load_time.py"), str(path), "1", "--repeat", "2"],
                         capture_output=True, text=True, check=True, cwd=root).stdout
    (line,) = out.strip().splitlines()
    got = json.loads(line)
    assert got["runs"] == 2 and got["min_cpu_ms"] <= got["median_cpu_ms"]
    assert got["median_total_ms"] > 0 and got["median_x_steady_cpu"] > 0


@pytest.mark.parametrize("enabled", [True, False])
def test_load_restores_the_garbage_collector(enabled):
    """load_onnx runs without garbage collection and leaves the collector as it found it, also when the
    load fails (an unsupported op)."""
    import gc

    proto, _ = _nan_weight_model(np.random.default_rng(6))
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    bad.graph.node[1].op_type = "NoSuchOp"
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        fp.load_onnx(proto.SerializeToString())
        assert gc.isenabled() == enabled
        with pytest.raises(NotImplementedError, match="NoSuchOp"):
            fp.load_onnx(bad.SerializeToString())
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()
