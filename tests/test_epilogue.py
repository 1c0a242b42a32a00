"""Fused epilogues (docs/epilogues.md): ``activation=`` and ``residual=`` against the NumPy reference.

Every C kernel row forced in turn (the problems of tests/test_kernels.py) with every activation, with
and without a residual; every ISA path of the epilogue itself (fp_set_isa) on each algorithm; the
Numba backend; residual layouts and strides; aliasing refusals; bad arguments; non-finite values.
"""

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback
from fastpoint.backends.kernel_table import forced_kernel
from fastpoint.core.epilogue import Activation, apply_reference, parse_activation

from .conftest import forced_isa, int_array
from .test_kernels import C_ROWS, DTYPES, PROBLEMS

needs_c = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

SLOPES = np.linspace(-0.5, 0.75, 256)


def acts(cout):
    """Every activation kind, with parameters where it has them."""
    return [None, "relu", "relu6", "leaky_relu", "hardswish", "hardsigmoid", "sigmoid", "tanh",
            ("clip", -2.5, 4.0), ("leaky_relu", 0.3), ("hardsigmoid", 0.2, 0.5), ("prelu", SLOPES[:cout]),
            ("prelu", 0.25)]


def close(got, expected, msg, winograd_scale=None):
    """Within rounding of the activations (integer-valued data: the convolutions are exact), or Winograd's
    bound (1e-4 of the pre-activation range, docs/winograd.md)."""
    if winograd_scale is not None:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * winograd_scale, err_msg=msg)
        return
    scale = max(1.0, float(np.nanmax(np.abs(expected))) if expected.size else 1.0)
    tol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale, err_msg=msg)


def run_case(prob, dtype, act, with_res, rng, backend="c"):
    layout = prob.get("layout", "NCHW")
    n, c, h, w = prob["x"]
    x = int_array(rng, (n, c, h, w) if layout == "NCHW" else (n, h, w, c), dtype=dtype)
    wt = int_array(rng, prob["w"], dtype=dtype)
    b = int_array(rng, (prob["w"][0],), dtype=dtype)
    kw = {key: v for key, v in prob.items() if key not in ("x", "w")}
    plain = fp.conv2d(x, wt, b, backend="numpy", **kw)
    res = int_array(rng, plain.shape, dtype=dtype) if with_res else None
    expected = fp.conv2d(x, wt, b, backend="numpy", activation=act, residual=res, **kw)
    out = np.full_like(expected, np.nan)  # every output must be written
    layer = fp.Conv2d(wt, b, backend=backend, activation=act, **kw)
    got = layer(x, out=out, residual=res)
    wscale = float(np.abs(plain + (0 if res is None else res)).max()) if kw.get("algorithm") == "winograd" else None
    close(got, expected, f"{act!r} residual={with_res} on {prob}", wscale)
    again = layer(x, residual=res)  # the planned path (no residual) / full path (residual) agree
    close(again, expected, f"{act!r} residual={with_res} on {prob}, second call", wscale)


@needs_c
# (conv1d rows run no epilogue beyond ReLU: a conv1d layer with one runs on the 2-d kernels, backends/c_lowered.py)
@pytest.mark.parametrize("name", [k.name for k in C_ROWS if k.family in PROBLEMS
                                  and k.family not in ("interleave", "conv1d")])
def test_every_kernel_with_every_epilogue(name):
    k = next(r for r in C_ROWS if r.name == name)
    if not k.available:
        pytest.skip(f"{name}: this CPU lacks {k.isa}")
    rng = np.random.default_rng(1)
    dtype = DTYPES[k.dtype]
    with forced_kernel(name):
        probs = list(PROBLEMS[k.family](k))
        for i, prob in enumerate(probs):
            cout = prob["w"][0]
            choices = acts(cout)
            # every activation on a few problems; the others rotate through them (the suite stays short)
            pick = choices if i < 2 or i == len(probs) - 1 else [choices[i % len(choices)]]
            for act in pick:
                for with_res in (False, True):
                    run_case(prob, dtype, act, with_res, rng)


