"""The fast load path (fastpoint/network/wire.py): initializers read straight into aligned arrays.

Every case is compared with what ``onnx.load`` + ``numpy_helper.to_array`` give; the cases the fast
path leaves to onnx (typed data fields, external data, exotic dtypes, odd framing) must still load.
"""

from __future__ import annotations

import os

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
    views = list(arrays.values())  # slices of one block: none may overlap another (the fold writes in place)
    assert not any(np.may_share_memory(a, b) for i, a in enumerate(views) for b in views[i + 1:])
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


@pytest.mark.parametrize("iov_max", [2, 3, 1024])
def test_payloads_read_in_runs_of_one_preadv(tmp_path, monkeypatch, iov_max):
    """Payloads are read a run per preadv: a gap longer than GAP (a tensor left to onnx between them), the
    iovec limit and empty tensors each end or skip a run; every array is still exactly onnx's."""
    rng = np.random.default_rng(7)
    monkeypatch.setattr(wire, "_IOV_MAX", iov_max)
    calls = []
    real = os.preadv
    monkeypatch.setattr(wire.os, "preadv", lambda fd, bufs, pos: calls.append(len(bufs)) or real(fd, bufs, pos))
    inits = _inits(rng)
    typed = rng.standard_normal(2 * wire._Reader.GAP).astype(np.float32)  # float_data: a long gap for the fast path
    inits.insert(2, helper.make_tensor("typed", TensorProto.FLOAT, typed.shape, typed.tolist()))
    inits.insert(4, numpy_helper.from_array(np.zeros((0, 3), np.float32), "empty"))
    inits += [numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), f"t{k}") for k in range(1, 9)]
    proto = _model(inits)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    got = _check_same(path, proto)
    assert got.initializers["typed"].shape == typed.shape
    assert max(calls) <= iov_max and (iov_max < 1024 or len(calls) == 2)  # before and after the typed tensor


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 3, 3, 3), (13, 5), (1, 1, 1, 1), (5, 0, 3, 3), (0, 4, 1, 1), (6,)])
@pytest.mark.parametrize("in_place", [True, False])
def test_fold_weight_is_numpys_float64_product_bit_for_bit(dtype, shape, in_place):
    """graph.fold_weight (the C pass where the extension has it) against NumPy's float64 multiply rounded once:
    NaN, +-Inf, -0.0, subnormal weights and products, products that overflow or round to a subnormal."""
    if G._fold_lib() is None:
        pytest.skip("the C extension (with fp_fold_scale_*) is not built")
    rng = np.random.default_rng(11)
    w = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
    flat = w.reshape(-1)
    tiny, big = np.finfo(dtype).tiny, np.finfo(dtype).max
    for i, v in enumerate([np.nan, np.inf, -np.inf, -0.0, tiny / 3, -tiny, big, tiny * 2][:flat.size]):
        flat[(i * 7) % max(flat.size, 1)] = v
    k = rng.uniform(0.3, 3.0, shape[0]) if shape[0] else np.zeros(0)
    if k.size > 2:
        k[1], k[2] = 1e-300 if dtype == np.float64 else 1e-40, 7.0  # subnormal products; an overflow of big
    ref = np.empty_like(w)
    np.multiply(w, k.reshape((-1,) + (1,) * (w.ndim - 1)), out=ref, dtype=np.float64, casting="unsafe")
    src = w.copy()
    out = G.fold_weight(src, k, src if in_place else np.empty_like(w))
    view = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(out.view(view), ref.view(view))
    if not in_place:
        np.testing.assert_array_equal(src.view(view), w.view(view))  # (the source untouched)
    # a strided view takes NumPy's path: the same bits
    wt = np.asfortranarray(w)
    np.testing.assert_array_equal(G.fold_weight(wt, k, np.empty_like(w)).view(view), ref.view(view))


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


