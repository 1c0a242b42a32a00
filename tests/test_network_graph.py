"""The network plan's layout and fusions (fastpoint/network/layout.py, fusion.py) against ONNX Runtime."""

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.network import ops_shape
from fastpoint.network.fusion import activation_of, epilogue_activations, supports_residual
from fastpoint.network.plan import Plan

from .onnx_graphs import helper, model, ort_run

pytest.importorskip("onnxruntime")


def _w(rng, cout, cin, k=3):
    return (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)


def mixed_model(rng, c=8):
    """Every kind of op a layout pass must keep right: axis ops (Concat, Softmax, ReduceMean, Slice,
    Transpose, Reshape/Flatten), pooling, resize, broadcast binaries (squeeze-excitation), a depthwise conv."""
    inits = {"w1": _w(rng, c, 3), "b1": rng.standard_normal(c).astype(np.float32),
             "w2": _w(rng, c, 1), "w3": _w(rng, c, 2 * c, 1),
             "f1": _w(rng, 4, c, 1), "f2": _w(rng, c, 4, 1),
             "scale": np.array([1.0, 1.0, 2.0, 2.0], np.float32),
             "starts": np.array([1], np.int64), "ends": np.array([5], np.int64), "axes": np.array([1], np.int64),
             "shape": np.array([0, -1], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=c),  # depthwise
        helper.make_node("HardSwish", ["c2"], ["h2"]),
        # squeeze-excitation: GAP -> 1x1 -> Relu -> 1x1 -> HardSigmoid -> Mul
        helper.make_node("GlobalAveragePool", ["h2"], ["g"]),
        helper.make_node("Conv", ["g", "f1"], ["s1"]), helper.make_node("Relu", ["s1"], ["s1r"]),
        helper.make_node("Conv", ["s1r", "f2"], ["s2"]), helper.make_node("HardSigmoid", ["s2"], ["s2h"]),
        helper.make_node("Mul", ["h2", "s2h"], ["se"]),
        helper.make_node("Concat", ["se", "r1"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w3"], ["c3"]),
        helper.make_node("MaxPool", ["c3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "scale"], ["up"], mode="linear"),
        helper.make_node("Add", ["up", "c3"], ["sum"]),
        helper.make_node("Softmax", ["sum"], ["soft"], axis=1),
        helper.make_node("Slice", ["soft", "starts", "ends", "axes"], ["sl"]),
        helper.make_node("Transpose", ["sl"], ["tr"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["c3"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Reshape", ["sum", "shape"], ["flat"]),
    ]
    outputs = [("tr", None), ("mean", None), ("flat", None), ("se", None)]
    return model(nodes, [("x", [1, 3, 12, 10])], outputs, inits)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "auto"])
def test_every_op_kind_in_each_layout_matches_onnxruntime(layout, monkeypatch):
    rng = np.random.default_rng(0)
    m = mixed_model(rng)
    x = rng.standard_normal((1, 3, 12, 10)).astype(np.float32)
    refs = ort_run(m, {"x": x})
    monkeypatch.setattr(Plan, "arena_fill", float("nan"))  # a read of a buffer never written shows
    net = fp.load_onnx(m, layout=layout)
    outs = net.run({"x": x})
    for (name, _), ref in zip([("tr", 0), ("mean", 0), ("flat", 0), ("se", 0)], refs):
        y = outs[name]
        assert y.shape == ref.shape and y.flags.c_contiguous, name
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), err_msg=name)
    plan = net.plan()
    nhwc = sum(plan.nhwc.values())
    if layout == "NCHW":
        assert nhwc == 0
    else:  # the model has a depthwise conv: auto picks NHWC; convs, elementwise ops, Concat keep it
        assert nhwc >= 4


def residual_model(rng, c=8, other_shape=None):
    """conv -> BN-free Add(identity or another conv) -> Relu, ResNet's block ending."""
    inits = {"w1": _w(rng, c, c), "w2": _w(rng, c, c, 1), "b2": rng.standard_normal(c).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w2", "b2"], ["b"]),
             helper.make_node("Add", ["x", "b"], ["s"]),  # the conv is the second input
             helper.make_node("Relu", ["s"], ["y"])]
    return model(nodes, [("x", [1, c, 9, 7])], [("y", None)], inits)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_residual_add_and_relu_fuse_into_the_conv(layout):
    rng = np.random.default_rng(1)
    m = residual_model(rng)
    x = rng.standard_normal((1, 8, 9, 7)).astype(np.float32)
    net = fp.load_onnx(m, layout=layout)
    ref = ort_run(m, {"x": x})[0]
    np.testing.assert_allclose(net(x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    steps = [(s.node.op.op_type, s.node.op.fused) for s in net.plan().steps]
    if supports_residual():
        assert steps == [("Conv", ["Relu"]), ("Conv", ["Add", "Relu"])]
    else:
        assert steps == [("Conv", ["Relu"]), ("Conv", []), ("Add", []), ("Relu", [])]


def test_broadcast_residual_runs_unfused_and_right():
    """An Add whose other input broadcasts (1, C, 1, 1): the fused node runs the ops one by one."""
    rng = np.random.default_rng(2)
    c = 6
    inits = {"w": _w(rng, c, c)}
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "g"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    m = model(nodes, [("x", [1, c, 5, 5])], [("y", None)], inits)
    x = rng.standard_normal((1, c, 5, 5)).astype(np.float32)
    ref = ort_run(m, {"x": x})[0]
    for layout in ("NCHW", "NHWC"):
        np.testing.assert_allclose(fp.load_onnx(m, layout=layout)(x), ref, rtol=1e-5, atol=1e-5)


ACTIVATIONS = {  # ONNX node (type, attributes, constant inputs)
    "Relu": ({}, []), "Sigmoid": ({}, []), "Tanh": ({}, []), "HardSwish": ({}, []),
    "LeakyRelu": ({"alpha": 0.1}, []), "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, []),
    "Clip": ({}, [np.float32(0.0), np.float32(6.0)]), "PRelu": ({}, ["slope"]),
}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv_activation_fusion(act, layout):
    """Each activation fuses where fastpoint's conv epilogue has it, and is right either way."""
    rng = np.random.default_rng(3)
    c = 5
    attrs, consts = ACTIVATIONS[act]
    inits = {"w": _w(rng, c, 3), "b": rng.standard_normal(c).astype(np.float32) * 3}
    ins = ["c"]
    for i, v in enumerate(consts):
        if isinstance(v, str):
            inits[v] = rng.uniform(0.05, 0.5, (c, 1, 1)).astype(np.float32)
            ins.append(v)
        else:
            inits[f"k{i}"] = np.asarray(v)
            ins.append(f"k{i}")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(act, ins, ["y"], **attrs)]
    m = model(nodes, [("x", [1, 3, 7, 6])], [("y", None)], inits)
    x = (rng.standard_normal((1, 3, 7, 6)) * 3).astype(np.float32)
    ref = ort_run(m, {"x": x})[0]
    net = fp.load_onnx(m, layout=layout)
    np.testing.assert_allclose(net(x), ref, rtol=1e-5, atol=2e-6 * np.abs(ref).max())
    from fastpoint.network.graph import parse

    name = activation_of(parse(m), parse(m).nodes[1])[0]
    steps = [s.node.op.op_type for s in net.plan().steps]
    assert steps == (["Conv"] if name in epilogue_activations() else ["Conv", act])


def test_no_op_pad_and_resize_become_views():
    """MONAI's UpCat pads by a size difference that is often zero: no copy then (and still right)."""
    rng = np.random.default_rng(4)
    inits = {"w": _w(rng, 4, 4), "zeros": np.zeros(8, np.int64), "pads": np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64),
             "ones": np.ones(4, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["c", "zeros"], ["p0"]),
             helper.make_node("Resize", ["p0", "", "ones"], ["r0"], mode="linear"),
             helper.make_node("Relu", ["r0"], ["y0"]),
             helper.make_node("Pad", ["c", "pads"], ["y1"])]
    m = model(nodes, [("x", [1, 4, 6, 5])], [("y0", None), ("y1", None)], inits)
    x = rng.standard_normal((1, 4, 6, 5)).astype(np.float32)
    refs = ort_run(m, {"x": x})
    for layout in ("NCHW", "NHWC"):
        net = fp.load_onnx(m, layout=layout)
        outs = net.run({"x": x})
        for name, ref in zip(("y0", "y1"), refs):
            np.testing.assert_allclose(outs[name], ref, rtol=1e-5, atol=1e-5, err_msg=name)
        ops = [(s.node.op.op_type, s.node.op.fused) for s in net.plan().steps]
        assert ops[1:3] == [("Identity", ["Pad (no-op)"]), ("Identity", ["Resize (no-op)"])]
        assert ops[-1][0] == "Pad"  # the real one stays


@pytest.mark.parametrize("kw", [dict(strides=[2, 2]), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
                                dict(strides=[2, 1], pads=[0, 1, 1, 0]), dict(group=2, strides=[1, 1])])
def test_conv_transpose_in_each_layout(kw):
    """ConvTranspose runs in the network's layout, into the plan's buffer where nothing is cropped."""
    rng = np.random.default_rng(5)
    inits = {"w": (rng.standard_normal((4, 4 // kw.get("group", 1), 3, 3)) * 0.2).astype(np.float32),
             "b": rng.standard_normal(4).astype(np.float32), "w1": _w(rng, 4, 4)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["c", "w", "b"], ["t"], **kw),
             helper.make_node("Relu", ["t"], ["y"])]
    m = model(nodes, [("x", [1, 4, 5, 6])], [("y", None)], inits)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    ref = ort_run(m, {"x": x})[0]
    for layout in ("NCHW", "NHWC"):
        np.testing.assert_allclose(fp.load_onnx(m, layout=layout)(x), ref, rtol=1e-5, atol=1e-5, err_msg=layout)


def concat_model(rng, n=1):
    """Producers of Concat inputs: plain convs (in place), a skip read again after the Concat, one written
    over in place after it (must stay out), a nested Concat, a graph input (copied)."""
    c = 4
    inits = {f"w{i}": _w(rng, c, c) for i in range(5)}
    inits["wc"] = _w(rng, c, 4 * c, 1)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w1"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["b", "w2"], ["d"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
             helper.make_node("Concat", ["ab", "d", "x"], ["cat"], axis=1),  # nested; x is a graph input
             helper.make_node("Conv", ["cat", "wc"], ["y0"]),
             helper.make_node("MaxPool", ["a"], ["y1"], kernel_shape=[2, 2]),  # a read after the Concats
             helper.make_node("Relu", ["d"], ["dr"]),  # d written over in place after the Concat: stays out
             helper.make_node("MaxPool", ["dr"], ["y2"], kernel_shape=[2, 2])]
    return model(nodes, [("x", [n, c, 6, 7])], [("y0", None), ("y1", None), ("y2", None)], inits)


@pytest.mark.parametrize("n", [1, 2])
def test_concat_written_in_place(n, monkeypatch):
    rng = np.random.default_rng(6)
    m = concat_model(rng, n)
    x = rng.standard_normal((n, 4, 6, 7)).astype(np.float32)
    refs = ort_run(m, {"x": x})
    monkeypatch.setattr(Plan, "arena_fill", float("nan"))
    for layout in ("NCHW", "NHWC"):
        net = fp.load_onnx(m, layout=layout)
        outs = net.run({"x": x})
        for name, ref in zip(("y0", "y1", "y2"), refs):
            np.testing.assert_allclose(outs[name], ref, rtol=1e-5, atol=1e-5, err_msg=f"{layout} {name}")
        # batch 1 in NCHW: a, b and the inner Concat live in the outer one's buffer (d is relu'd in place after)
        assert net.plan().concat_in_place == (3 if layout == "NCHW" and n == 1 else 0)
        # what the Concats copy: only the inputs that are not in place (d and x; all five otherwise)
        assert len(_copies_of_one_run(net, x, monkeypatch)) == (2 if layout == "NCHW" and n == 1 else 5)


def _copies_of_one_run(net, x, monkeypatch):
    """The shapes np.copyto copies during one run (this graph's other ops run in C and copy nothing)."""
    copied, copyto = [], np.copyto

    def spy(dst, src, **kw):
        copied.append(np.shape(src))
        copyto(dst, src, **kw)

    monkeypatch.setattr(ops_shape.np, "copyto", spy)
    net.run({"x": x})
    monkeypatch.setattr(ops_shape.np, "copyto", copyto)
    return copied


def test_output_arrays_recycled_only_when_dropped():
    """A graph output's array is written again only when the caller no longer holds last call's result."""
    rng = np.random.default_rng(7)
    m = residual_model(rng)
    net = fp.load_onnx(m)
    x1, x2 = (rng.standard_normal((1, 8, 9, 7)).astype(np.float32) for _ in range(2))
    y1 = net(x1)
    keep = y1.copy()
    y2 = net(x2)  # y1 held: a new array
    assert y2 is not y1 and np.array_equal(y1, keep)
    ref2, view = y2.copy(), y2[0]
    del y2
    y3 = net(x1)  # last result only held through a view: still not reused
    assert np.array_equal(view, ref2[0]) and np.array_equal(y3, keep)
    addr = y3.ctypes.data
    del y3
    y4 = net(x2)  # dropped: its array is written again (no page faults for a fresh one)
    assert y4.ctypes.data == addr and np.array_equal(y4, ref2)


def image_ops_model(rng, c=16):
    """Convolutions around MaxPool, AveragePool (padded, ceil mode), Resize (nearest and linear) and a
    squeeze-excitation Mul: every op an NHWC plan now keeps NHWC and runs prebound."""
    inits = {"w1": _w(rng, c, 3), "w2": _w(rng, c, c, 1), "w3": _w(rng, c, c), "f1": _w(rng, 4, c, 1),
             "f2": _w(rng, c, 4, 1), "s2": np.array([1.0, 1.0, 2.0, 2.0], np.float32),
             "sizes": np.array([1, c, 13, 11], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"]),
        helper.make_node("AveragePool", ["c2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1],
                         ceil_mode=1, count_include_pad=0),
        helper.make_node("Resize", ["p2", "", "s2"], ["u1"], mode="nearest"),
        helper.make_node("Conv", ["u1", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"]),
        helper.make_node("Conv", ["g", "f1"], ["g1"]), helper.make_node("Relu", ["g1"], ["g1r"]),
        helper.make_node("Conv", ["g1r", "f2"], ["g2"]), helper.make_node("Sigmoid", ["g2"], ["g2s"]),
        helper.make_node("Mul", ["c3", "g2s"], ["se"]),
        helper.make_node("Resize", ["se", "", "", "sizes"], ["y"], mode="linear"),
    ]
    return model(nodes, [("x", [1, 3, 24, 20])], [("y", None)], inits)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_prebound_program_matches_the_general_path(layout, threads, monkeypatch):
    """Plan._program binds convolutions, pooling, resizing, GAP and the SE Mul to their arena views once;
    the results equal ONNX Runtime's and, bit for bit, those of every step run the general way."""
    rng = np.random.default_rng(3)
    m = image_ops_model(rng)
    monkeypatch.setattr(Plan, "arena_fill", float("nan"))
    net = fp.load_onnx(m, layout=layout)
    plan = net.plan()
    old = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        for seed in (1, 2):  # a second input: nothing bound goes stale
            x = np.random.default_rng(seed).standard_normal((1, 3, 24, 20)).astype(np.float32)
            y = net(x)
            ref = ort_run(m, {"x": x})[0]
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
            env = dict(plan.consts)
            env["x"] = x
            for step, outs in zip(plan.steps, _fixed_outs(plan)):
                plan._run_step(step, outs, plan._arenas.arena, env)
            np.testing.assert_array_equal(y, env["y"])
    finally:
        fp.set_num_threads(old)
    bound = [s.node.op.op_type for s, e in zip(plan.steps, plan._arenas.program)
             if getattr(e, "__name__", "") == "entry"]
    for op in ("MaxPool", "AveragePool", "GlobalAveragePool", "Mul"):
        assert op in bound, (op, bound)
    assert bound.count("Conv") >= 4 and bound.count("Resize") == 1  # (the last one writes the graph output)
    if layout == "NHWC":  # pooling and resizing keep the plan's layout: no NCHW copies
        assert not any(s.to_nchw for s in plan.steps)


def _fixed_outs(plan):
    """Each step's output views of this thread's arena, as Plan._program makes them."""
    from fastpoint.network.plan import _view

    arena = plan._arenas.arena
    return [None if s.offsets is None else [_view(arena, o, sh, d, t) for o, sh, d, t in
                                            zip(s.offsets, s.out_shapes, s.out_dtypes, s.nhwc)]
            for s in plan.steps]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fixed_views_and_bound_concat(layout, monkeypatch):
    """The prebound program makes a view op's view of a fixed arena array once (a no-op Pad's Identity, a
    Reshape) and binds Concat to the copies its producers did not do in place; results stay ONNX Runtime's
    on a second input (nothing stale). In NHWC the Identity keeps the buffer's NHWC order (no copy), while
    a Reshape of an NHWC buffer is a copy: it keeps running the general way."""
    rng = np.random.default_rng(8)
    inits = {"w0": _w(rng, 4, 4), "w1": _w(rng, 4, 4), "zeros": np.zeros(8, np.int64),
             "shape": np.array([1, -1], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w1"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["b", "zeros"], ["bp"]),
             helper.make_node("Concat", ["bp", "a"], ["cat"], axis=1),
             helper.make_node("Relu", ["cat"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),
             helper.make_node("Sigmoid", ["flat"], ["y"])]
    m = model(nodes, [("x", [1, 4, 6, 5])], [("y", None)], inits)
    monkeypatch.setattr(Plan, "arena_fill", float("nan"))
    net = fp.load_onnx(m, layout=layout)
    for seed in (1, 2):
        x = np.random.default_rng(seed).standard_normal((1, 4, 6, 5)).astype(np.float32)
        np.testing.assert_allclose(net(x), ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-6)
    plan = net.plan()
    bound = {s.node.op.op_type for s, e in zip(plan.steps, plan._arenas.program)
             if getattr(e, "__name__", "") == "entry"}
    assert "Concat" in bound
    assert "Identity" in bound and ("Reshape" in bound) == (layout == "NCHW")


def test_layer_table_names_the_c_loops_of_the_network_ops():
    """The kernel column (print(net), `fastpoint bench --model --profile`) says which ops run the C loops
    of csrc/ops/ rather than calling every non-convolution "numpy"."""
    from fastpoint.ops import _c

    if not _c.available():
        pytest.skip("the C extension is not built")
    net = fp.load_onnx(mixed_model(np.random.default_rng(0)))
    x = np.zeros((1, 3, 12, 10), np.float32)
    net.run({"x": x})
    kernels = {s.node.op.op_type: s.node.op.kernel(s.in_shapes) for s in net.plan().steps}
    assert kernels["Resize"] == "fp_op_resize2d_f32"
    assert kernels["MaxPool"] == "fp_op_pool2d_f32"
    assert kernels["GlobalAveragePool"] == "fp_op_gap_f32"
    assert kernels["Softmax"] == "numpy"
    table = str(net)
    assert "fp_op_resize2d_f32" in table and "fp_op_pool2d_f32" in table
