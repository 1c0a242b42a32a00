"""fastpoint.dask.run: whole ONNX networks on dask arrays, tiled with a halo, equal to the in-memory run."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastpoint as fp  # noqa: E402
import fastpoint.dask as fpd  # noqa: E402


def model(nodes, inits, dtype=np.float64, cin=3, opset=17):
    """A graph with input x [N, cin, H, W] (free N, H, W) and output y."""
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "tiled",
        [helper.make_tensor_value_info("x", elem, ["N", cin, "H", "W"])],
        [helper.make_tensor_value_info("y", elem, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def weights(rng, cout, cin, k, dtype, prefix):
    """Small integers, so float64 sums are exact in any order (bit equality is a fair test)."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return {f"{prefix}_w": rng.integers(-2, 3, (cout, cin, kh, kw)).astype(dtype),
            f"{prefix}_b": rng.integers(-3, 4, cout).astype(dtype)}


def conv(x, y, prefix, **attrs):
    return helper.make_node("Conv", [x, f"{prefix}_w", f"{prefix}_b"], [y], **attrs)


def bn(x, y, prefix, rng, c, dtype, inits):
    """A BatchNormalization the loader folds into the conv before it: its bias is what a border tests."""
    inits.update({f"{prefix}_g": np.full(c, 0.5, dtype), f"{prefix}_bb": rng.integers(1, 4, c).astype(dtype),
                  f"{prefix}_m": rng.integers(-2, 3, c).astype(dtype), f"{prefix}_v": np.full(c, 4.0 - 1e-5, dtype)})
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in ("g", "bb", "m", "v")], [y],
                            epsilon=1e-5)


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def image(shape, dtype, rng):
    return rng.integers(-3, 4, shape).astype(dtype)


def check(m, x, chunks, exact=True, scheduler="sync", crop=False):
    net = fp.load_onnx(m)
    ref = net(x)
    y = fpd.run(net, da.from_array(x, chunks=chunks), crop=crop)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    got = y.compute(scheduler=scheduler) if scheduler else y.compute()
    if exact:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    return net, y


def strided_graph(dtype, rng):
    """Conv stride 2 with asymmetric pads, a dilated conv, BN-folded biases and relu."""
    inits = {**weights(rng, 4, 3, 3, dtype, "c1"), **weights(rng, 5, 4, 3, dtype, "c2"),
             **weights(rng, 2, 5, (1, 3), dtype, "c3")}
    nodes = [conv("x", "a", "c1", strides=[2, 2], pads=[1, 0, 2, 1]), bn("a", "b", "bn1", rng, 4, dtype, inits),
             helper.make_node("Relu", ["b"], ["c"]),
             conv("c", "d", "c2", dilations=[2, 2], pads=[2, 2, 2, 2]), bn("d", "e", "bn2", rng, 5, dtype, inits),
             conv("e", "y", "c3", pads=[0, 1, 0, 1])]
    return model(nodes, inits, dtype)


def unet_graph(dtype, rng, mode="nearest", up="resize"):
    """Encoder conv + BN, MaxPool (ceil_mode), conv, upsampling (Resize nearest/linear or ConvTranspose),
    Concat skip connection, conv head."""
    inits = {**weights(rng, 4, 3, 3, dtype, "e0"), **weights(rng, 6, 4, 3, dtype, "e1"),
             **weights(rng, 3, 10, 3, dtype, "d0")}
    nodes = [conv("x", "a", "e0", pads=[1, 1, 1, 1]), bn("a", "s", "bn0", rng, 4, dtype, inits),
             helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0],
                              ceil_mode=1),
             conv("p", "q", "e1", pads=[1, 1, 1, 1]), helper.make_node("LeakyRelu", ["q"], ["r"], alpha=0.5)]
    if up == "resize":
        nodes += [const("scales", np.array([1, 1, 2, 2], np.float32)),
                  helper.make_node("Resize", ["r", "", "scales"], ["u"], mode=mode,
                                   coordinate_transformation_mode="half_pixel" if mode == "linear" else "asymmetric",
                                   nearest_mode="floor")]
    else:
        inits["t_w"] = rng.integers(-2, 3, (6, 6, 2, 2)).astype(dtype)
        nodes += [helper.make_node("ConvTranspose", ["r", "t_w"], ["u"], strides=[2, 2], kernel_shape=[2, 2])]
    nodes += [helper.make_node("Concat", ["s", "u"], ["c"], axis=1), conv("c", "y", "d0", pads=[1, 1, 1, 1])]
    return model(nodes, inits, dtype)


