"""Convolution weights packed straight from the model file (graph.read_deferred, ops_conv.LoadSource).

On the C backend, a model with fixed input shapes keeps no copy of its convolution weights: each is
read at load into a reused scratch buffer, folded there and packed, and the packed form is its only
copy. These tests check that the results are bit for bit those of a load that keeps the weights, that
the weights derived back from a packing are the weights, and that nothing reads the file after the load.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastpoint as fp  # noqa: E402
from fastpoint.network import wire  # noqa: E402
from fastpoint.network.ops_conv import weights_from_packed  # noqa: E402

from .onnx_graphs import bn_node, bn_params  # noqa: E402

needs_c = pytest.mark.skipif("c" not in fp.backends(), reason="the C backend is not built")


def _model(rng, shape=(1, 8, 9, 9), dtype=np.float32):
    """Conv 3x3 + BN + Relu, a depthwise 3x3 s2 (pads 1), a 1x1 + BN, a 1-d-free tail: fixed input shape."""
    c = shape[1]
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inits = {"w1": rng.standard_normal((16, c, 3, 3)), "b1": rng.standard_normal(16),
             "w2": rng.standard_normal((16, 1, 3, 3)), "w3": rng.standard_normal((13, 16, 1, 1))}
    inits = {k: v.astype(dtype) for k, v in inits.items()}
    inits.update({k: v.astype(dtype) for k, v in {**bn_params(rng, 16, "bn1"), **bn_params(rng, 13, "bn3")}.items()})
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), bn_node("c1", "n1", "bn1"),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=16),
             helper.make_node("Conv", ["c2", "w3"], ["c3"]), bn_node("c3", "y", "bn3")]
    oh = (shape[2] - 1) // 2 + 1
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", t, list(shape))],
                          [helper.make_tensor_value_info("y", t, [shape[0], 13, oh, oh])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _saved(tmp_path, seed: int, dtype=np.float32):
    """(rng, the model, its file, an input): :func:`_model` saved to ``tmp_path``."""
    rng = np.random.default_rng(seed)
    proto = _model(rng, dtype=dtype)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    return rng, proto, path, rng.standard_normal((1, 8, 9, 9)).astype(dtype)


def _convs(net):
    return [n.op for n in net._graph.nodes if n.op.op_type == "Conv"]


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_from_the_file_bit_for_bit(tmp_path, dtype):
    rng, proto, path, x = _saved(tmp_path, 1, dtype)
    net = fp.load_onnx(path, backend="c")
    # the layers the load-time plan binds are packed at load, from the file; a convolution not bound to
    # the arena (the last one writes the graph output; a float64 graph input is not staged) is not packed
    # at load: its weights were read into an array of its own
    stand_ins = [isinstance(op.weight, wire.StandIn) for op in _convs(net)]
    assert stand_ins[1] and not stand_ins[2] and (stand_ins[0] or dtype == np.float64)
    assert all(op.source is None and (not s or all(layer._packed for layer in op._layers.values()))
               for op, s in zip(_convs(net), stand_ins))
    kept = fp.load_onnx(proto, backend="c")  # a ModelProto: its weights are arrays, kept
    assert not any(isinstance(op.weight, wire.StandIn) for op in _convs(kept))
    y = net(x)
    assert np.array_equal(y, kept(x))
    # the weights derived back from the packing are the (folded) weights, bit for bit
    for op, ref in zip(_convs(net), _convs(kept)):
        assert np.array_equal(op.weight_values().view(np.uint8), ref.weight.view(np.uint8))
        assert not isinstance(op.weight, wire.StandIn)
    assert np.array_equal(net(x), y)


@needs_c
def test_the_file_is_never_read_after_the_load(tmp_path):
    rng, proto, path, x = _saved(tmp_path, 2)
    net = fp.load_onnx(path, backend="c")
    y = net(x)
    # the file changes (other weights, same framing), then is cut short: the network does not notice
    for t in proto.graph.initializer:
        t.raw_data = np.full(numpy_helper.to_array(t).shape, 7, np.float32).tobytes()
    onnx.save(proto, path)
    with open(path, "r+b") as f:
        f.truncate(100)
    assert np.array_equal(net(x), y)
    str(net)  # the layer table (shapes, kernel names) needs no weight values
    dw = _convs(net)[1]  # the depthwise layer (its weights a stand-in, packed at load)
    assert isinstance(dw.weight, wire.StandIn)
    ref = _convs(fp.load_onnx(_model(np.random.default_rng(2)), backend="c"))[1]  # the same weights, kept
    # another layer of the node (NCHW): packed again from the weights derived from the packing
    layer = dw._node_layer(dw.weight, dw.bias, [1, 1], [2, 2], [1, 1], "NCHW", True, {})
    xd = rng.standard_normal((1, 16, 9, 9)).astype(np.float32)
    want = fp.Conv2d(ref.weight, ref.bias, 2, 1, 1, 16, backend="c")(xd)
    assert np.array_equal(layer(xd), want)
    # a pickle carries the weights (here derived already); unpickled, it packs again
    again = pickle.loads(pickle.dumps(dw))
    assert not isinstance(again.weight, wire.StandIn) and np.array_equal(again.weight, ref.weight)
    assert np.array_equal(again._layers[((1, 1), "NCHW", True)](xd), want)


@needs_c
def test_what_is_read_as_before():
    rng = np.random.default_rng(3)
    proto = _model(rng)
    free = onnx.ModelProto()
    free.CopyFrom(proto)
    free.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"  # a free dimension: no plan at load
    data = free.SerializeToString()
    net = fp.load_onnx(data, backend="c")
    assert not any(isinstance(op.weight, wire.StandIn) for op in _convs(net))
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    assert np.array_equal(net(x), fp.load_onnx(proto, backend="c")(x))
    # the NumPy backend packs nothing: the weights are read and kept
    assert not any(isinstance(op.weight, wire.StandIn) for op in _convs(fp.load_onnx(data, backend="numpy")))
    # bytes take the deferred path as a file does
    assert any(isinstance(op.weight, wire.StandIn) for op in _convs(fp.load_onnx(proto.SerializeToString(),
                                                                                  backend="c")))


@needs_c
def test_winograd_layers_keep_their_weights(tmp_path):
    rng = np.random.default_rng(4)
    proto = _model(rng, shape=(1, 32, 12, 12))
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    x = rng.standard_normal((1, 32, 12, 12)).astype(np.float32)
    net = fp.load_onnx(path, backend="c", algorithm="winograd")
    wino = [op for op in _convs(net) for layer in op._layers.values() if layer._layer.algorithm == "winograd"]
    if not wino:
        pytest.skip("no Winograd layer on this machine")
    assert not any(isinstance(op.weight, wire.StandIn) for op in wino)  # transformed: not derivable, so read
    assert np.array_equal(net(x), fp.load_onnx(proto, backend="c", algorithm="winograd")(x))


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    dict(w=(16, 8, 1, 1), layout="NHWC"), dict(w=(17, 8, 1, 1), layout="NCHW"), dict(w=(5, 3, 3, 3), padding=1),
    dict(w=(24, 1, 3, 3), groups=24, padding=1, layout="NHWC"), dict(w=(24, 1, 5, 5), groups=24, padding=2),
    dict(w=(12, 4, 3, 3), groups=3, stride=2, padding=1), dict(w=(33, 16, 3, 3), dilation=2, padding=2,
                                                               layout="NHWC"),
    dict(w=(8, 3, 7, 7), stride=2, padding=3), dict(w=(40, 40, 3, 3), padding=1, layout="NHWC")])
def test_weights_from_packed_are_the_weights(dtype, case):
    rng = np.random.default_rng(5)
    w = rng.standard_normal(case["w"]).astype(dtype)
    w.reshape(-1)[:4] = [np.nan, np.inf, -0.0, -np.inf]  # odd values move as bytes
    kw = {k: v for k, v in case.items() if k != "w"}
    layout = kw.pop("layout", "NCHW")
    layer = fp.Conv2d(w, None, layout=layout, backend="c", **kw)
    cin = w.shape[1] * kw.get("groups", 1)
    x = rng.standard_normal((1, 11, 11, cin) if layout == "NHWC" else (1, cin, 11, 11)).astype(dtype)
    layer(x)
    spec, packed, _, _ = layer._packed[("c", np.dtype(dtype))]
    if spec.algorithm == "winograd":
        pytest.skip("a Winograd layer")
    got = weights_from_packed(spec, packed, w.shape, dtype)
    assert np.array_equal(got.view(np.uint8), w.view(np.uint8))


def test_a_stand_in_pickles_small_and_reads_as_nan():
    s = wire.stand_in(np.float32, (64, 32, 3, 3))
    assert s.shape == (64, 32, 3, 3) and s.nbytes == 64 * 32 * 9 * 4 and not s.flags.writeable
    back = pickle.loads(pickle.dumps(s))
    assert isinstance(back, wire.StandIn) and back.shape == s.shape and len(pickle.dumps(s)) < 300
    assert np.isnan(s).all()


@needs_c
def test_the_first_run_takes_the_program_made_at_load_in_any_thread(tmp_path):
    import threading

    rng, proto, path, x = _saved(tmp_path, 6)
    want = fp.load_onnx(proto, backend="c")(x)
    net = fp.load_onnx(path, backend="c")
    plan, program, arena = net._spare
    got = {}
    t = threading.Thread(target=lambda: got.update(y=net(x)))
    t.start()
    t.join()
    assert net._spare is None and np.array_equal(got["y"], want)  # that thread ran the load's program
    assert np.array_equal(net(x), want)  # this one makes its own
    assert plan._arenas.arena is not arena