# one problem of each algorithm, for the epilogue's own ISA paths
ALGO_PROBLEMS = [
    dict(x=(2, 19, 5, 7), w=(37, 19, 1, 1), layout="NCHW"),                       # gemm
    dict(x=(2, 19, 5, 7), w=(37, 19, 1, 1), layout="NHWC"),
    dict(x=(1, 300, 3, 3), w=(20, 300, 1, 1), layout="NCHW"),                     # gemm, transposed form
    dict(x=(1, 5, 9, 17), w=(33, 5, 3, 3), layout="NCHW", padding=1),            # direct
    dict(x=(1, 5, 9, 17), w=(33, 5, 3, 3), layout="NHWC", padding=1, stride=2),
    dict(x=(1, 24, 9, 21), w=(24, 1, 3, 3), layout="NCHW", padding=1, groups=24),  # depthwise
    dict(x=(1, 40, 9, 21), w=(40, 1, 3, 3), layout="NHWC", padding=1, groups=40),
    dict(x=(1, 40, 12, 70), w=(40, 1, 3, 3), layout="NHWC", padding=1, groups=40),  # strips
    dict(x=(1, 6, 7, 9), w=(10, 3, 3, 3), layout="NCHW", padding=2, dilation=2, groups=2),  # generic
    dict(x=(1, 6, 7, 9), w=(10, 3, 3, 3), layout="NHWC", padding=1, groups=2),
    dict(x=(1, 7, 11, 13), w=(21, 7, 3, 3), layout="NCHW", padding=1, algorithm="winograd"),
    dict(x=(1, 7, 11, 13), w=(21, 7, 3, 3), layout="NHWC", padding=1, algorithm="winograd"),
]


@needs_c
@pytest.mark.parametrize("level", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_isa_path(level, dtype):
    rng = np.random.default_rng(2)
    with forced_isa(level):
        for prob in ALGO_PROBLEMS:
            for act in acts(prob["w"][0]):
                for with_res in (False, True):
                    if prob.get("algorithm") == "winograd":
                        continue  # rounds differently from the reference: test_winograd_epilogue
                    run_case(prob, dtype, act, with_res, rng)


@needs_c
def test_winograd_epilogue():
    rng = np.random.default_rng(3)
    for prob in ALGO_PROBLEMS[-2:]:
        n, c, h, w = prob["x"]
        x = rng.standard_normal((n, c, h, w) if prob["layout"] == "NCHW" else (n, h, w, c)).astype(np.float32)
        wt = rng.standard_normal(prob["w"]).astype(np.float32)
        kw = {key: v for key, v in prob.items() if key not in ("x", "w")}
        plain = fp.conv2d(x, wt, backend="numpy", **kw)
        res = rng.standard_normal(plain.shape).astype(np.float32)
        for act in acts(prob["w"][0]):
            expected = fp.conv2d(x, wt, backend="numpy", activation=act, residual=res, **kw)
            got = fp.Conv2d(wt, activation=act, **kw)(x, residual=res)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max(), err_msg=repr(act))


def test_numba_backend():
    if "numba" not in fp.backends():
        pytest.skip("Numba not installed")
    rng = np.random.default_rng(4)
    for prob in ALGO_PROBLEMS[:2] + ALGO_PROBLEMS[3:4] + ALGO_PROBLEMS[6:7]:
        for act in ["relu", "sigmoid", ("prelu", SLOPES[:prob["w"][0]]), None]:
            for with_res in (False, True):
                run_case(prob, np.float64, act, with_res, rng, backend="numba")


@needs_c
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_residual_any_strides_and_dtype(layout):
    """A residual of any strides (negative, transposed, sliced) or another float dtype is copied; the
    result is the same as with a C-contiguous one.  Unbatched inputs take an unbatched residual."""
    rng = np.random.default_rng(5)
    x = int_array(rng, (2, 6, 8, 10) if layout == "NCHW" else (2, 8, 10, 6))
    w = int_array(rng, (12, 6, 3, 3))
    base = fp.conv2d(x, w, padding=1, layout=layout)
    res = int_array(rng, base.shape)
    expected = np.maximum(base + res, 0)
    views = [res, res[:, ::-1][:, ::-1], np.asfortranarray(res), res.astype(np.float64)]
    big = np.zeros((2,) + tuple(2 * s for s in res.shape[1:]), np.float32)
    big[:, ::2, ::2, ::2] = res
    views.append(big[:, ::2, ::2, ::2])
    for r in views:
        np.testing.assert_array_equal(fp.conv2d(x, w, padding=1, layout=layout, activation="relu", residual=r),
                                      expected)
    got = fp.conv2d(x[0], w, padding=1, layout=layout, activation="relu", residual=res[0])
    np.testing.assert_array_equal(got, expected[0])
    layer = fp.Conv2d(w, padding=1, layout=layout, activation="relu")
    np.testing.assert_array_equal(layer(x[1], residual=res[1]), expected[1])