@pytest.mark.parametrize("chunks", [(1, 3, 13, 17), (1, 3, 29, 11), (1, 3, 7, 64)])
@pytest.mark.parametrize("crop", [False, True])
def test_strided_dilated_asymmetric_bn(chunks, crop):
    rng = np.random.default_rng(0)
    check(strided_graph(np.float64, rng), image((1, 3, 61, 70), np.float64, rng), chunks, crop=crop)


@pytest.mark.parametrize("crop", [True, False])
@pytest.mark.parametrize("mode,up", [("nearest", "resize"), ("linear", "resize"), (None, "convtranspose")])
def test_unet_skip_pool_upsample(mode, up, crop):
    rng = np.random.default_rng(1)
    m = unet_graph(np.float64, rng, mode, up)
    net, _ = check(m, image((2, 3, 46, 58), np.float64, rng), (1, 3, 9, 23), crop=crop)
    t = fpd.tiling(net, (2, 3, 46, 58), ((1, 1), (3,), (9,) * 5 + (1,), (23, 23, 12)))
    assert t.alignment == 2 and t.halo[0][0] > 0
    assert len({s[2:] for s in t.tile_shapes}) <= 4


def test_crops_compute_less_than_the_tile():
    """With crops every step of an interior chunk's tile computes a window of its input, the late steps far
    less than the tile; a graph the crops cannot pass (an explicit Pad) runs whole tiles."""
    from fastpoint.network import tiled

    rng = np.random.default_rng(1)
    net = fp.load_onnx(unet_graph(np.float64, rng, None, "convtranspose"))
    shape = (1, 3, 40, 40)
    plan = net.plan({"x": (shape, np.float64)})
    c = tiled._Crops(plan, "y", ((12, 27), (12, 27)), 2)
    assert c.ok and c.windows
    last = [st for st in plan.steps if id(st) in c.windows][-1]
    (a0, a1), (b0, b1) = c.windows[id(last)]
    assert (a1 - a0 + 1) * (b1 - b0 + 1) < 0.5 * 40 * 40
    pad = model([const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
                 helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")], {})
    pnet = fp.load_onnx(pad)
    assert not tiled._Crops(pnet.plan({"x": (shape, np.float64)}), "y", ((5, 9), (5, 9)), 1).ok


def test_n_chunks_and_float32():
    rng = np.random.default_rng(2)
    m = unet_graph(np.float32, rng, "linear")
    x = rng.standard_normal((3, 3, 40, 36)).astype(np.float32)
    check(m, x, (2, 3, 15, 11), exact=False)


def test_pad_reflect_and_avgpool():
    rng = np.random.default_rng(3)
    inits = weights(rng, 4, 3, 3, np.float64, "c1")
    nodes = [const("pads", np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64)),
             helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"), conv("p", "a", "c1"),
             helper.make_node("AveragePool", ["a"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              count_include_pad=0, ceil_mode=1)]
    rng2 = np.random.default_rng(4)
    x = image((1, 3, 33, 41), np.float64, rng2)
    net = fp.load_onnx(model(nodes, inits))
    ref = net(x)
    got = fpd.run(net, da.from_array(x, chunks=(1, 3, 10, 9))).compute(scheduler="sync")
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)  # the divisors (1/9, 1/6, 1/4) round alike


@pytest.mark.parametrize("op,attrs,extra", [
    ("GlobalAveragePool", {}, []),
    ("Softmax", {"axis": -1}, []),
    ("ReduceMean", {"axes": [2, 3]}, []),
    ("Flatten", {"axis": 1}, []),
])
def test_global_ops_refused_naming_the_node(op, attrs, extra):
    rng = np.random.default_rng(5)
    inits = weights(rng, 4, 3, 3, np.float64, "c1")
    nodes = [conv("x", "a", "c1", pads=[1, 1, 1, 1]), helper.make_node(op, ["a"], ["y"], name="the_global_op",
                                                                       **attrs)]
    net = fp.load_onnx(model(nodes, inits))
    x = da.zeros((1, 3, 32, 32), chunks=(1, 3, 16, 16), dtype=np.float64)
    with pytest.raises(fpd.TilingError, match="the_global_op"):
        fpd.run(net, x)


def test_softmax_over_channels_is_local():
    rng = np.random.default_rng(6)
    inits = weights(rng, 4, 3, 3, np.float64, "c1")
    nodes = [conv("x", "a", "c1", pads=[1, 1, 1, 1]), helper.make_node("Softmax", ["a"], ["y"], axis=1)]
    x = rng.standard_normal((1, 3, 30, 26))
    check(model(nodes, inits), x, (1, 3, 7, 9), exact=False)


def test_fixed_resize_sizes_refused():
    """A Resize to a fixed size gives another scale on a tile than on the image: refused, naming it."""
    rng = np.random.default_rng(7)
    inits = weights(rng, 2, 3, 3, np.float64, "c1")
    nodes = [conv("x", "a", "c1", pads=[1, 1, 1, 1]), const("sizes", np.array([1, 2, 64, 64], np.int64)),
             helper.make_node("Resize", ["a", "", "", "sizes"], ["y"], name="fixed_resize", mode="nearest")]
    net = fp.load_onnx(model(nodes, inits))
    with pytest.raises(fpd.TilingError, match="fixed_resize"):
        fpd.run(net, da.zeros((1, 3, 32, 32), chunks=(1, 3, 8, 8), dtype=np.float64))


def test_local_cluster_exact():
    """CI: the network ships to worker processes of a LocalCluster and the result is the in-memory one."""
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(8)
    m = unet_graph(np.float64, rng, "nearest", "convtranspose")
    x = image((1, 3, 50, 44), np.float64, rng)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl):
        net, y = check(m, x, (1, 3, 13, 15), scheduler=None)
    keys = [k for k in dict(y.__dask_graph__()) if isinstance(k, str) and k.startswith("fastpoint-network-")]
    assert len(keys) == 1  # one key holds the network; every tile task refers to it


