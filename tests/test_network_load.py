"""The fast load path (fastpoint/network/wire.py): initializers read straight into aligned arrays.

Every case is compared with what ``onnx.load`` + ``numpy_helper.to_array`` give; the cases the fast
path leaves to onnx (typed data fields, external data, exotic dtypes, odd framing) must still load.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastpoint as fp  # noqa: E402
from fastpoint.network import graph as G  # noqa: E402
from fastpoint.network import wire  # noqa: E402


def _model(inits, extra_nodes=()):
    """x (1, 4, 5, 5) -> Conv(w, b) -> BatchNormalization -> Relu -> y, plus ``extra_nodes``."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["y"], name="relu"), *extra_nodes]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _inits(rng, raw=True):
    arrays = {"w": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
              "b": rng.standard_normal(3).astype(np.float32),
              "g": rng.uniform(0.5, 2, 3).astype(np.float32), "beta": rng.standard_normal(3).astype(np.float32),
              "mean": rng.standard_normal(3).astype(np.float32), "var": rng.uniform(0.5, 2, 3).astype(np.float32)}
    if raw:
        return [numpy_helper.from_array(a, n) for n, a in arrays.items()]
    return [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel().tolist()) for n, a in arrays.items()]


def _reference(proto):
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def _check_same(model_bytes, proto):
    got = G.parse(*G.read(model_bytes))
    ref = _reference(proto)
    assert list(got.initializers) == list(ref)
    for name, value in ref.items():
        a = got.initializers[name]
        assert a.dtype == value.dtype and a.shape == value.shape and np.array_equal(a, value)
    return got


def test_plain_initializers_are_read_aligned_and_writable(tmp_path):
    rng = np.random.default_rng(0)
    proto = _model(_inits(rng))
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    stripped, arrays, order = G.read(path)[0], *G.read(path)[1:]
    assert order == ["w", "b", "g", "beta", "mean", "var"]
    assert len(stripped.graph.initializer) == 0 and stripped.graph.node == proto.graph.node
    for a in arrays.values():
        assert a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 64 == 0
    _check_same(path, proto)
    _check_same(proto.SerializeToString(), proto)


def test_typed_fields_odd_dtypes_and_scalars_are_left_to_onnx(tmp_path):
    rng = np.random.default_rng(1)
    inits = _inits(rng, raw=False)[:3] + _inits(rng)[3:]  # float_data for w, b, g; raw_data for the rest
    inits.append(numpy_helper.from_array(np.array(3, np.int64), "scalar"))  # 0-d
    inits.append(numpy_helper.from_array(np.zeros((0, 2), np.float32), "empty"))
    inits.append(helper.make_tensor("bf", TensorProto.BFLOAT16, [2], [1.0, 2.0]))  # not a native dtype
    inits.append(helper.make_tensor("s", TensorProto.STRING, [1], [b"a"]))
    proto = _model(inits)
    got = G.read(proto.SerializeToString())
    assert got[2].count("") == 5  # w, b, g, bf, s: in the stripped model, in file order
    _check_same(proto.SerializeToString(), proto)


def test_external_data_still_loads(tmp_path):
    rng = np.random.default_rng(2)
    proto = _model(_inits(rng))
    onnx.save(proto, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    ref = onnx.load(tmp_path / "ext.onnx")
    got = G.parse(*G.read(tmp_path / "ext.onnx"))
    for name, value in _reference(ref).items():
        assert np.array_equal(got.initializers[name], value)


def test_bad_framing_falls_back_or_fails_like_onnx():
    proto = _model(_inits(np.random.default_rng(3)))
    data = proto.SerializeToString()
    assert wire.read_bytes(data[:-7]) is None  # truncated: the fast path declines
    assert wire.read_bytes(b"\x0b\x00") is None  # a group wire type
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        fp.load_onnx(data[:-7])  # and onnx reports the truncation


def test_fold_in_place_only_for_a_weight_read_by_one_conv(tmp_path):
    rng = np.random.default_rng(4)
    inits = _inits(rng)
    # a second Conv reading the same weight: its copy must not see the first Conv's folded weight
    extra = [helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 1, 1, 1], name="conv2")]
    proto = _model(inits, extra)
    proto.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 5, 5]))
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    fast = fp.load_onnx(proto.SerializeToString(), backend="numpy").run({"x": x})
    slow = fp.load_onnx(proto, backend="numpy").run({"x": x})
    w = numpy_helper.to_array(proto.graph.initializer[0])
    z = fp.conv2d(x, w, padding=1, backend="numpy")
    np.testing.assert_array_equal(fast["z"], z)
    np.testing.assert_array_equal(fast["y"], slow["y"])


@pytest.mark.parametrize("source", ["path", "bytes", "proto"])
def test_same_results_whatever_the_source(tmp_path, source):
    rng = np.random.default_rng(5)
    proto = _model(_inits(rng))
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    model = {"path": path, "bytes": path.read_bytes(), "proto": proto}[source]
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    ref = fp.load_onnx(proto, backend="numpy")(x)
    np.testing.assert_array_equal(fp.load_onnx(model, backend="numpy")(x), ref)
