"""The C backend's 1x1 GEMM (csrc/gemm): every micro-kernel of the gemm table, every edge tile, every
code path.

Each test runs once per row of the table this CPU runs, forced in-process (kernel_table.forced_kernel;
weights are packed afresh, since packings record their kernel), so a new row is tested without new
code.  Data are small integers, so results must be equal.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import get_backend
from fastpoint.backends.kernel_table import forced_kernel

c_backend = get_backend("c")
pytestmark = pytest.mark.skipif(not c_backend.available(), reason="C extension not built")

if c_backend.available():
    from fastpoint.backends.c import lib

    SUPPORTED = int(lib.fp_isa_supported())
else:
    SUPPORTED = -1

#: the gemm table, best first; a row's tile is (MR, NR): NCHW tiles are MR output channels x NR
#: pixels, NHWC tiles MR pixels x NR output channels
GEMM = [k for k in fp.kernels() if k.backend == "c" and k.family == "gemm"]
LEVELS = {"scalar": 0, "avx2": 1, "avx512": 2}


@pytest.fixture(params=[k.name for k in GEMM])
def kernel(request):
    """Each gemm kernel in turn, forced in-process."""
    row = next(k for k in GEMM if k.name == request.param)
    if not row.available:
        pytest.skip(f"{row.name}: this CPU lacks {row.isa}")
    with forced_kernel(row.name):
        yield row


def check(kernel, n, cin, cout, h, w, stride=1, layout="NCHW", relu=False, bias=True, seed=0, nan_out=True):
    rng = np.random.default_rng(seed)
    xs = (n, cin, h, w) if layout == "NCHW" else (n, h, w, cin)
    x = rng.integers(-3, 4, size=xs).astype(np.float32)
    wt = rng.integers(-2, 3, size=(cout, cin, 1, 1)).astype(np.float32)
    b = rng.integers(-5, 6, size=cout).astype(np.float32) if bias else None
    act = "relu" if relu else None
    conv = fp.Conv2d(wt, b, stride=stride, layout=layout, activation=act, backend="c")
    expected = fp.conv2d(x, wt, b, stride=stride, layout=layout, activation=act, backend="numpy")
    out = np.full(expected.shape, np.nan, np.float32) if nan_out else None  # the output is never read
    got = conv(x, out=out)
    assert np.array_equal(got, expected), (
        f"{kernel.name} n={n} cin={cin} cout={cout} {h}x{w} s{stride} {layout}: "
        f"max |diff| = {np.nanmax(np.abs(got - expected))}")
    # the one-shot call on the caller's weights (NCHW: W read in place by the micro-kernel's row pointers;
    # NHWC and the transposed form: W^T panels packed inside the loops), on every shape the layer runs
    once = fp.conv2d(x, wt, b, stride=stride, layout=layout, activation=act, backend="c")
    assert np.array_equal(once, expected), (
        f"one-shot {kernel.name} n={n} cin={cin} cout={cout} {h}x{w} s{stride} {layout}: "
        f"max |diff| = {np.nanmax(np.abs(once - expected))}")


def test_kernel_is_used(kernel):
    spec_layer = fp.Conv2d(np.ones((4, 4, 1, 1), np.float32), backend="c")
    x = np.ones((1, 4, 3, 3), np.float32)
    from fastpoint.core.spec import make_spec

    spec = make_spec(spec_layer._layer.with_dtype(np.float32), x.shape, (4, 4, 1, 1))
    assert c_backend.kernel_name(spec) == kernel.name


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_column_remainder(kernel, layout):
    """Output channels 1 .. 2*NR+1 (NHWC columns, NCHW rows past every MR remainder)."""
    mr, nr = kernel.tile
    for cout in range(1, 2 * max(mr, nr) + 2):
        check(kernel, 1, 5, cout, 1, 2 * nr + 3, layout=layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_pixel_remainder(kernel, layout):
    """Pixels 1 .. 2*NR+1 (NCHW columns, NHWC rows past every MR remainder), with 1 and 2 row tiles."""
    mr, nr = kernel.tile
    for cout in (mr - 1 or 1, 2 * mr + 3):
        for pixels in range(1, 2 * max(mr, nr) + 2):
            check(kernel, 1, 3, cout, 1, pixels, layout=layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cin", [1, 2, 7, 63, 1601])  # 1601 > 1.5 x KC: C is read back between k blocks
def test_depths(kernel, layout, cin):
    check(kernel, 1, cin, 19, 5, 11, layout=layout, relu=True)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("stride", [2, 3, (2, 1)])
def test_strides(kernel, layout, stride):
    check(kernel, 2, 9, 13, 11, 14, stride=stride, layout=layout)
    check(kernel, 1, 33, 50, 9, 9, stride=stride, layout=layout, relu=True, bias=False)


@pytest.mark.parametrize("stride", [2, (1, 2), (3, 2), (2, 1)])
def test_strided_rows_packed_in_runs(kernel, stride):
    """Horizontal stride 1 or 2: each output row's pixels packed as one run (AVX-512: even-element permutes,
    the last vector's loads masked at the row's last pixel), runs of 1..35 pixels across panel edges."""
    for w in (1, 2, 31, 32, 33, 35, 69):
        check(kernel, 1, 7, 20, 9, w, stride=stride)
    check(kernel, 2, 70, 21, 13, 97, stride=stride, relu=True)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_batch_bias_relu(kernel, layout):
    for relu in (False, True):
        for bias in (False, True):
            check(kernel, 3, 20, 37, 6, 13, layout=layout, relu=relu, bias=bias)


@pytest.mark.parametrize("cin", [1, 5, 300, 2100])  # 2100 > 2048: the scattered tile is gathered back
@pytest.mark.parametrize("cout", [16, 47, 48, 100])
def test_small_maps_transposed_form(kernel, cin, cout):
    """7x7 and 5x5 NCHW maps run with vectors along Cout on AVX-512 (scattered stores)."""
    for hw in (7, 5):
        check(kernel, 2, cin, cout, hw, hw, relu=True)


@pytest.mark.parametrize("cin", [3, 300, 1601])  # 1601: two k blocks, C read back
def test_one_shot_nchw_thin_last_tiles(kernel, cin):
    """One-shot NCHW maps whose last column tile has 1..4 pixels (7x7 = 48 + 1, 14x14 = 4 x 48 + 4, also
    strided and batched), W read in place."""
    for hw in (7, 10, 14):
        check(kernel, 2, cin, 21, hw, hw, relu=True)
    check(kernel, 1, cin, 25, 27, 27, stride=2)  # 14x14 output from every other pixel
    check(kernel, 1, cin, 70, 50, 1, bias=False)  # 48 + 2 pixels in one row


@pytest.mark.parametrize("cin", [600, 2100])  # 2100: two k blocks, C read back
def test_one_shot_nhwc_small_maps(kernel, cin):
    """One-shot NHWC small maps (on AVX-512: W^T panels packed one at a time, the next panel's rows of W
    prefetched), batch folded, partial panels and pixel tiles."""
    for n, h, w in ((1, 7, 7), (1, 8, 8), (1, 7, 13), (2, 7, 7), (1, 14, 14), (1, 6, 6)):
        check(kernel, n, cin, 200, h, w, layout="NHWC", relu=h == 7)
    check(kernel, 1, cin, 100, 4, 13, layout="NHWC", bias=False)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_shot_equals_layer_bit_for_bit(kernel, layout, threads):
    """On random (not integer-valued) data the one-shot call's sums run in the layer's order: W read in place
    or packed per panel, the same micro-kernel k loop, so the results are equal bit for bit."""
    rng = np.random.default_rng(3)
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        for n, cin, cout, h, w, stride in ((1, 64, 100, 7, 7, 1), (1, 200, 64, 14, 14, 1), (32, 3, 64, 1, 1024, 1),
                                           (1, 33, 70, 20, 20, 2), (2, 1601, 24, 5, 5, 1), (1, 40, 12, 9, 9, 1)):
            xs = (n, cin, h, w) if layout == "NCHW" else (n, h, w, cin)
            x = rng.standard_normal(xs).astype(np.float32)
            wt = rng.standard_normal((cout, cin, 1, 1)).astype(np.float32)
            b = rng.standard_normal(cout).astype(np.float32)
            layer = fp.Conv2d(wt, b, stride=stride, layout=layout, backend="c")(x)
            once = fp.conv2d(x, wt, b, stride=stride, layout=layout, backend="c")
            assert np.array_equal(once, layer), (kernel.name, n, cin, cout, h, w, stride, layout)
    finally:
        fp.set_num_threads(before)


def test_heads_and_thin_layers(kernel):
    check(kernel, 1, 64, 2, 16, 40)
    check(kernel, 1, 64, 21, 16, 40, relu=True)
    check(kernel, 1, 16, 96, 12, 12)
    check(kernel, 1, 144, 24, 10, 10)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads(kernel, layout, threads):
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(kernel, 1, 40, 70, 30, 30, layout=layout)        # split by pixels
        check(kernel, 1, 300, 200, 3, 3, layout=layout)        # split by channels
        check(kernel, 2, 24, 10, 1, 5, layout=layout)          # fewer tiles than threads
    finally:
        fp.set_num_threads(before)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("hw", [(5, 9), (7, 7)])
def test_nan_reaches_exactly_its_pixel(kernel, layout, hw):
    """NaN in one input pixel gives NaN in exactly that output pixel, ReLU included."""
    h, w = hw
    rng = np.random.default_rng(1)
    xs = (1, 20, h, w) if layout == "NCHW" else (1, h, w, 20)
    x = rng.integers(-3, 4, size=xs).astype(np.float32)
    if layout == "NCHW":
        x[0, 3, 2, 4] = np.nan
    else:
        x[0, 2, 4, 3] = np.nan
    wt = rng.integers(-2, 3, size=(50, 20, 1, 1)).astype(np.float32)
    wt[:, 3] = 0  # zero weights must not skip the NaN
    y = fp.conv2d(x, wt, activation="relu", layout=layout, backend="c")
    mask = np.isnan(y[0, :, 2, 4] if layout == "NCHW" else y[0, 2, 4, :])
    assert mask.all()
    assert np.isnan(y).sum() == 50


def test_float64_falls_back_to_generic():
    x = np.ones((1, 4, 3, 3))
    w = np.ones((5, 4, 1, 1))
    from fastpoint.core.spec import make_spec

    layer = fp.Conv2d(w, backend="c")
    spec = make_spec(layer._layer.with_dtype(np.float64), x.shape, w.shape)
    assert "generic" in c_backend.kernel_name(spec)
    assert np.array_equal(layer(x), np.full((1, 5, 3, 3), 4.0))


@pytest.mark.parametrize("name", ["scalar", "avx2", "avx512"])
def test_isa_override_variable(name):
    """FASTPOINT_ISA picks the micro-kernel in a fresh process (lowered to what the CPU has)."""
    code = ("import numpy as np, fastpoint as fp\n"
            "from fastpoint.backends import get_backend\n"
            "from fastpoint.core.spec import make_spec\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.integers(-3, 4, (2, 37, 9, 11)).astype(np.float32)\n"
            "w = rng.integers(-2, 3, (29, 37, 1, 1)).astype(np.float32)\n"
            "c = fp.Conv2d(w, backend='c')\n"
            "assert np.array_equal(c(x), fp.conv2d(x, w, backend='numpy'))\n"
            "spec = make_spec(c._layer.with_dtype(np.float32), x.shape, w.shape)\n"
            "print(get_backend('c').kernel_name(spec))\n")
    env = dict(os.environ, FASTPOINT_ISA=name)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    want = min(LEVELS[name], SUPPORTED)
    best = next(k for k in GEMM if LEVELS[k.isa] <= want)  # the table is best first
    assert out.stdout.strip() == best.name


@pytest.mark.parametrize("offset", [0, 1])
def test_large_output_streamed(kernel, offset):
    """Outputs over L2 are written with non-temporal stores where rows are aligned (offset 0), with
    ordinary stores otherwise (offset 1 float)."""
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=(1, 16, 112, 112)).astype(np.float32)
    wt = rng.integers(-2, 3, size=(96, 16, 1, 1)).astype(np.float32)
    b = rng.integers(-5, 6, size=96).astype(np.float32)
    expected = fp.conv2d(x, wt, b, activation="relu", backend="numpy")
    raw = np.full(expected.size + 16 + offset, np.nan, np.float32)
    start = (-raw.ctypes.data // 4) % 16 + offset  # 64-byte aligned, then shifted
    out = raw[start:start + expected.size].reshape(expected.shape)
    got = fp.Conv2d(wt, b, activation="relu", backend="c")(x, out=out)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("cout", [96, 70])  # 70: a 22-column tail tile (masked, never streamed)
def test_large_nhwc_output_streamed(kernel, offset, cout):
    """NHWC outputs over L2 are streamed too (full, aligned 48-column tiles), with NaN in the output."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, size=(1, 112, 112, 16)).astype(np.float32)
    wt = rng.integers(-2, 3, size=(cout, 16, 1, 1)).astype(np.float32)
    b = rng.integers(-5, 6, size=cout).astype(np.float32)
    expected = fp.conv2d(x, wt, b, activation="relu", layout="NHWC", backend="numpy")
    raw = np.full(expected.size + 16 + offset, np.nan, np.float32)
    start = (-raw.ctypes.data // 4) % 16 + offset
    out = raw[start:start + expected.size].reshape(expected.shape)
    got = fp.Conv2d(wt, b, activation="relu", layout="NHWC", backend="c")(x, out=out)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_weights_past_l2_one_pixel_chunk_per_thread(kernel, layout, threads):
    """Weights larger than the detected L2 with the work cut along pixels: one chunk of pixels per thread
    (the driver's `chunks`), with Cout off every tile (1000 = 20 x 48 + 40 = 125 x 8; the 6x16 and
    4x16 tiles' edges too), a batch of 2 (NCHW: the chunks' tile ranges cross images) and rows that do not
    split evenly (2 x 19 x 21 pixels)."""
    cout = 1000
    cin = int(lib.fp_cache_size(2)) // (4 * cout) * 5 // 4 + 3  # 4 * cin * cout just past L2
    assert 4 * cin * cout > int(lib.fp_cache_size(2))
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(kernel, 2, cin, cout, 19, 21, layout=layout, relu=True)
    finally:
        fp.set_num_threads(before)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [0, 1, 3, 8])