def test_halo_one_pixel_short_is_wrong(monkeypatch):
    """The halo is not generous by accident: shrink the reach by one pixel and tiles give wrong pixels."""
    from fastpoint.network import tiled

    rng = np.random.default_rng(9)
    m = strided_graph(np.float64, rng)
    x = image((1, 3, 61, 70), np.float64, rng)
    net = fp.load_onnx(m)
    ref = net(x)
    real = tiled._axis_tiles

    def short(length, bounds, r, p):
        return real(length, bounds, tiled.Reach(r.step, r.lo + 1, r.hi - 1), p)

    monkeypatch.setattr(tiled, "_axis_tiles", short)
    got = fpd.run(net, da.from_array(x, chunks=(1, 3, 13, 17))).compute(scheduler="sync")
    assert not np.array_equal(got, ref)


def segment_case(tmp_path, seed, make_image, chunks):
    """A small U-Net saved as m.onnx and an image written as in.zarr, for the segment command."""
    rng = np.random.default_rng(seed)
    m = unet_graph(np.float32, rng, "nearest", "convtranspose")
    onnx.save(m, str(tmp_path / "m.onnx"))
    img = make_image(rng)
    da.to_zarr(da.from_array(img, chunks=chunks), str(tmp_path / "in.zarr"))
    return m, img