@pytest.mark.parametrize("reserve", [0, 3 << 20])
def test_pack_blocks_give_aligned_disjoint_slices(reserve):
    from fastpoint.network.ops_conv import PackBlocks

    blocks = PackBlocks(reserve)  # a reserve of 3 MiB: the first three 1 MiB takes fill it, the fourth spills
    sizes = [1 << 20, 1 << 20, 1, 63, (1 << 20) - 5, 1 << 20, 64, 65, 4096, PackBlocks.BLOCK // 3,
             PackBlocks.BLOCK // 2, PackBlocks.BLOCK, 7]
    got = [blocks.take(n) for n in sizes]
    for n, buf in zip(sizes, got):
        assert buf.nbytes == n and buf.dtype == np.uint8 and buf.ctypes.data % 64 == 0 and buf.flags.writeable
    for i, a in enumerate(got):
        a[...] = i  # each slice keeps what was written into it
    for i, a in enumerate(got):
        assert (a == i).all()
        assert not any(np.may_share_memory(a, b) for b in got[i + 1:])


def _conv_stack(rng, c=8):
    """x (1, c, H, W) -> 3x3 Conv + BN + Relu -> 1x1 Conv -> 3x3 Conv (dilation 2) + Add(x) -> y; free H, W."""
    def t(name, a):
        return numpy_helper.from_array(a.astype(np.float32), name)

    inits = [t("w1", rng.standard_normal((c, c, 3, 3))), t("b1", rng.standard_normal(c)),
             t("g", rng.uniform(0.5, 2, c)), t("beta", rng.standard_normal(c)), t("mean", rng.standard_normal(c)),
             t("var", rng.uniform(0.5, 2, c)), t("w2", rng.standard_normal((2 * c, c, 1, 1))),
             t("w3", rng.standard_normal((c, 2 * c, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n1"], name="bn"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             helper.make_node("Conv", ["c2", "w3"], ["c3"], pads=[2, 2, 2, 2], dilations=[2, 2], name="conv3"),
             helper.make_node("Add", ["c3", "x"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, "H", "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, "H", "W"])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_each_layer_packs_once_into_the_networks_blocks(monkeypatch, layout):
    """One packing per convolution and layout, however many calls and input shapes, into the network's
    blocks; the results are those of layers packed into arrays of their own."""
    if "c" not in fp.backends():
        pytest.skip("the C extension is not built")
    from fastpoint.backends.c import CBackend

    packs = []
    real = CBackend.prepack

    def counting(self, layer, weight, **kw):
        packed = real(self, layer, weight, **kw)
        packs.append((layer.cout, layer.cin, layer.kh, layer.layout, packed.buffer, "alloc" in kw))
        return packed

    monkeypatch.setattr(CBackend, "prepack", counting)
    rng = np.random.default_rng(6)
    data = _conv_stack(rng).SerializeToString()
    net = fp.load_onnx(data, backend="c", layout=layout)
    xs = [rng.integers(-3, 4, (1, 8) + hw).astype(np.float32) for hw in [(9, 11), (9, 11), (16, 5), (9, 11)]]
    ys = [net(x) for x in xs]
    assert len(packs) == 3, packs  # three convolutions, one layout: each packed once for every shape
    assert all(from_blocks for *_, from_blocks in packs)
    buffers = [p[4] for p in packs]
    assert not any(np.may_share_memory(a, b) for i, a in enumerate(buffers) for b in buffers[i + 1:])

    plain = fp.load_onnx(data, backend="c", layout=layout)
    for node in plain._graph.nodes:
        if hasattr(node.op, "pack_blocks"):
            node.op.pack_blocks = None  # each layer packs into an array of its own, as a fp.Conv2d does
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(plain(x), y)
    assert len(packs) == 6 and not any(from_blocks for *_, from_blocks in packs[3:])
    ref = fp.load_onnx(data, backend="numpy", layout=layout)
    for x, y in zip(xs, ys):
        np.testing.assert_allclose(y, ref(x), rtol=1e-4, atol=1e-3)
    cloudpickle = pytest.importorskip("cloudpickle")  # how dask sends a network's ops to its workers
    from fastpoint.network.ops_conv import PackBlocks

    ops = cloudpickle.loads(cloudpickle.dumps([n.op for n in net._graph.nodes if hasattr(n.op, "pack_blocks")]))
    assert len(ops) == 3 and all(isinstance(op.pack_blocks, PackBlocks) for op in ops)
    assert ops[0].pack_blocks.take(1 << 20).nbytes == 1 << 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("populate", [False, True])
def test_fresh_bytes_are_private_to_a_forked_child(populate):
    """A child forked after the load (multiprocessing's default on Linux) that packs into the network's
    blocks must not write into the parent's: the blocks are private mappings, copied on write."""
    from fastpoint.network.pages import fresh_bytes

    buf = fresh_bytes(3 << 20, populate=populate)
    buf[...] = 1
    pid = os.fork()
    if pid == 0:  # the child: write, then leave at once (no test teardown in the child)
        buf[...] = 2
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert (buf == 1).all()


@pytest.mark.parametrize("populate", [False, True])
@pytest.mark.parametrize("nbytes", [0, 100, (1 << 20) + 3, 3 << 20])
def test_fresh_bytes_are_writable_aligned_and_pickle(nbytes, populate):
    import pickle

    from fastpoint.network.pages import fresh_bytes

    buf = fresh_bytes(nbytes, populate=populate)
    assert buf.nbytes == nbytes and buf.dtype == np.uint8 and buf.flags.writeable and buf.flags.c_contiguous
    assert nbytes == 0 or buf.ctypes.data % 64 == 0  # (an empty slice's address is NumPy's choice)
    buf[...] = 7
    f = buf.view(np.float32) if nbytes % 4 == 0 else buf
    assert np.array_equal(pickle.loads(pickle.dumps(f)), f)
