"""The API contract on every backend: layouts, views, dtypes, out=, Conv2d reuse, NaN, batch 0."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array


def ref(x, w, b=None, **kw):
    return fp.conv2d(x, w, b, backend="numpy", **kw)


def test_backends_listed():
    names = fp.backends()
    assert "numpy" in names
    assert set(names) <= {"c", "numba", "numpy"}


def test_required_backends_are_built_here():
    # FASTPOINT_REQUIRE_BACKENDS=c,numba (.ci/run): a build that silently fell back must fail CI
    required = {b for b in os.environ.get("FASTPOINT_REQUIRE_BACKENDS", "").split(",") if b}
    assert required <= set(fp.backends())


def test_without_compiler_or_numba_auto_falls_back_to_numpy_and_info_says_why():
    # an install without a C compiler has no fastpoint._cconv; one without Numba cannot import it
    code = (
        "import sys, contextlib, io\n"
        "sys.modules['fastpoint._cconv'] = None; sys.modules['numba'] = None\n"
        "import numpy as np, fastpoint as fp\n"
        "from fastpoint.backends import get_backend\n"
        "from fastpoint.cli import main\n"
        "assert fp.backends() == ['numpy'], fp.backends()\n"
        "assert get_backend('auto').name == 'numpy'\n"
        "x = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4); w = np.ones((2, 3, 3, 3), np.float32)\n"
        "assert fp.conv2d(x, w, padding=1)[0, 0, 1, 1] == x[0, :, :3, :3].sum()\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['info', '--no-measure']) == 0\n"
        "print(out.getvalue())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines() if line.startswith("  ")}
    assert "unavailable" in lines["c"] and "not built" in lines["c"] and "compiler" in lines["c"]
    assert "unavailable" in lines["numba"] and "not installed" in lines["numba"]
    assert lines["numpy"].split()[1] == "available"


def test_conv1x1_is_channel_mixing_matmul(any_backend):
    rng = np.random.default_rng(0)
    x = int_array(rng, (2, 5, 4, 3))
    w = int_array(rng, (7, 5))
    y = fp.conv1x1(x, w, backend=any_backend)
    expected = np.einsum("oc,nchw->nohw", w, x)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(fp.conv1x1(x, w[:, :, None, None], backend=any_backend), expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_unbatched_input_gives_unbatched_output(any_backend, layout):
    rng = np.random.default_rng(1)
    x = int_array(rng, (4, 6, 5) if layout == "NCHW" else (6, 5, 4))
    w = int_array(rng, (3, 4, 3, 3))
    y = fp.conv2d(x, w, padding=1, layout=layout, backend=any_backend)
    assert y.shape == ((3, 6, 5) if layout == "NCHW" else (6, 5, 3))
    np.testing.assert_array_equal(y, ref(x[None], w, padding=1, layout=layout)[0])


def test_nhwc_equals_transposed_nchw(backend):
    rng = np.random.default_rng(2)
    x = int_array(rng, (2, 6, 9, 10))
    w = int_array(rng, (8, 3, 3, 3))
    y_nchw = fp.conv2d(x, w, stride=2, padding=1, groups=2, backend=backend)
    y_nhwc = fp.conv2d(x.transpose(0, 2, 3, 1), w, stride=2, padding=1, groups=2, layout="NHWC", backend=backend)
    np.testing.assert_array_equal(y_nhwc, y_nchw.transpose(0, 2, 3, 1))


def _views(x):
    base = np.empty((x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3]), x.dtype)
    base[..., ::2] = x
    strided = base[..., ::2]
    fortran = np.asfortranarray(x)
    flipped = np.flip(np.flip(x, axis=3).copy(), axis=3)  # negative strides, same values
    readonly = x.copy()
    readonly.flags.writeable = False
    offset = np.empty(x.size + 1, x.dtype)[1:].reshape(x.shape)  # not 8-byte aligned to 64
    offset[...] = x
    return {"strided": strided, "fortran": fortran, "negative": flipped, "readonly": readonly, "offset": offset}


def test_any_memory_layout_of_input(any_backend):
    rng = np.random.default_rng(3)
    x = int_array(rng, (2, 5, 7, 6))
    w = int_array(rng, (4, 5, 3, 3))
    expected = ref(x, w, padding=1)
    for name, view in _views(x).items():
        got = fp.conv2d(view, w, padding=1, backend=any_backend)
        np.testing.assert_array_equal(got, expected, err_msg=name)
    wt = np.asfortranarray(w)
    np.testing.assert_array_equal(fp.conv2d(x, wt, padding=1, backend=any_backend), expected)
    np.testing.assert_array_equal(fp.conv2d(x, w[::-1][::-1], padding=1, backend=any_backend), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_input_and_weights_are_cast(any_backend, dtype):
    rng = np.random.default_rng(4)
    x = int_array(rng, (1, 3, 5, 5), dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    w = int_array(rng, (2, 3, 3, 3), dtype=other)
    b = int_array(rng, (2,), dtype=np.float16)
    y = fp.conv2d(x, w, b, backend=any_backend)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref(x, w.astype(dtype), b.astype(dtype)))


def test_out_is_filled_and_returned_never_read(any_backend):
    rng = np.random.default_rng(5)
    x = int_array(rng, (2, 4, 6, 6))
    w = int_array(rng, (8, 4, 3, 3))
    b = int_array(rng, (8,))
    out = np.full((2, 8, 6, 6), np.nan, np.float32)  # garbage must never leak into the result
    y = fp.conv2d(x, w, b, padding=1, activation="relu", out=out, backend=any_backend)
    assert y is out
    np.testing.assert_array_equal(out, ref(x, w, b, padding=1, activation="relu"))
    out3 = np.full((8, 6, 6), np.nan, np.float32)
    assert fp.conv2d(x[0], w, b, padding=1, out=out3, backend=any_backend) is out3
    np.testing.assert_array_equal(out3, ref(x[:1], w, b, padding=1)[0])


def test_batch_zero(any_backend):
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = np.ones((5, 3, 3, 3), np.float32)
    y = fp.conv2d(x, w, stride=2, backend=any_backend)
    assert y.shape == (0, 5, 3, 3) and y.dtype == np.float32
    assert fp.conv2d(np.zeros((0, 8, 8, 3), np.float32), w, layout="NHWC", backend=any_backend).shape == (0, 6, 6, 5)


def test_prepacked_layer_reused(any_backend):
    rng = np.random.default_rng(6)
    w = int_array(rng, (6, 2, 3, 3))
    b = int_array(rng, (6,))
    layer = fp.Conv2d(w, b, padding="same", groups=2, activation="relu", backend=any_backend)
    for shape in [(1, 4, 5, 5), (3, 4, 9, 7), (2, 4, 1, 1)]:
        for dtype in (np.float32, np.float64, np.float32):
            x = int_array(rng, shape, dtype=dtype)
            np.testing.assert_array_equal(layer(x), ref(x, w, b, padding="same", groups=2, activation="relu"))
    assert "Conv2d(weight=(6, 2, 3, 3)" in repr(layer)


def test_relu_keeps_nan_and_nan_spreads_over_its_window(any_backend):
    x = np.ones((1, 2, 7, 7), np.float32)
    x[0, 1, 3, 3] = np.nan
    w = -np.ones((3, 2, 3, 3), np.float32)
    y = fp.conv2d(x, w, padding=1, activation="relu", backend=any_backend)
    window = np.zeros((7, 7), bool)
    window[2:5, 2:5] = True
    for c in range(3):
        assert np.isnan(y[0, c][window]).all()
        assert not np.isnan(y[0, c][~window]).any()
        assert (y[0, c][~window] == 0).all()  # relu of negative sums


def test_inf_propagates(any_backend):
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = np.inf
    w = np.ones((1, 1, 3, 3), np.float32)
    y = fp.conv2d(x, w, padding=1, backend=any_backend)
    assert np.isinf(y[0, 0, 1:4, 1:4]).all() and np.isfinite(y[0, 0, 0]).all()


def test_auto_backend_matches_reference():
    rng = np.random.default_rng(7)
    x = int_array(rng, (1, 8, 12, 12))
    w = int_array(rng, (16, 8, 3, 3))
    np.testing.assert_array_equal(fp.conv2d(x, w, padding=1), ref(x, w, padding=1))


def test_threads_setting_round_trips():
    old = fp.get_num_threads()
    try:
        fp.set_num_threads(1)
        assert fp.get_num_threads() == 1
        rng = np.random.default_rng(8)
        x = int_array(rng, (2, 8, 10, 10))
        w = int_array(rng, (8, 8, 3, 3))
        for b in fp.backends():
            np.testing.assert_array_equal(fp.conv2d(x, w, backend=b), ref(x, w))
    finally:
        fp.set_num_threads(old)


def test_random_float_data_close_to_reference(backend):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 64, 20, 20)).astype(np.float32)
    w = rng.standard_normal((48, 64, 3, 3)).astype(np.float32)
    got = fp.conv2d(x, w, padding=1, backend=backend)
    exp = fp.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1, backend="numpy")
    k = 64 * 9
    tol = k * np.finfo(np.float32).eps * np.abs(x).max() * np.abs(w).max()
    assert np.max(np.abs(got - exp)) < tol


def test_auto_backend_resolution_does_not_search_sys_path_per_call(monkeypatch):
    # resolving "auto" once searched sys.path for numba on every call: 35 of a tiny layer's 40 us
    import importlib
    import importlib.util

    reg = importlib.import_module("fastpoint.backends")  # the package; fp.backends is the function

    reg.get_backend("auto")
    reg.backends()

    def refuse(*args, **kwargs):
        raise AssertionError("find_spec called while resolving a backend")

    monkeypatch.setattr(importlib.util, "find_spec", refuse)
    x = np.ones((1, 4, 5, 5), np.float32)
    w = np.ones((4, 1, 3, 3), np.float32)
    fp.conv2d(x, w, padding=1, groups=4)
    fp.Conv2d(w, padding=1, groups=4)(x)
    assert reg.backends()[-1] == "numpy"