def test_segment_command_raw(tmp_path):
    """``fastpoint segment ... --raw`` on a (C, H, W) float zarr: the network's output, written to zarr."""
    pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    import json

    from fastpoint.cli import main

    m, img = segment_case(tmp_path, 12, lambda rng: rng.standard_normal((3, 52, 60)).astype(np.float32), (3, 20, 20))
    assert main(["segment", str(tmp_path / "m.onnx"), str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"),
                 "--raw", "--workers", "1", "--chunk", "24", "--no-progress", "--layout", "CHW",
                 "--json", str(tmp_path / "r.json")]) == 0
    got = zarr.open(str(tmp_path / "out.zarr"), mode="r")[...]
    ref = fp.load_onnx(m)(img[None])[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["halo"][0][0] > 0 and report["peak_rss_mib"][0] > 0


def test_upsampling_output():
    """An output at twice the input's resolution (step 1/2): output chunks are twice the input chunks."""
    rng = np.random.default_rng(13)
    inits = weights(rng, 2, 3, 3, np.float64, "c1")
    nodes = [conv("x", "a", "c1", pads=[1, 1, 1, 1]), const("scales", np.array([1, 1, 2, 2], np.float32)),
             helper.make_node("Resize", ["a", "", "scales"], ["y"], mode="linear",
                              coordinate_transformation_mode="half_pixel")]
    _, y = check(model(nodes, inits), image((1, 3, 27, 31), np.float64, rng), (1, 3, 10, 7))
    assert y.chunks[2] == (20, 20, 14) and y.chunks[3] == (14, 14, 14, 14, 6)


def test_task_memory_and_chunk_choice():
    """The task memory is measured in fresh processes; the chosen chunk fits the budget and is the smallest
    whose predicted work is within WORK_TOLERANCE of the least fitting work; no fit at all is an error."""
    from fastpoint.network import segment as seg
    from fastpoint.network import tiled

    rng = np.random.default_rng(14)
    net = fp.load_onnx(unet_graph(np.float32, rng, "nearest", "convtranspose"))
    mem = tiled.task_memory(net, np.float32, sizes=(64, 128))
    assert mem.per_pixel >= 0 and mem.fixed >= 0 and [s for s, _, _ in mem.samples] == [64, 128]
    assert all(not op._layers for op in (n.op for n in net._graph.nodes) if hasattr(op, "_layers"))  # not packed
    shape = (1, 3, 1000, 700)
    arena = net.plan({"x": ((1, 3, 300, 300), np.float32)}).arena_bytes
    assert mem.bytes(net, (1, 3, 300, 300)) >= arena
    limit = 64 << 20
    c = seg.choose_chunk(net, shape, np.float32, limit, 8 << 20, mem)
    assert c["worker_bytes"] <= c["budget_bytes"] < limit
    assert c["work"] >= 1.0
    with pytest.raises(MemoryError, match="memory-limit"):
        seg.choose_chunk(net, shape, np.float32, 1 << 20, 8 << 20, mem)
    tuned = seg.choose_chunk(net, (1, 3, 600, 520), np.float32, limit, 8 << 20, mem, tune=True)
    assert tuned["timed"] and all(e["mpixel_per_cpu_s"] > 0 for e in tuned["timed"])
    assert tuned["mpixel_per_cpu_s"] == max(e["mpixel_per_cpu_s"] for e in tuned["timed"])
    assert tuned["worker_bytes"] <= tuned["budget_bytes"]


def _even(c, n):
    return tuple(min(c, n - i) for i in range(0, n, c))


def test_chunk_choice_rule(monkeypatch):
    """Among the fitting chunks the smallest whose work is within WORK_TOLERANCE of the least wins, and a
    chunk whose task would pass the budget is never chosen, whatever its work."""
    from fastpoint.network import segment as seg
    from fastpoint.network import tiled

    rng = np.random.default_rng(14)
    net = fp.load_onnx(unet_graph(np.float32, rng, "nearest", "convtranspose"))
    shape = (1, 3, 2000, 2000)
    mem = tiled.TaskMemory(100.0, 1 << 20)
    works = {128: 1.5, 256: 1.2, 384: 1.1, 512: 1.04, 640: 1.0, 768: 0.5}
    monkeypatch.setattr(tiled, "tile_work", lambda net, t, shape, chunks, dtype=None, crop=False: works.get(
        chunks[2][0], 2.0))
    budget_of = {c: (8 << 20) + max(mem.bytes(net, s) for s in fpd.tiling(
        net, shape, ((1,), (3,), _even(c, 2000), _even(c, 2000))).tile_shapes) for c in works}
    limit = int((budget_of[640] + budget_of[768]) / 2 / (0.8 - seg.SAFETY))  # 640 fits, 768 does not
    c = seg.choose_chunk(net, shape, np.float32, limit, 8 << 20, mem)
    assert c["chunk"] == 512 and c["work"] == 1.04  # 640 does less work, but within the tolerance
    works[512] = 1.06
    assert seg.choose_chunk(net, shape, np.float32, limit, 8 << 20, mem)["chunk"] == 640


def test_taller_chunk_rule(monkeypatch):
    """After the square chunk, a chunk k times as tall (as wide) wins when it cuts the work by TALL_GAIN,
    fits the budget and leaves every task slot TALL_TASKS_PER_SLOT (2) tasks; otherwise the square (or
    shorter) one stays."""
    from fastpoint.network import segment as seg
    from fastpoint.network import tiled

    rng = np.random.default_rng(14)
    net = fp.load_onnx(unet_graph(np.float32, rng, "nearest", "convtranspose"))
    shape = (1, 3, 2000, 2000)
    mem = tiled.TaskMemory(100.0, 1 << 20)
    square = {128: 1.5, 256: 1.2, 384: 1.1, 512: 1.04, 640: 1.0, 768: 0.5}
    tall = {(1536, 768): 0.49, (2000, 768): 0.48}
    monkeypatch.setattr(tiled, "tile_work", lambda net, t, shape, chunks, dtype=None, crop=False: (
        square.get(chunks[2][0], 2.0) if chunks[2][0] == chunks[3][0] else tall.get((chunks[2][0], chunks[3][0]),
                                                                                       2.0)))

    def need(h, w):
        t = fpd.tiling(net, shape, ((1,), (3,), _even(h, 2000), _even(w, 2000)))
        return (8 << 20) + max(mem.bytes(net, s) for s in t.tile_shapes)

    big = int(4 * need(2000, 768) / (0.8 - seg.SAFETY))
    c = seg.choose_chunk(net, shape, np.float32, big, 8 << 20, mem, workers=2)
    assert seg.TALL_TASKS_PER_SLOT == 2
    # (2000, 768) would be 3 tasks for 2 slots: (1536, 768) is 6, the tallest with 2 a slot
    assert c["chunk"] == 768 and c["chunks_hw"] == (1536, 768) and c["work"] == 0.49
    assert seg.choose_chunk(net, shape, np.float32, big, 8 << 20, mem, workers=3)["chunks_hw"] == (1536, 768)
    # 4 workers: 6 tasks are fewer than 2 a slot, the square's 9 stay
    assert seg.choose_chunk(net, shape, np.float32, big, 8 << 20, mem, workers=4)["chunks_hw"] == (768, 768)
    tall[(1536, 768)] = 0.499  # less than TALL_GAIN below the square's work
    tall[(2000, 768)] = 0.496
    assert seg.choose_chunk(net, shape, np.float32, big, 8 << 20, mem, workers=2)["chunks_hw"] == (768, 768)
    tall[(1536, 768)] = 0.49
    limit = int((need(768, 768) + need(1536, 768)) / 2 / (0.8 - seg.SAFETY))  # the square fits, the taller not
    c = seg.choose_chunk(net, shape, np.float32, limit, 8 << 20, mem, workers=2)
    assert c["chunks_hw"] == (768, 768) and c["worker_bytes"] <= c["budget_bytes"]
    assert seg.parse_chunk("2048x1024") == (2048, 1024) and seg.parse_chunk("512") == 512
    with pytest.raises(ValueError, match="HxW"):
        seg.parse_chunk("big")


def test_task_memory_predicts_a_measured_tile():
    """The memory model fitted on two small tiles predicts the resident memory a task adds on a larger one
    (measured the same way, in a fresh process) within 10 % (+ 2 MiB of page-granular noise)."""
    from fastpoint.network import tiled

    rng = np.random.default_rng(16)
    net = fp.load_onnx(unet_graph(np.float32, rng, "nearest", "convtranspose"))
    mem = tiled.task_memory(net, np.float32, sizes=(128, 256))
    measured = tiled.task_memory(net, np.float32, sizes=(512, 512)).samples[0][1]
    predicted = mem.bytes(net, (1, 3, 512, 512))
    assert abs(predicted - measured) <= 0.1 * measured + (2 << 20), (predicted, measured)
def test_segment_auto_chunk(tmp_path):
    """``fastpoint segment`` without --chunk picks one from the workers' memory limit and reports the tasks."""
    pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    from fastpoint.network.segment import segment

    m, img = segment_case(tmp_path, 15, lambda rng: rng.integers(0, 256, (90, 70, 3)).astype(np.uint8), (32, 32, 3))
    r = segment(str(tmp_path / "m.onnx"), str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), workers=1,
                memory_limit="1GiB", progress=False)
    assert r["chunk_choice"]["worker_bytes"] <= r["chunk_choice"]["budget_bytes"]
    assert r["tasks"]["tasks"] >= 1 and r["tasks"]["network_cpu_s"] > 0
    got = zarr.open(str(tmp_path / "out.zarr"), mode="r")[...]
    ref = fp.load_onnx(m)(np.ascontiguousarray(img.transpose(2, 0, 1)[None] * np.float32(1 / 255)))[0]
    np.testing.assert_array_equal(got, ref.argmax(axis=0).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("classes", [1, 2, 3, 7, 300])
def test_class_map_is_argmax(dtype, classes):
    """``segment``'s class map equals ``np.argmax(y, axis=1)``: ties to the first maximum, the first NaN over any
    number (inf included), NaN-free and all-NaN pixels; int32 beyond 256 classes; the input is left as it was."""
    from fastpoint.network.segment import class_map

    rng = np.random.default_rng(classes)
    y = rng.integers(-3, 3, (2, classes, 11, 13)).astype(dtype)  # few values: many ties
    if np.dtype(dtype).kind == "f":
        y[rng.random(y.shape) < 0.15] = np.nan
        y[0, :, 0, 0] = np.nan
        y[1, -1, 1, 1] = np.inf
        y[1, :, 2, 2] = -np.inf
    before = y.copy()
    out = np.int32 if classes > 256 else np.uint8
    got = class_map(y, out)
    assert got.dtype == out and got.shape == (2, 11, 13)
    np.testing.assert_array_equal(got, np.argmax(y, axis=1))
    np.testing.assert_array_equal(y, before)


def test_segment_cluster_config_reaches_the_workers(tmp_path, monkeypatch):
    """The LocalCluster ``segment`` starts runs its workers with ``CLUSTER_CONFIG`` (no statistical profiler,
    a slower event-loop tick) and leaves the caller's dask config as it was."""
    pytest.importorskip("distributed")
    import dask
    import distributed

    from fastpoint.network import segment as seg

    seen = {}
    real = distributed.Client.close

    def close(self, *a, **k):  # read the workers' config just before segment closes its client
        if self.status == "running":  # not again from Client.__del__, once the event loop is gone
            seen.update(self.run(lambda: {k: dask.config.get(k) for k in seg.CLUSTER_CONFIG}))
        return real(self, *a, **k)

    monkeypatch.setattr(distributed.Client, "close", close)
    segment_case(tmp_path, 18, lambda rng: rng.integers(0, 256, (40, 36, 3)).astype(np.uint8), (32, 32, 3))
    seg.segment(str(tmp_path / "m.onnx"), str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), workers=1,
                chunk=32, progress=False)
    assert seen and all(v == seg.CLUSTER_CONFIG for v in seen.values()), seen
    assert dask.config.get("distributed.worker.profile.enabled") is True


