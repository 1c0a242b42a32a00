"""Property-based tests: every backend equals the NumPy reference over the whole argument space.

Hypothesis draws a convolution (shape incl. tiny and channel counts around the 8/16 vector widths,
kernel, stride, padding as int / pair / 'valid' / 'same', dilation, groups incl. depthwise with a
channel multiplier, layout, dtype, bias, ReLU, batched or not), an entry point (``conv2d``,
``conv1x1``, a ``Conv2d`` layer called on a taller input first), a memory layout of the input and weight (sliced,
transposed, negative strides, Fortran order, odd address, read-only), an ``out=`` prefilled with
NaN and a thread count (1-3).  Data are small integers, so every summation order gives the exact
same float result and the comparison is equality.

Profiles (tests/conftest.py): ``ci`` (the default: bounded, derandomized) and ``long``; choose with
``HYPOTHESIS_PROFILE=long pytest tests/test_property.py`` or ``pytest --hypothesis-profile=long``.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import fastpoint as fp

from .conftest import FAST_BACKENDS, TESTED_BACKENDS

CHANNELS = [1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33]
VIEWS = ["contiguous", "fortran", "negative", "sliced", "transposed", "unaligned", "readonly"]


def _pair(draw, lo, hi):
    a = draw(st.integers(lo, hi))
    if draw(st.booleans()):
        return a
    return (a, draw(st.integers(lo, hi)))


def _as_pair(v):
    return (v, v) if isinstance(v, int) else v


@st.composite
def problems(draw):
    mode = draw(st.sampled_from(["dense", "dense", "grouped", "depthwise", "pointwise"]))
    if mode in ("dense", "pointwise"):
        groups, cin, cout = 1, draw(st.sampled_from(CHANNELS)), draw(st.sampled_from(CHANNELS))
    elif mode == "grouped":
        groups = draw(st.integers(2, 4))
        cin, cout = groups * draw(st.integers(1, 5)), groups * draw(st.integers(1, 5))
    else:
        groups = cin = draw(st.sampled_from(CHANNELS))
        cout = cin * draw(st.integers(1, 3))  # channel multiplier
    if mode == "pointwise":
        kh = kw = 1
        stride, dilation, padding = _pair(draw, 1, 3), 1, draw(st.sampled_from([0, "valid", "same", (0, 0)]))
    else:
        kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        stride, dilation = _pair(draw, 1, 3), _pair(draw, 1, 3)
        padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                 st.sampled_from(["valid", "same"])))
    if padding == "same" and _as_pair(stride) != (1, 1):
        padding = "valid"
    dh, dw = _as_pair(dilation)
    if isinstance(padding, str):
        ph = pw = 0
    else:
        ph, pw = _as_pair(padding)
    eff_h, eff_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    min_h = 1 if padding == "same" else max(1, eff_h - 2 * ph)
    min_w = 1 if padding == "same" else max(1, eff_w - 2 * pw)
    h = draw(st.integers(min_h, min_h + draw(st.sampled_from([0, 3, 12]))))
    w = draw(st.integers(min_w, min_w + draw(st.sampled_from([0, 3, 12, 20]))))
    n = draw(st.sampled_from([1, 1, 2, 3, 0]))
    return dict(n=n, cin=cin, cout=cout, h=h, w=w, kh=kh, kw=kw, stride=stride, padding=padding,
                dilation=dilation, groups=groups, pointwise=mode == "pointwise")


def _view(arr: np.ndarray, how: str, layout_axes=None) -> np.ndarray:
    """An array equal to ``arr`` with a different memory layout."""
    if how == "fortran":
        return np.asfortranarray(arr)
    if how == "negative":
        return np.flip(np.flip(arr, axis=-1).copy(), axis=-1)
    if how == "sliced":
        base = np.empty(arr.shape[:-1] + (3 * arr.shape[-1] + 1,), arr.dtype)
        base[..., 1::3] = arr
        return base[..., 1::3]
    if how == "transposed":
        perm = layout_axes or tuple(reversed(range(arr.ndim)))
        inv = np.argsort(perm)
        return np.ascontiguousarray(arr.transpose(perm)).transpose(inv)
    if how == "unaligned":
        raw = np.empty(arr.nbytes + arr.itemsize, np.uint8)
        start = 1 if raw.ctypes.data % arr.itemsize == 0 else 0
        out = raw[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
        out[...] = arr
        return out
    if how == "readonly":
        out = arr.copy()
        out.flags.writeable = False
        return out
    return arr


@st.composite
def calls(draw):
    prob = draw(problems())
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64"])))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = prob
    xs = (p["n"], p["cin"], p["h"], p["w"]) if layout == "NCHW" else (p["n"], p["h"], p["w"], p["cin"])
    x = rng.integers(-3, 4, size=xs).astype(dtype)
    wdtype = dtype if draw(st.booleans()) else draw(st.sampled_from([np.float16, np.float32, np.float64]))
    weight = rng.integers(-2, 3, size=(p["cout"], p["cin"] // p["groups"], p["kh"], p["kw"])).astype(wdtype)
    bias = None
    if draw(st.booleans()):
        bias = rng.integers(-4, 5, size=p["cout"]).astype(draw(st.sampled_from([dtype, np.float16])))
    batched = p["n"] > 0 and draw(st.sampled_from([True, True, False]))
    if not batched and p["n"] > 0:
        x = x[:1]
    return dict(
        prob=p, layout=layout, dtype=dtype, x=x, weight=weight, bias=bias, batched=batched or p["n"] == 0,
        relu=draw(st.booleans()), entry=draw(st.sampled_from(["conv2d", "conv2d", "conv1x1", "Conv2d"])),
        x_view=draw(st.sampled_from(VIEWS)), w_view=draw(st.sampled_from(["contiguous"] + VIEWS)),
        use_out=draw(st.booleans()), threads=draw(st.sampled_from([1, 2, 3])),
    )


def _reference(c):
    p = c["prob"]
    return fp.conv2d(c["x"], c["weight"].astype(c["dtype"]),
                     None if c["bias"] is None else c["bias"].astype(c["dtype"]),
                     p["stride"], p["padding"], p["dilation"], p["groups"],
                     activation="relu" if c["relu"] else None, layout=c["layout"], backend="numpy")


def _call(c, backend: str, x: np.ndarray, weight: np.ndarray, out):
    p = c["prob"]
    act = "relu" if c["relu"] else None
    entry = c["entry"]
    if entry == "conv1x1" and p["pointwise"] and p["padding"] != "same":
        w2 = weight[:, :, 0, 0] if weight.ndim == 4 else weight
        return fp.conv1x1(x, w2, c["bias"], p["stride"], activation=act, layout=c["layout"], backend=backend, out=out)
    if entry == "Conv2d":
        layer = fp.Conv2d(weight, c["bias"], p["stride"], p["padding"], p["dilation"], p["groups"],
                          activation=act, layout=c["layout"], backend=backend)
        # a taller input first: packed weights and per-shape state must serve both shapes
        h_axis = {("NCHW", 4): 2, ("NCHW", 3): 1, ("NHWC", 4): 1, ("NHWC", 3): 0}[(c["layout"], x.ndim)]
        taller = np.concatenate([x, x], axis=h_axis)
        ref_taller = fp.conv2d(taller, weight, c["bias"], p["stride"], p["padding"], p["dilation"], p["groups"],
                               activation=act, layout=c["layout"], backend="numpy")
        assert np.array_equal(layer(taller), ref_taller), f"{backend}: Conv2d on a taller input"
        return layer(x, out=out)
    return fp.conv2d(x, weight, c["bias"], p["stride"], p["padding"], p["dilation"], p["groups"],
                     activation=act, layout=c["layout"], backend=backend, out=out)


def _check_all_backends(c):
    before = fp.get_num_threads()
    fp.set_num_threads(c["threads"])
    try:
        _compare(c)
    finally:
        fp.set_num_threads(before)


def _compare(c):
    expected = _reference(c)
    x_full = c["x"]
    if not c["batched"]:
        expected, x_full = expected[0], x_full[0]
    axes = (0, 2, 3, 1) if x_full.ndim == 4 else (1, 2, 0)
    note(f"problem={c['prob']} layout={c['layout']} dtype={c['dtype']} entry={c['entry']} "
         f"x_view={c['x_view']} w_view={c['w_view']} out={c['use_out']} relu={c['relu']} threads={c['threads']} "
         f"bias={None if c['bias'] is None else c['bias'].dtype} weight={c['weight'].dtype} x={x_full.shape}")
    for backend in TESTED_BACKENDS:
        x = _view(x_full, c["x_view"], axes)
        weight = _view(c["weight"], c["w_view"])
        out = np.full(expected.shape, np.nan, c["dtype"]) if c["use_out"] else None
        got = _call(c, backend, x, weight, out)
        assert got.dtype == c["dtype"] and got.shape == expected.shape, (backend, got.shape, expected.shape)
        if out is not None:
            assert got is out
        assert np.array_equal(got, expected), f"{backend}: max |diff| {np.nanmax(np.abs(got - expected))}"
        np.testing.assert_array_equal(x, x_full, err_msg=f"{backend} modified its input")


@pytest.mark.skipif(not FAST_BACKENDS, reason="only the reference backend is available")
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(calls())
def test_every_backend_equals_reference(c):
    _check_all_backends(c)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 9), st.integers(1, 9),
       st.sampled_from(["NCHW", "NHWC"]), st.integers(0, 2**32 - 1))
def test_random_floats_within_k_scaled_tolerance(cin, cout, h, w, layout, seed):
    """Real-valued data: results agree with a float64 reference to K * eps * max|x| * max|w|."""
    rng = np.random.default_rng(seed)
    xs = (2, cin, h, w) if layout == "NCHW" else (2, h, w, cin)
    x = rng.standard_normal(xs).astype(np.float32)
    weight = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    exp = fp.conv2d(x.astype(np.float64), weight.astype(np.float64), padding=1, layout=layout, backend="numpy")
    tol = 2 * cin * 9 * np.finfo(np.float32).eps * np.abs(x).max() * np.abs(weight).max()
    for backend in TESTED_BACKENDS:
        got = fp.conv2d(x, weight, padding=1, layout=layout, backend=backend)
        assert np.max(np.abs(got - exp)) <= tol, backend
