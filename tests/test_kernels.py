"""Every row of the kernel tables (fastpoint.kernels(), csrc/kernel_table.c), forced in turn.

A new row of an existing family is tested here without new code: its tile drives the problem sizes
(output channels and pixels below, at and above the tile and its double), and the forced kernel must
be the one that runs and must equal the NumPy reference exactly (integer-valued data).  A new family
needs its problems in PROBLEMS below (the test says so).  Also: the forcing override itself (refusals,
FASTPOINT_KERNEL, packings that record their kernel) and the records' naming scheme.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback
from fastpoint.backends.kernel_table import force_kernels, forced_kernel

from .conftest import int_array

pytestmark = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

C_ROWS = [k for k in fp.kernels() if k.backend == "c"]
DTYPES = {"float32": np.float32, "float64": np.float64}


def around(n):
    """Sizes below, at and above n and 2n (the remainders of one and two tiles)."""
    return sorted({max(1, v) for v in (1, n - 1, n, n + 1, 2 * n + 1)})


def gemm_problems(k):
    """1x1 convolutions: MR x NR tiles of output channels x pixels (NCHW) or pixels x channels (NHWC)."""
    mr, nr = k.tile
    for layout in ("NCHW", "NHWC"):
        for rows in around(mr):
            for cols in around(nr):
                cout, pixels = (rows, cols) if layout == "NCHW" else (cols, rows)
                yield dict(x=(1, 5, 1, pixels), w=(cout, 5, 1, 1), layout=layout)
        yield dict(x=(2, 9, 7, 7), w=(2 * nr + 1, 9, 1, 1), layout=layout, stride=2)


def conv_problems(k):
    """KxK convolutions: tiles of up to tile_m output pixels of a row x tile_n output channels."""
    rw, cw = k.tile
    for layout in ("NCHW", "NHWC"):
        for ow in around(rw):
            for cout in around(cw):
                yield dict(x=(1, 3, 3, ow), w=(cout, 3, 3, 3), layout=layout, padding=1)
        yield dict(x=(2, 6, 9, 2 * rw + 3), w=(cw + 4, 3, 3, 3), layout=layout, stride=2, padding=1, groups=2)


def convpx_problems(k):
    """KxK convolutions with pixels in the lanes (few input channels): mc output channels x up to tile_n pixels
    of a row; channels and widths below, at and above the tile, Cin 1..4 and above, strides, dilation, groups,
    the 7x7 s2 stem, NHWC rows whose span (stride x channels) takes the permute or the transpose fill."""
    mc, px = k.tile
    for layout in ("NCHW", "NHWC"):
        for i, ow in enumerate(around(px)):
            for cin, cout in zip((1, 2, 3, 4, 3), around(mc)):
                yield dict(x=(1, cin, 4, ow + i % 2), w=(cout, cin, 3, 3), layout=layout, padding=1)
        yield dict(x=(2, 3, 11, 2 * px + 3), w=(mc + 3, 3, 7, 7), layout=layout, stride=2, padding=3)
        yield dict(x=(1, 4, 9, px + 5), w=(2 * mc, 2, 3, 3), layout=layout, stride=2, padding=1, groups=2)
        yield dict(x=(1, 2, 10, 19), w=(mc, 2, 3, 3), layout=layout, dilation=2, padding=(2, 1))
        yield dict(x=(1, 9, 7, 21), w=(mc + 1, 9, 3, 3), layout=layout, stride=(1, 2), padding=(0, 2))
        yield dict(x=(2, 5, 6, 13), w=(3, 5, 1, 3), layout=layout, stride=3)


def generic_problems(k):
    """Any problem runs on the generic loops when forced: 1x1, KxK, strided, dilated, grouped, depthwise."""
    for layout in ("NCHW", "NHWC"):
        yield dict(x=(1, 4, 5, 6), w=(7, 4, 1, 1), layout=layout)
        yield dict(x=(2, 6, 9, 11), w=(10, 3, 3, 3), layout=layout, stride=2, padding=1, groups=2)
        yield dict(x=(1, 4, 10, 9), w=(4, 1, 3, 3), layout=layout, dilation=2, padding=2, groups=4)


def dwconv_problems(k):
    """Depthwise convolutions: blocks of up to tile_m output pixels x tile_n channels (NHWC), NCHW on
    transposed tiles.  Widths stay below 32, where kernels without AVX-512 leave NCHW to the generic loops."""
    px, ch = k.tile
    for layout in ("NCHW", "NHWC"):
        for ow in around(px):
            for c in [c for c in around(ch) if c > 1]:  # depthwise: groups = channels > 1
                yield dict(x=(1, c, 4, ow), w=(c, 1, 3, 3), layout=layout, padding=1, groups=c)
        yield dict(x=(2, ch + 1, 9, 2 * px + 3), w=(2 * ch + 2, 1, 3, 3), layout=layout, stride=2, padding=1,
                   groups=ch + 1)  # channel multiplier 2
        yield dict(x=(1, ch - 1, 8, px + 5), w=(ch - 1, 1, 5, 5), layout=layout, dilation=2, padding=4, groups=ch - 1)


def winograd_problems(k):
    """Opt-in Winograd (3x3 stride 1; the forced row runs on every map): maps below, at and above its m x m
    tile and two tiles, every padding kind; channels off the vector width.  Not exact (docs/winograd.md)."""
    m, _ = k.tile
    for layout in ("NCHW", "NHWC"):
        for hw in around(m):
            yield dict(x=(1, 3, hw + 2, hw + 1), w=(5, 3, 3, 3), layout=layout, padding=1, algorithm="winograd")
        yield dict(x=(2, 17, 2 * m + 3, 3 * m + 1), w=(33, 17, 3, 3), layout=layout, padding=(0, 2),
                   algorithm="winograd")


def interleave_problems(k):
    """The 2x2 stride-2 transposed conv's store (csrc/lowered/): input rows of widths around the row's pair
    count and one of several steps (16-byte aligned outputs: the AVX-512 row's masked head before it streams),
    NCHW (the store interleaves the kx = 0, 1 rows there), channels off the GEMM tile."""
    _, pairs = k.tile
    for w in around(pairs) + [3 * pairs + 5]:
        yield dict(op="conv_transpose2d", x=(2, 5, 3, w), w=(5, 9, 2, 2), stride=2)
        # the general transposed conv's store (deconv_scatter.c) interleaves its stride-2 row pairs too
        yield dict(op="conv_transpose2d", x=(1, 5, 3, w), w=(5, 9, 4, 4), stride=2, padding=1)


def conv1d_problems(k):
    """The direct conv1d (csrc/conv1d/, NCL): MR output channels x NR positions of one row; lengths and channels
    around the tile, dilated and causal, strided stems with Cin = 1 (the phase split)."""
    mr, nr = k.tile
    for cout in around(mr):
        for length in around(nr):
            yield dict(op="conv1d", x=(1, 3, length + 2), w=(cout, 3, 3), padding=1)
    yield dict(op="conv1d", x=(2, 5, 3 * nr + 7), w=(mr + 3, 5, 2), padding=(8, 0), dilation=8)
    yield dict(op="conv1d", x=(2, 1, 5 * nr + 13), w=(2 * mr + 1, 1, 10), stride=5, padding=(2, 3))


PROBLEMS = {"conv1d": conv1d_problems, "gemm": gemm_problems, "conv": conv_problems, "convpx": convpx_problems,
            "dwconv": dwconv_problems,
            "generic": generic_problems,
            "interleave": interleave_problems, "winograd": winograd_problems}


def run_forced_transposed(k, prob, rng):
    x = int_array(rng, prob["x"], dtype=DTYPES[k.dtype])
    wt = int_array(rng, prob["w"], dtype=DTYPES[k.dtype])
    b = int_array(rng, (prob["w"][1],), dtype=DTYPES[k.dtype])
    pad = prob.get("padding", 0)
    expected = fp.conv_transpose2d(x, wt, b, prob["stride"], pad, backend="numpy", activation="relu")
    out = np.full_like(expected, np.nan)  # every output must be written
    got = fp.conv_transpose2d(x, wt, b, prob["stride"], pad, backend="c", activation="relu", out=out)
    np.testing.assert_array_equal(got, expected, err_msg=f"{k.name} on {prob}")


def run_forced_conv1d(k, prob, rng):
    x = int_array(rng, prob["x"], dtype=DTYPES[k.dtype])
    wt = int_array(rng, prob["w"], dtype=DTYPES[k.dtype])
    b = int_array(rng, (prob["w"][0],), dtype=DTYPES[k.dtype])
    kw = {key: v for key, v in prob.items() if key not in ("op", "x", "w")}
    expected = fp.conv1d(x, wt, b, backend="numpy", activation="relu", **kw)
    out = np.full_like(expected, np.nan)  # every output must be written
    layer = fp.Conv1d(wt, b, backend="c", activation="relu", **kw)
    np.testing.assert_array_equal(layer(x, out=out), expected, err_msg=f"{k.name} on {prob}")
    row = layer._conv
    spec = row._make_spec(row._layer.with_dtype(x.dtype), x[:, :, None, :].shape)
    assert row._get_backend().kernel_name(spec) == k.name, f"{prob}: another kernel ran"


def run_forced(k, prob, rng):
    if prob.get("op") == "conv_transpose2d":
        return run_forced_transposed(k, prob, rng)
    if prob.get("op") == "conv1d":
        return run_forced_conv1d(k, prob, rng)
    layout = prob.get("layout", "NCHW")
    n, c, h, w = prob["x"]
    dtype = DTYPES[k.dtype]
    x = int_array(rng, (n, c, h, w) if layout == "NCHW" else (n, h, w, c), dtype=dtype)
    wt = int_array(rng, prob["w"], dtype=dtype)
    b = int_array(rng, (prob["w"][0],), dtype=dtype)
    kw = {key: v for key, v in prob.items() if key not in ("x", "w")}
    expected = fp.conv2d(x, wt, b, backend="numpy", activation="relu", **kw)
    out = np.full_like(expected, np.nan)  # every output must be written
    layer = fp.Conv2d(wt, b, backend="c", activation="relu", **kw)
    got = layer(x, out=out)
    if prob.get("algorithm") == "winograd":  # rounds differently: the bound of docs/winograd.md
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=f"{k.name} on {prob}")
    else:
        np.testing.assert_array_equal(got, expected, err_msg=f"{k.name} on {prob}")
    from fastpoint.core.spec import make_spec

    spec = make_spec(layer._layer.with_dtype(dtype), x.shape, wt.shape)
    assert cback.CBackend().kernel_name(spec) == k.name, f"{prob}: another kernel ran"


@pytest.mark.parametrize("name", [k.name for k in C_ROWS])
def test_every_kernel_forced(name):
    k = next(r for r in C_ROWS if r.name == name)
    if not k.available:
        pytest.skip(f"{name}: this CPU lacks {k.isa}")
    assert k.family in PROBLEMS, f"family {k.family!r} has no problems in tests/test_kernels.py PROBLEMS yet"
    rng = np.random.default_rng(0)
    with forced_kernel(name):
        for prob in PROBLEMS[k.family](k):
            run_forced(k, prob, rng)


NAME = re.compile(r"^(f32|f64)_([a-z0-9_]+?)(?:_(\d+)x(\d+)c?|_(\d+)c)?__(avx512|avx2|scalar|jit)$")


def test_records_follow_the_naming_scheme():
    rows = fp.kernels()
    assert len({k.name for k in rows}) == len(rows), "kernel names must be unique"
    assert {k.family for k in C_ROWS} >= {"gemm", "conv", "dwconv", "generic"}
    for k in rows:
        m = NAME.match(k.name)
        assert m, f"{k.name} does not read <dtype>_<family>_<tile>__<isa> (docs/conventions.md)"
        assert {"f32": "float32", "f64": "float64"}[m.group(1)] == k.dtype and m.group(6) == k.isa
        assert k.backend in ("c", "numba") and isinstance(k.available, bool)
        if k.backend == "c" and m.group(3):
            assert k.tile == (int(m.group(3)), int(m.group(4))), f"{k.name}: tile {k.tile}"
    # every C family has a portable row, so every machine can run every algorithm
    for fam in {k.family for k in C_ROWS}:
        assert any(k.isa == "scalar" and k.available for k in C_ROWS if k.family == fam), fam


def test_cli_lists_the_tables():
    import contextlib
    import io

    from fastpoint.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["info", "--kernels"]) == 0
    text = buf.getvalue()
    for k in fp.kernels():
        assert k.name in text


def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match="unknown C kernel 'f32_gemm_1x1__nope'"):
        force_kernels("f32_gemm_1x1__nope")
    two = [k.name for k in C_ROWS if k.family == "gemm" and k.available][:2]
    if len(two) == 2:
        with pytest.raises(ValueError, match="two float32 kernels of family 'gemm'"):
            force_kernels(two)
    missing = [k for k in C_ROWS if not k.available]
    if missing:
        with pytest.raises(ValueError, match="needs"):
            force_kernels(missing[0].name)
    # a refusal changes nothing: the default choice still runs
    x, w = np.ones((1, 3, 4, 4), np.float32), np.ones((5, 3, 1, 1), np.float32)
    np.testing.assert_array_equal(fp.conv2d(x, w, backend="c"), np.full((1, 5, 4, 4), 3, np.float32))


def test_packing_records_its_kernel():
    """Weights packed under a forced kernel are refused once the override changes (pack again)."""
    scalar = next(k.name for k in C_ROWS if k.family == "gemm" and k.isa == "scalar")
    w = np.ones((5, 3, 1, 1), np.float32)
    x = np.ones((1, 3, 4, 4), np.float32)
    default = fp.Conv2d(w, backend="c")
    with forced_kernel(scalar):
        layer = fp.Conv2d(w, backend="c")
        np.testing.assert_array_equal(layer(x), np.full((1, 5, 4, 4), 3, np.float32))
    best = next(k for k in C_ROWS if k.family == "gemm" and k.available)
    if best.name != scalar:
        with pytest.raises(RuntimeError, match="packed weights do not match"):
            layer(x)
    np.testing.assert_array_equal(default(x), np.full((1, 5, 4, 4), 3, np.float32))


def _run_env(value):
    code = ("import numpy as np, fastpoint as fp\n"
            "from fastpoint.backends import get_backend\n"
            "from fastpoint.core.spec import make_spec\n"
            "w = np.ones((5, 3, 3, 3), np.float32)\n"
            "x = np.ones((1, 3, 6, 6), np.float32)\n"
            "c = fp.Conv2d(w, padding=1, backend='c')\n"
            "assert np.array_equal(c(x), fp.conv2d(x, w, padding=1, backend='numpy'))\n"
            "print(get_backend('c').kernel_name(make_spec(c._layer.with_dtype(np.float32), x.shape, w.shape)))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FASTPOINT_KERNEL=value), cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_fastpoint_kernel_variable():
    portable = next(k.name for k in C_ROWS if k.family == "conv" and k.isa == "scalar")
    out = _run_env(portable)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == portable
    bad = _run_env("f32_conv_99x99__avx512")
    assert bad.returncode != 0
    assert "FASTPOINT_KERNEL=f32_conv_99x99__avx512: unknown C kernel" in bad.stderr


def test_numba_rows_have_binders():
    """Each row of the Numba table has its binder in numba_kernels.bind (and no binder lacks a row)."""
    pytest.importorskip("numba")
    from fastpoint.backends import numba_kernels
    from fastpoint.backends.numba_kernels.table import ROWS

    assert set(numba_kernels._BINDERS) == {r.family for r in ROWS}
