"""fastpoint.dask: every operation equals the in-memory result (integer data, compared with ==), over
several chunks per axis, odd chunk sizes, strides, dilation, padding forms and both layouts; the
example U-Net segments a chunked image exactly; the example script runs end to end."""

import importlib.util
import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
fpd = pytest.importorskip("fastpoint.dask")

import fastpoint as fp  # noqa: E402
from fastpoint.core.threads import get_num_threads  # noqa: E402

from .conftest import int_array  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "segment_large_image.py")


def load_example():
    spec = importlib.util.spec_from_file_location("segment_large_image", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_layout(x, layout):
    return x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def chunked(x, layout, chunks_hw=(7, 9)):
    """Odd chunks: several per spatial axis, 2 images per chunk, channels split (must be rechunked)."""
    if layout == "NCHW":
        return da.from_array(x, chunks=(2, 3, chunks_hw[0], chunks_hw[1]))
    return da.from_array(x, chunks=(2, chunks_hw[0], chunks_hw[1], 3))


CONV_CASES = [
    dict(padding=1),
    dict(stride=2, padding=1),
    dict(stride=2),
    dict(dilation=2, padding="same"),
    dict(padding="same"),
    dict(stride=(2, 3), padding=(0, 2), dilation=(1, 2)),
    dict(padding="valid"),
    dict(stride=3, padding=2, dilation=3),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kwargs", CONV_CASES, ids=str)
def test_conv2d_exact(kwargs, layout):
    rng = np.random.default_rng(0)
    x = to_layout(int_array(rng, (3, 5, 29, 31)), layout)
    w = int_array(rng, (6, 5, 3, 3), -2, 2)
    b = int_array(rng, (6,), -2, 2)
    ref = fp.conv2d(x, w, b, activation="relu", layout=layout, **kwargs)
    y = fpd.conv2d(chunked(x, layout), w, b, activation="relu", layout=layout, **kwargs)
    assert y.shape == ref.shape
    np.testing.assert_array_equal(y.compute(), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_kernel_sizes_groups_unbatched(dtype):
    rng = np.random.default_rng(1)
    x = int_array(rng, (4, 23, 20), dtype=dtype)
    for w, kwargs in ((int_array(rng, (4, 1, 5, 3), dtype=dtype), dict(padding=(2, 1), groups=4)),
                      (int_array(rng, (2, 4, 2, 4), dtype=dtype), dict(stride=2, padding=1)),
                      (int_array(rng, (3, 4, 1, 1), dtype=dtype), dict(stride=2))):
        ref = fp.conv2d(x, w, **kwargs)
        y = fpd.conv2d(da.from_array(x, chunks=(4, 5, 6)), w, **kwargs)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y.compute(), ref)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv1x1_exact(stride):
    rng = np.random.default_rng(2)
    x = int_array(rng, (3, 4, 17, 15))
    w = int_array(rng, (5, 4))
    y = fpd.conv1x1(chunked(x, "NCHW", (5, 4)), w, stride=stride)
    np.testing.assert_array_equal(y.compute(), fp.conv1x1(x, w, stride=stride))


POOL_CASES = [(2, None, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (1, 2), (1, 0)), (2, 3, 1)]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("k,s,p", POOL_CASES)
def test_pooling_exact(k, s, p, layout):
    x = to_layout(int_array(np.random.default_rng(3), (3, 4, 26, 23)), layout)
    xd = chunked(x, layout)
    np.testing.assert_array_equal(fpd.max_pool2d(xd, k, s, p, layout=layout).compute(),
                                  fp.max_pool2d(x, k, s, p, layout=layout))
    np.testing.assert_array_equal(fpd.avg_pool2d(xd, k, s, p, layout=layout).compute(),
                                  fp.avg_pool2d(x, k, s, p, layout=layout))
    np.testing.assert_array_equal(fpd.avg_pool2d(xd, k, s, p, count_include_pad=False, layout=layout).compute(),
                                  fp.avg_pool2d(x, k, s, p, count_include_pad=False, layout=layout))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_exact(mode, scale, layout):
    x = to_layout(int_array(np.random.default_rng(4), (3, 4, 19, 22)), layout)
    y = fpd.upsample(chunked(x, layout, (5, 7)), scale, mode, layout=layout)
    np.testing.assert_array_equal(y.compute(), fp.upsample(x, scale, mode, layout=layout))


def test_upsample_align_corners_is_refused():
    with pytest.raises(NotImplementedError, match="align_corners"):
        fpd.upsample(da.zeros((1, 1, 4, 4), chunks=2), 2, "bilinear", True)


def test_errors_are_raised_before_compute():
    x = da.zeros((1, 3, 8, 8), dtype=np.float32, chunks=4)
    with pytest.raises(ValueError, match="channels"):
        fpd.conv2d(x, np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(TypeError, match="int32"):
        fpd.conv2d(x.astype(np.int32), np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="padding"):
        fpd.max_pool2d(x, 2, 2, 3)
    with pytest.raises(ValueError, match="num_threads"):
        fpd.conv2d(x, np.zeros((2, 3, 3, 3), np.float32), num_threads=0)


def test_weights_are_one_graph_key():
    x = da.zeros((2, 3, 40, 40), dtype=np.float32, chunks=(1, 3, 10, 10))
    y = fpd.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1)
    graph = dict(y.__dask_graph__())
    weight_keys = [k for k in graph if isinstance(k, str) and k.startswith("fastpoint-conv2d-weights")]
    assert len(weight_keys) == 1
    conv_tasks = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("fastpoint-conv2d")]
    assert len(conv_tasks) == 2 * 4 * 4
    # the weights are referenced by key, not embedded in each task
    assert all(weight_keys[0] in graph[k].dependencies for k in conv_tasks)


def test_tasks_run_kernels_with_one_thread(monkeypatch):
    seen = []
    original = fp.Conv2d.__call__

    def spy(self, x, **kwargs):
        seen.append(get_num_threads())
        return original(self, x, **kwargs)

    monkeypatch.setattr(fp.Conv2d, "__call__", spy)
    x = da.ones((1, 2, 12, 12), dtype=np.float32, chunks=(1, 2, 6, 6))
    w = np.ones((2, 2, 3, 3), np.float32)
    fpd.conv2d(x, w, padding=1).compute(scheduler="threads")
    assert seen and set(seen) == {1}
    seen.clear()
    fpd.conv2d(x, w, padding=1, num_threads=2).compute(scheduler="threads")
    assert set(seen) == {2}


# --------------------------------------------------------------------------------------------------
# the example script (a thin use of ``fastpoint segment``)


def test_example_script_end_to_end(tmp_path):
    pytest.importorskip("zarr")
    pytest.importorskip("dask.distributed")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = {"w0": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b0": np.ones(4, np.float32),
             "w1": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
             "scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Resize", ["p", "", "scales"], ["u"], mode="nearest"),
             helper.make_node("Conv", ["u", "w1"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "fcn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = tmp_path / "fcn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    ex = load_example()
    summary = ex.main([str(path), str(tmp_path / "img.zarr"), str(tmp_path / "out.zarr"), "--create-synthetic",
                       "200", "--chunk", "72", "--workers", "2", "--no-progress", "--memory-limit", "1GiB",
                       "--check-in-memory"])
    assert summary["equal_to_in_memory"] is True
    out = da.from_zarr(str(tmp_path / "out.zarr"))
    assert out.shape == (200, 200) and out.dtype == np.uint8


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv2d_batch_chunks_only(layout):
    """Whole images per chunk take the no-halo path; still exact, with stride and padding."""
    rng = np.random.default_rng(9)
    x = to_layout(int_array(rng, (5, 3, 13, 14)), layout)
    w = int_array(rng, (4, 3, 3, 3))
    chunks = (2, 3, 13, 14) if layout == "NCHW" else (2, 13, 14, 3)
    for kwargs in (dict(padding=1), dict(stride=2, padding="valid"), dict(padding="same", dilation=2)):
        y = fpd.conv2d(da.from_array(x, chunks=chunks), w, layout=layout, **kwargs)
        np.testing.assert_array_equal(y.compute(), fp.conv2d(x, w, layout=layout, **kwargs))


def test_unbatched_pooling_and_upsample():
    x = int_array(np.random.default_rng(10), (3, 14, 17))
    xd = da.from_array(x, chunks=(3, 5, 6))
    np.testing.assert_array_equal(fpd.max_pool2d(xd, 3, 2, 1).compute(), fp.max_pool2d(x, 3, 2, 1))
    np.testing.assert_array_equal(fpd.avg_pool2d(xd, 2).compute(), fp.avg_pool2d(x, 2))
    np.testing.assert_array_equal(fpd.upsample(xd, 2, "bilinear").compute(), fp.upsample(x, 2, "bilinear"))
    np.testing.assert_array_equal(fpd.upsample(xd, 3).compute(), fp.upsample(x, 3))


CONV1D_CASES = [
    dict(k=3, padding=1),
    dict(k=2, dilation=4, padding=(4, 0)),  # causal (WaveNet)
    dict(k=10, stride=5),  # wav2vec2's stem
    dict(k=3, stride=2, padding=(0, 3)),
    dict(k=5, padding="same", dilation=2),
    dict(k=1, padding=(0, 2)),  # kernel 1 padded on the right only
    dict(k=3, groups=4, padding=1),
]


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("case", CONV1D_CASES, ids=str)
def test_conv1d_exact(case, layout):
    case = dict(case)
    k, groups = case.pop("k"), case.get("groups", 1)
    rng = np.random.default_rng(1)
    x = int_array(rng, (3, 8, 61))
    x = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    w, b = int_array(rng, (12, 8 // groups, k), -2, 2), int_array(rng, (12,), -2, 2)
    ref = fp.conv1d(x, w, b, activation="relu", layout=layout, **case)
    chunks = (2, 3, 13) if layout == "NCL" else (2, 13, 3)
    got = fpd.conv1d(da.from_array(x, chunks=chunks), w, b, activation="relu", layout=layout, **case)
    assert got.shape == ref.shape and max(got.numblocks) > 2  # cut in L
    np.testing.assert_array_equal(got.compute(), ref)
    np.testing.assert_array_equal(fpd.conv1d(x[0], w, b, layout=layout, **case).compute(),
                                  fp.conv1d(x[0], w, b, layout=layout, **case))


TRANSPOSE_CASES = [
    dict(k=2, stride=2),  # U-Net up-convolution
    dict(k=3, stride=2, padding=1, output_padding=1),
    dict(k=4, stride=2, padding=1),  # FCN-8s / DCGAN
    dict(k=16, stride=8, padding=4),
    dict(k=1, stride=3, output_padding=2),  # rows no input reaches
    dict(k=3, stride=1, padding=2, dilation=2, groups=5),
    dict(k=5, stride=3, padding=6, output_padding=1, dilation=2),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_conv_transpose2d_exact(case, layout):
    case = dict(case)
    k, groups = case.pop("k"), case.get("groups", 1)
    rng = np.random.default_rng(2)
    x = to_layout(int_array(rng, (3, 5, 17, 19)), layout)
    w, b = int_array(rng, (5, 10 // groups, k, k), -2, 2), int_array(rng, (10,), -2, 2)
    ref = fp.conv_transpose2d(x, w, b, activation="relu", layout=layout, **case)
    got = fpd.conv_transpose2d(chunked(x, layout, (4, 7)), w, b, activation="relu", layout=layout, **case)
    assert got.shape == ref.shape and min(got.numblocks) == 1 and sorted(got.numblocks)[2] > 1  # cut in H and W
    np.testing.assert_array_equal(got.compute(), ref)
    np.testing.assert_array_equal(fpd.conv_transpose2d(x[0], w, None, layout=layout, **case).compute(),
                                  fp.conv_transpose2d(x[0], w, None, layout=layout, **case))


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_conv_transpose1d_exact(layout):
    rng = np.random.default_rng(3)
    x = int_array(rng, (2, 6, 40))
    x = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    w, b = int_array(rng, (6, 2, 4), -2, 2), int_array(rng, (6,), -2, 2)
    args = (b, 3, 2, 1, 3, 2)  # stride, padding, output_padding, groups, dilation
    ref = fp.conv_transpose1d(x, w, *args, layout=layout)
    chunks = (1, 6, 9) if layout == "NCL" else (1, 9, 6)
    np.testing.assert_array_equal(fpd.conv_transpose1d(da.from_array(x, chunks=chunks), w, *args,
                                                       layout=layout).compute(), ref)


def test_conv1d_and_transposed_errors_before_compute():
    x = da.zeros((1, 4, 10), chunks=(1, 4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="channels"):
        fpd.conv1d(x, np.zeros((3, 5, 3), np.float32))
    with pytest.raises(ValueError, match="spans"):
        fpd.conv1d(x, np.zeros((3, 4, 12), np.float32))
    with pytest.raises(ValueError, match="output_padding"):
        fpd.conv_transpose1d(x, np.zeros((4, 3, 3), np.float32), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="layout"):
        fpd.conv1d(x, np.zeros((3, 4, 3), np.float32), layout="NCHW")