def test_batch_path(kernel, layout, threads, n):
    """Batches (tiles of all images in one sequence for the thread split; the input prefetched two
    column tiles ahead) with pixel counts that are not multiples of NR (7x9 = 63, 13x11 = 143), a
    small map (7x7: transposed form on AVX-512) and a stride."""
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(kernel, n, 24, 20, 7, 9, layout=layout, relu=True)
        check(kernel, n, 40, 37, 13, 11, layout=layout)
        check(kernel, n, 33, 64, 7, 7, layout=layout, relu=True)
        check(kernel, n, 16, 19, 9, 10, stride=2, layout=layout)
    finally:
        fp.set_num_threads(before)


@pytest.mark.parametrize("hw", [(7, 7), (14, 14), (2, 5), (1, 3), (5, 5), (1, 5), (2, 3), (3, 5)])
@pytest.mark.parametrize("threads", [1, 2])
def test_small_map_last_pixel_tile(kernel, hw, threads):
    """The transposed form's last pixel tile of 1..7 pixels: read in place (1, 2, 4 pixels, the exact
    kernel instance) or packed (3, 5, 6, 7), split by channels over threads; never past X's end."""
    before = fp.get_num_threads()
    fp.set_num_threads(threads)
    try:
        check(kernel, 2, 37, 100, *hw, relu=True)
        check(kernel, 1, 300, 48, *hw, bias=False)
    finally:
        fp.set_num_threads(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_pool_survives_fork():
    """A forked child (multiprocessing's default on Linux) runs multi-threaded calls without the
    parent's helper threads."""
    before = fp.get_num_threads()
    fp.set_num_threads(2)
    try:
        rng = np.random.default_rng(5)
        x = rng.integers(-3, 4, size=(1, 64, 40, 40)).astype(np.float32)
        w = rng.integers(-2, 3, size=(32, 64, 1, 1)).astype(np.float32)
        expected = fp.conv2d(x, w, backend="numpy")
        assert np.array_equal(fp.conv2d(x, w, backend="c"), expected)  # helpers started in the parent
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            ok = np.array_equal(fp.conv2d(x, w, backend="c"), expected)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert status == 0
    finally:
        fp.set_num_threads(before)