@needs_c
def test_residual_with_dilation_groups_strides():
    rng = np.random.default_rng(6)
    for kw in [dict(stride=2, padding=1), dict(dilation=2, padding=2), dict(groups=3, padding=1),
               dict(groups=3, stride=(1, 2), dilation=(2, 1), padding=(2, 1))]:
        for layout in ("NCHW", "NHWC"):
            prob = dict(x=(2, 6, 9, 11), w=(9, 6 // kw.get("groups", 1), 3, 3), layout=layout, **kw)
            for act in (None, "relu", "hardswish"):
                run_case(prob, np.float32, act, True, rng)


@needs_c
def test_residual_aliasing_out_is_refused():
    rng = np.random.default_rng(7)
    x = int_array(rng, (1, 4, 6, 6))
    w = int_array(rng, (4, 4, 1, 1))
    buf = int_array(rng, (1, 4, 6, 6))
    with pytest.raises(ValueError, match="residual .* overlaps out"):
        fp.conv2d(x, w, residual=buf, out=buf)
    with pytest.raises(ValueError, match="residual .* overlaps out"):
        fp.Conv2d(w, activation="relu")(x, residual=buf[:, :, :, ::-1], out=buf)
    layer = fp.Conv2d(w)
    y = layer(x, residual=x)  # the layer's plan now exists: the planned residual path checks out too
    np.testing.assert_array_equal(layer(x, residual=x), y)
    with pytest.raises(ValueError, match="residual .* overlaps out"):
        layer(x, residual=buf, out=buf)
    out = np.empty_like(y)
    assert layer(x, residual=buf, out=out) is out
    np.testing.assert_array_equal(out, fp.conv2d(x, w, backend="numpy") + buf)
    # the residual may be the input itself (both are only read)
    got = fp.conv2d(x, w, residual=x, activation="relu")
    np.testing.assert_array_equal(got, np.maximum(fp.conv2d(x, w, backend="numpy") + x, 0))


def test_bad_arguments():
    x = np.ones((1, 4, 6, 6), np.float32)
    w = np.ones((5, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"residual must have the output's shape \(1, 5, 4, 4\), got \(1, 5, 6, 6\)"):
        fp.conv2d(x, w, residual=np.ones((1, 5, 6, 6), np.float32))
    with pytest.raises(TypeError, match="residual must be a float array"):
        fp.conv2d(x, w, residual=np.ones((1, 5, 4, 4), np.int32))
    for bad in ["gelu", ("clip", 1.0), ("clip", 2.0, 1.0), ("prelu", np.ones(3)), ("leaky", 0.1), 3,
                ("prelu", np.ones((5, 1))), ("leaky_relu", "a")]:
        with pytest.raises((ValueError, TypeError)):
            fp.Conv2d(w, activation=bad)
    with pytest.raises(ValueError, match="Activation kind"):
        Activation("gelu")


def test_repr_and_activation_type():
    w = np.ones((5, 4, 3, 3), np.float32)
    assert "activation='relu'" in repr(fp.Conv2d(w, activation="relu"))
    assert "clip" in repr(fp.Conv2d(w, activation="relu6"))
    act = fp.Activation("leaky_relu", 0.2)
    x = np.linspace(-3, 3, 4 * 36, dtype=np.float32).reshape(1, 4, 6, 6)
    got = fp.Conv2d(w, activation=act, padding=1)(x)
    expected = fp.conv2d(x, w, padding=1, activation=("leaky_relu", 0.2), backend="numpy")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())  # summation order


@needs_c
@pytest.mark.parametrize("level", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
def test_non_finite_values(level):
    """NaN stays NaN through every activation; +-Inf go to the formula's limits; values far out (exp's
    range) saturate; a 1x1 identity convolution puts chosen values through the epilogue."""
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 2.9, 3.1, -2.9, -3.1, 20.0, -20.0,
                     88.0, -88.0, 100.0, -100.0, 800.0, -800.0, 1e30, -1e30], np.float64)
    for dtype in (np.float32, np.float64):
        x = vals.astype(dtype).reshape(1, 1, 1, -1)
        w = np.ones((1, 1, 1, 1), dtype)
        with forced_isa(level):
            for act in acts(1):
                expected = x.copy()
                rl, a = parse_activation(act, 1)
                if rl:
                    a = Activation("relu")
                apply_reference(expected, a, 1)
                for layout in ("NCHW", "NHWC"):
                    xl = x if layout == "NCHW" else x.transpose(0, 2, 3, 1).copy()
                    got = fp.conv2d(xl, w, activation=act, layout=layout, backend="c")
                    got = got if layout == "NCHW" else got.transpose(0, 3, 1, 2)
                    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{act!r} {dtype}")
                    tol = 1e-6 if dtype == np.float32 else 1e-14
                    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=f"{act!r} {dtype}")