@pytest.mark.parametrize("up", ["resize", "convtranspose"])
def test_crops_bit_identical_on_real_data(up):
    """Cropped plans on float32 normal data (sums rounded in the kernels' order) equal the in-memory run bit
    for bit: every step computes its pixels from the same values with the same arithmetic, borders included,
    on chunks that are multiples neither of each other nor of the alignment."""
    rng = np.random.default_rng(17)
    m = unet_graph(np.float32, rng, "linear" if up == "resize" else None, up)
    x = rng.standard_normal((1, 3, 78, 62)).astype(np.float32)
    net = fp.load_onnx(m)
    ref = net(x)
    for chunks in [(1, 3, 19, 23), (1, 3, 30, 13)]:
        got = fpd.run(net, da.from_array(x, chunks=chunks), crop=True).compute(scheduler="sync")
        np.testing.assert_array_equal(got, ref)


def test_cropped_plans_compute_less_and_replan():
    """A cropped plan has Slice steps, less arithmetic than its tile's plan and a smaller arena; tile_work
    says the crops recompute less than whole tiles; a released plan plans again and gives the same result."""
    from fastpoint.network import tiled

    rng = np.random.default_rng(18)
    net = fp.load_onnx(unet_graph(np.float64, rng, None, "convtranspose"))
    shape = (1, 3, 40, 40)
    plan = net.plan({"x": (shape, np.float64)})
    cp = tiled.crop_plan(plan, "y", ((12, 27), (12, 27)), 2)
    assert cp is not None and any(n.op.op_type == "Slice" for n in cp.graph.nodes)
    assert cp.flops < tiled._plan_flops(plan) and cp.plan.arena_bytes <= plan.arena_bytes
    x = image(shape, np.float64, rng)
    y = cp(x)
    s0, s1 = cp.start
    np.testing.assert_array_equal(y[..., 12 - s0:28 - s0, 12 - s1:28 - s1], net(x)[..., 12:28, 12:28])
    first = cp.plan
    cp.release()
    assert cp.plan is not first
    np.testing.assert_array_equal(cp(x), y)
    image_shape = (1, 3, 200, 180)
    chunks = ((1,), (3,), (50,) * 4, (45,) * 4)
    t = fpd.tiling(net, image_shape, chunks)
    assert 1.0 <= tiled.tile_work(net, t, image_shape, chunks, crop=True) < tiled.tile_work(net, t, image_shape,
                                                                                           chunks) - 0.05


def test_array_like_source_reads_its_tiles():
    """An array-like input (here a NumPy array; a zarr array in ``fastpoint segment``): each task reads its
    tile from it, no input tasks in the graph; the result is the in-memory one; chunks are required."""
    rng = np.random.default_rng(19)
    m = unet_graph(np.float64, rng, "nearest", "convtranspose")
    x = image((2, 3, 46, 58), np.float64, rng)
    net = fp.load_onnx(m)
    y = fpd.run(net, x, chunks=(9, 23))
    assert y.chunks[2][0] == 9 and y.chunks[3][0] == 23 and y.chunks[0] == (1, 1)
    np.testing.assert_array_equal(y.compute(scheduler="sync"), net(x))
    with pytest.raises(ValueError, match="chunks is required"):
        fpd.run(net, x)
    with pytest.raises(TypeError, match="array-like"):
        fpd.run(net, [1, 2, 3])


@pytest.mark.parametrize("layout,shape", [("HWC", (21, 17, 3)), ("CHW", (3, 21, 17)), ("NCHW", (2, 3, 21, 17)),
                                          ("HW", (21, 17))])
def test_image_source_regions(layout, shape):
    """ImageSource reads a region of the stored image as NCHW of the network's dtype, as the whole image
    converted then cut would be (integers times 1/255)."""
    from fastpoint.network.segment import ImageSource

    rng = np.random.default_rng(20)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    src = ImageSource(img, layout, np.float32)
    nchw = {"HWC": lambda: img.transpose(2, 0, 1)[None], "CHW": lambda: img[None], "NCHW": lambda: img,
            "HW": lambda: img[None, None]}[layout]()
    whole = nchw.astype(np.float32) * np.float32(1 / 255)
    assert src.shape == whole.shape
    region = (slice(0, src.shape[0]), slice(None), slice(3, 15), slice(2, 11))
    got = src[region]
    assert got.flags.c_contiguous and got.dtype == np.float32
    np.testing.assert_array_equal(got, whole[region])