@needs_c
def test_two_threads_and_streamed_outputs():
    """Outputs past L2 (the GEMM and the depthwise NHWC paths then stream each tile out of a buffer) and 2
    threads, per family."""
    rng = np.random.default_rng(8)
    before = fp.get_num_threads()
    try:
        for threads in (1, 2):
            fp.set_num_threads(threads)
            for prob in [dict(x=(1, 16, 48, 50), w=(130, 16, 1, 1), layout="NCHW"),
                         dict(x=(1, 16, 48, 50), w=(130, 16, 1, 1), layout="NHWC"),
                         dict(x=(1, 16, 40, 44), w=(48, 16, 3, 3), layout="NHWC", padding=1),
                         dict(x=(1, 160, 40, 44), w=(160, 1, 3, 3), layout="NHWC", padding=1, groups=160),
                         # depthwise outputs past 1.5 MiB (streamed): column strips, and rows (5x5: no pairs)
                         dict(x=(1, 160, 48, 56), w=(160, 1, 3, 3), layout="NHWC", padding=1, groups=160),
                         dict(x=(1, 64, 80, 80), w=(64, 1, 5, 5), layout="NHWC", padding=2, groups=64)]:
                for act in ("relu", "hardswish", ("prelu", SLOPES[:prob["w"][0]])):
                    for with_res in (False, True):
                        run_case(prob, np.float32, act, with_res, rng)
    finally:
        fp.set_num_threads(before)


@needs_c
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_conv1d_activations(layout):
    """conv1d runs on the 2-d kernels' row (an activation beyond ReLU leaves conv1d's own GEMM to them),
    causal right padding included."""
    rng = np.random.default_rng(9)
    x = int_array(rng, (2, 6, 40) if layout == "NCL" else (2, 40, 6))
    w = int_array(rng, (8, 6, 3))
    b = int_array(rng, (8,))
    for kw in (dict(stride=2), dict(padding=(0, 4)), dict(padding=1, dilation=2)):
        for act in ("sigmoid", ("clip", -1.0, 2.0), ("prelu", SLOPES[:8])):
            expected = fp.conv1d(x, w, b, layout=layout, activation=act, backend="numpy", **kw)
            got = fp.conv1d(x, w, b, layout=layout, activation=act, backend="c", **kw)
            close(got, expected, f"{act!r} {kw}")


@needs_c
def test_concurrent_calls_with_their_own_residuals():
    """One layer, several Python threads, each call with its own residual and output: the epilogue is per call."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(10)
    x = int_array(rng, (1, 8, 20, 24))
    w = int_array(rng, (32, 8, 3, 3))
    layer = fp.Conv2d(w, padding=1, activation="hardswish")
    base = fp.conv2d(x, w, padding=1, backend="numpy")
    residuals = [int_array(rng, base.shape) for _ in range(8)]
    expected = [fp.conv2d(x, w, padding=1, activation="hardswish", residual=r, backend="numpy") for r in residuals]

    def call(i):
        return [layer(x, residual=residuals[i]) for _ in range(20)]

    with ThreadPoolExecutor(4) as pool:
        for i, results in enumerate(pool.map(call, range(8))):
            for got in results:
                close(got, expected[i], f"thread call {i}")


@needs_c
def test_non_finite_weights_in_the_padding():
    """A NaN/Inf weight meeting the zero padding gives NaN there (PyTorch's 0 * Inf), through the epilogue."""
    rng = np.random.default_rng(11)
    x = int_array(rng, (1, 3, 6, 7))
    w = int_array(rng, (4, 3, 3, 3))
    w[1, 2, 0, 0] = np.inf
    res = int_array(rng, (1, 4, 6, 7))
    for act in ("sigmoid", ("prelu", SLOPES[:4]), None):
        expected = fp.conv2d(x, w, padding=1, activation=act, residual=res, backend="numpy")
        got = fp.Conv2d(w, padding=1, activation=act)(x, residual=res)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        close(np.nan_to_num(got), np.nan_to_num(expected), repr(act))