def test_cropped_plans_share_one_arena_per_thread():
    """The cropped plans of one tile shape (interior, edge and corner chunks) take turns on one arena per
    thread, the size of the largest cropped plan's (grown when a larger one comes, the others planned
    again), and give the in-memory pixels in any order."""
    from fastpoint.network import tiled

    rng = np.random.default_rng(21)
    net = fp.load_onnx(unet_graph(np.float64, rng, None, "convtranspose"))
    shipped = tiled._Shipped(net._graph, net.backend)
    x = image((1, 3, 40, 40), np.float64, rng)
    ref = fp.load_onnx(unet_graph(np.float64, np.random.default_rng(21), None, "convtranspose"))(x)
    boxes = [((0, 15), (0, 15)), ((12, 27), (12, 27)), ((24, 39), (0, 15)), ((12, 27), (12, 27))]
    for rounds in range(2):
        arenas = set()
        for box in boxes if rounds == 0 else boxes[::-1]:
            sl = tuple(slice(a, b + 1) for a, b in box)
            y = tiled._tile_task(shipped, x, 0.0, sl, 1, 2, True)
            np.testing.assert_array_equal(y, ref[(...,) + sl])
            cp = shipped.crop_plan(shipped.network(x.shape), x, box, 2)
            arenas.add(id(cp.plan._arenas.arena))
    assert len(arenas) == 1 and len(shipped._crops) == 3  # the second round: one arena, no growth
    sizes = [cp.plan.arena_bytes for cp in shipped._crops.values()]
    tile_plan = shipped.network(x.shape).plan({"x": (x.shape, x.dtype)})
    assert shipped._arenas.nbytes == max(sizes) <= tile_plan.arena_bytes
    assert shipped._arenas._local.buf.nbytes == max(sizes)


def test_image_source_read_bytes():
    """What a region read holds beside the tile: the region in the stored dtype and the stored chunks it
    overlaps (at most ceil((L - 1) / c) + 1 per axis, at most all of them)."""
    from fastpoint.network.segment import ImageSource

    class Stored:  # an array-like with zarr's ``chunks``
        shape, dtype, chunks = (100, 90, 3), np.dtype(np.uint8), (32, 32, 3)

    src = ImageSource(Stored(), "HWC", np.float32)
    assert src.read_bytes((1, 3, 40, 33)) == 40 * 33 * 3 + (3 * 2) * 32 * 32 * 3
    assert src.read_bytes((1, 3, 100, 90)) == 100 * 90 * 3 + (4 * 3) * 32 * 32 * 3


def _buffer_owner(a):
    """The object that owns ``a``'s memory (an arena's mmap behind its memoryview, or the base array): a view
    of ``a`` keeps it alive, so its weak reference dies only when no view of the memory is left."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base if a.base is not None else a


def test_arena_growth_and_drop_free_the_old_buffers():
    """A worker's shared arena grows as larger cropped plans come (corner, edge, interior chunk, the whole
    tile): each old buffer is freed when the new one is made, and dropping the shipped network frees the
    last, by reference counting alone (the cycle collector is off: a dask worker collects its long-lived
    objects rarely, so a buffer waiting for it is a second arena beside the new one)."""
    import gc
    import weakref

    from fastpoint.network import tiled

    rng = np.random.default_rng(22)
    net = fp.load_onnx(unet_graph(np.float64, rng, None, "convtranspose"))
    shipped = tiled._Shipped(net._graph, net.backend)
    x = image((1, 3, 160, 160), np.float64, rng)  # arenas of 0.5-2.5 MB: the small ones NumPy's, the large mmap'd
    ref = net(x)
    boxes = [((0, 63), (0, 63)), ((48, 111), (48, 111)), ((96, 159), (0, 63)), ((0, 159), (0, 159))]
    sizes = {b: shipped.crop_plan(shipped.network(x.shape), x, b, 2).plan.arena_bytes for b in boxes}
    for cp in list(shipped._crops.values()):
        cp.release()  # (planned to read their sizes, not run)
    del cp
    boxes.sort(key=sizes.get)
    assert len(set(sizes.values())) == len(boxes)
    gc.collect()
    gc.disable()
    try:
        olds = []
        for box in boxes:
            sl = tuple(slice(a, b + 1) for a, b in box)
            np.testing.assert_array_equal(tiled._tile_task(shipped, x, 0.0, sl, 1, 2, True), ref[(...,) + sl])
            assert all(r() is None for r in olds), "an arena the shared one grew out of is still alive"
            buf = shipped._arenas._local.buf
            assert buf.nbytes == sizes[box]
            olds.append(weakref.ref(_buffer_owner(buf)))
            del buf
        assert olds[-1]() is not None  # (the current arena: the test can see a live one)
        del shipped
        assert olds[-1]() is None, "the dropped network's arena is still alive"
    finally:
        gc.enable()


def test_arena_reserve_makes_one_arena_per_thread():
    """With the reserve ``run`` ships (task_arenas: the largest cropped plan's arena of the tile shape over the
    chunk positions), a worker thread's shared arena is made once at that size: no growth (a growth faults in
    a new arena's pages), whatever order the positions come in; the results are the in-memory ones."""
    from fastpoint.network import tiled

    rng = np.random.default_rng(23)
    net = fp.load_onnx(unet_graph(np.float64, rng, None, "convtranspose"))
    shape, chunks = (1, 3, 90, 100), ((1,), (3,), (30, 30, 30), (40, 40, 20))
    x = image(shape, np.float64, rng)
    t = fpd.tiling(net, shape, chunks)
    reserve = tiled.task_arenas(net, t, shape, chunks, np.float64, crop=True)
    tile_shapes = {s for s, _ in tiled._task_boxes(t, shape, chunks, True)}
    assert set(reserve) == tile_shapes
    assert tiled._arena_reserve(net, t, shape, chunks, np.float64, True) == reserve  # what run() ships
    assert tiled._arena_reserve(net, t, shape, chunks, np.float64, False) is None
    np.testing.assert_array_equal(fpd.run(net, da.from_array(x, chunks=(1, 3, 30, 40))).compute(scheduler="sync"),
                                  net(x))
    shipped = tiled._Shipped(net._graph, net.backend, reserve)
    (a0, a1), (b0, b1) = t.tiles[0][0], t.tiles[1][0]
    tile = np.ascontiguousarray(x[..., a0:a1, b0:b1])
    boxes = [box for s, box in tiled._task_boxes(t, shape, chunks, True) if s == tile.shape]
    bufs = set()
    for box in boxes[::-1]:
        sl = tuple(slice(a, b + 1) for a, b in box)
        got = tiled._tile_task(shipped, tile, 0.0, sl, 1, t.alignment, True)
        np.testing.assert_array_equal(got, net(tile)[(...,) + sl])
        bufs.add(id(shipped._arenas._local.buf))
    assert len(bufs) == 1 and shipped._arenas._local.buf.nbytes == reserve[tile.shape]
    sizes = [cp.plan.arena_bytes for cp in shipped._crops.values()]
    assert max(sizes) <= reserve[tile.shape]


def test_cropped_plans_on_two_threads_while_the_arena_grows():
    """Two worker threads run the cropped plans of one tile shape in opposite orders, no reserve: a growth on
    one thread releases the plans the other may be running (each keeps the plan it runs until its call
    returns) and every result is the in-memory one."""
    import threading

    from fastpoint.network import tiled

    rng = np.random.default_rng(24)
    net = fp.load_onnx(unet_graph(np.float64, rng, None, "convtranspose"))
    shipped = tiled._Shipped(net._graph, net.backend)
    x = image((1, 3, 96, 96), np.float64, rng)
    ref = net(x)
    boxes = [((0, 31), (0, 31)), ((32, 63), (32, 63)), ((64, 95), (0, 31)), ((0, 95), (0, 95)), ((0, 47), (48, 95))]
    errors = []

    def work(order):
        try:
            for _ in range(3):
                for box in order:
                    sl = tuple(slice(a, b + 1) for a, b in box)
                    np.testing.assert_array_equal(tiled._tile_task(shipped, x, 0.0, sl, 1, 2, True), ref[(...,) + sl])
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(o,)) for o in (boxes, boxes[::-1])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
