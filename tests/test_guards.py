"""C kernels never touch memory outside their arrays and never read the output: a guard-region harness.

Every buffer a kernel sees (input, packed weights, bias, output) is carved out of a larger one whose
guard regions before and after are filled with NaN bytes.  After packing and running:

* the guards of every buffer are bit-for-bit unchanged (no write outside an array);
* the inputs are unchanged (no write to an input);
* the result equals the NumPy reference exactly (integer data).  The output starts as NaN and the
  input guards and unwritten packing padding are NaN, so a kernel that reads the output before
  writing it, or that uses a value from outside its input, produces NaN and fails the comparison.

Reads outside an array whose value is then discarded (over-wide vector loads) are invisible here;
the AddressSanitizer pass (tools/sanitize.sh) catches those.  Every ISA the CPU supports is run
in-process (``fp_set_isa`` and a fresh packing), with 1 and 2 threads, on shapes around the vector
and tile widths.
"""
import itertools

import numpy as np
import pytest

from fastpoint.core.spec import make_layer, make_spec

from .conftest import C_ISAS

c = pytest.importorskip("fastpoint.backends.c")
if c.lib is None:
    pytest.skip("the C extension is not built", allow_module_level=True)
ffi, lib = c.ffi, c.lib

GUARD_BYTES = 256  # plus one element: inputs and outputs start off cache-line (but on element) alignment
ISAS = list(range(int(lib.fp_isa_supported()) + 1))
ISA_NAMES = {i: ffi.string(lib.fp_isa_name(i)).decode() for i in ISAS}


class Guarded:
    """``n`` elements of ``dtype`` between two NaN-filled guard regions."""

    def __init__(self, n: int, dtype, align: int = 0):
        self.dtype = np.dtype(dtype)
        payload = n * self.dtype.itemsize
        guard = GUARD_BYTES + self.dtype.itemsize if not align else GUARD_BYTES
        self.raw = np.empty(payload + 2 * guard + 64, np.uint8)
        start = ((-self.raw.ctypes.data) % 64 if align else 0) + guard
        self.lo, self.hi = start, start + payload
        self.raw[:] = 0xFF  # all-ones is a NaN in float32 and float64
        self.bytes = self.raw[self.lo:self.hi]
        self.guards_before = self.raw[:self.lo].copy()
        self.guards_after = self.raw[self.hi:].copy()

    def array(self, shape) -> np.ndarray:
        return self.bytes.view(self.dtype).reshape(shape)

    def ptr(self, ctype: str):
        return ffi.cast(ctype, self.raw.ctypes.data + self.lo)

    def guards_intact(self) -> bool:
        return (np.array_equal(self.raw[:self.lo], self.guards_before)
                and np.array_equal(self.raw[self.hi:], self.guards_after))


def guarded_copy(arr: np.ndarray) -> Guarded:
    g = Guarded(arr.size, arr.dtype)
    g.array(arr.shape)[...] = arr
    return g


def _problems():
    """(name, N, Cin, H, W, Cout, K, stride, padding, dilation, groups, layout) around tile edges."""
    out = []
    for cin, cout, layout in itertools.product((1, 7, 8, 9, 16, 17), (1, 8, 15, 16, 33), ("NCHW", "NHWC")):
        out.append((1, cin, 3, 13, cout, 1, 1, 1, 0, 1, 1, layout))  # 1x1: GEMM remainders in M, N, K
    for w, k, s, pad, d in itertools.product((1, 5, 17, 31), (3,), (1, 2), (0, 1), (1, 2)):
        if w + 2 * pad >= d * (k - 1) + 1:
            out.append((2, 8, 6, w, 16, k, k, s, pad, d, 1, "NCHW"))
            out.append((1, 9, 5, w, 17, k, k, s, pad, d, 1, "NHWC"))
    for ch, mult, layout in itertools.product((1, 8, 17, 32), (1, 2), ("NCHW", "NHWC")):
        out.append((1, ch, 7, 19, ch * mult, 3, 3, 1, 1, 1, ch, layout))  # depthwise (+ multiplier)
        out.append((2, ch, 9, 9, ch * mult, 5, 5, 2, 2, 1, ch, layout))
    out.append((1, 12, 6, 10, 18, 3, 3, 1, 1, 1, 3, "NCHW"))  # grouped
    out.append((1, 12, 6, 10, 18, 3, 3, 2, 0, 1, 3, "NHWC"))
    out.append((1, 5, 9, 8, 6, 7, 7, 2, 3, 1, 1, "NCHW"))
    out.append((1, 5, 9, 8, 6, 1, 7, 1, (0, 3), 1, 1, "NHWC"))
    return out


PROBLEMS = _problems()


def _run_guarded(prob, dtype, threads: int, relu: bool, with_bias: bool, seed: int):
    n, cin, h, w, cout, kh, kw, stride, padding, dilation, groups, layout = prob
    rng = np.random.default_rng(seed)
    weight = rng.integers(-2, 3, size=(cout, cin // groups, kh, kw)).astype(dtype)
    xs = (n, cin, h, w) if layout == "NCHW" else (n, h, w, cin)
    x = rng.integers(-3, 4, size=xs).astype(dtype)
    bias = rng.integers(-4, 5, size=cout).astype(dtype) if with_bias else None
    layer = make_layer(weight, stride, padding, dilation, groups, layout, "relu" if relu else None, dtype)
    spec = make_spec(layer, xs, weight.shape)

    f64 = int(np.dtype(dtype) == np.float64)
    ctype = "double *" if f64 else "float *"
    p = c._problem(layer, spec)
    p.num_threads = threads

    gw, gx = guarded_copy(weight), guarded_copy(x)
    gb = guarded_copy(bias) if bias is not None else None
    packed = Guarded(int(lib.fp_packed_bytes(p, f64)), np.uint8, align=64)
    pack = lib.fp_pack_f64 if f64 else lib.fp_pack_f32
    assert pack(p, gw.ptr(ctype), packed.ptr("void *")) == 0
    assert packed.guards_intact(), "packing wrote outside the packed buffer"
    assert np.array_equal(gw.array(weight.shape), weight), "packing wrote to the weights"

    gy = Guarded(int(np.prod(spec.out_shape)), dtype)  # payload starts as NaN: never to be read
    conv = lib.fp_conv_f64 if f64 else lib.fp_conv_f32
    rc = conv(p, gx.ptr(ctype), packed.ptr("void *"), gb.ptr(ctype) if gb else ffi.NULL, gy.ptr(ctype))
    kernel = ffi.string(lib.fp_kernel_name(p, f64)).decode()
    where = f"{kernel} isa={ISA_NAMES[int(lib.fp_isa())]} threads={threads} problem={prob} {np.dtype(dtype)}"
    assert rc == 0, f"{where}: returned {rc}"
    assert gy.guards_intact(), f"{where}: wrote outside the output"
    for name, g, arr in (("x", gx, x), ("weight", gw, weight), ("bias", gb, bias)):
        if g is not None:
            assert g.guards_intact() and np.array_equal(g.array(arr.shape), arr), f"{where}: wrote into {name}"
    assert packed.guards_intact(), f"{where}: wrote outside the packed weights"

    from fastpoint.backends.numpy import NumpyBackend

    expected = np.empty(spec.out_shape, dtype)
    NumpyBackend().run(spec, weight, x, bias, expected)
    got = gy.array(spec.out_shape)
    assert np.array_equal(got, expected), (
        f"{where}: differs from the reference (NaN count {int(np.isnan(got).sum())}: "
        "a NaN means an output read before written or an input read outside its array)")


@pytest.fixture
def isa(isa):
    """The shared ISA-forcing fixture (conftest), as the integer level these tests index by."""
    return C_ISAS[isa]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_stay_inside_their_arrays(isa, dtype):
    for i, prob in enumerate(PROBLEMS):
        threads = 1 + i % 2
        relu, with_bias = bool(i % 3 == 0), bool(i % 4 != 1)
        _run_guarded(prob, dtype, threads, relu, with_bias, seed=i)


def test_packed_weights_from_another_isa_are_refused(isa):
    prob = (1, 8, 5, 5, 8, 3, 3, 1, 1, 1, 1, "NCHW")
    weight = np.ones((8, 8, 3, 3), np.float32)
    layer = make_layer(weight, 1, 1, 1, 1, "NCHW", None, np.float32)
    spec = make_spec(layer, (1, 8, 5, 5), weight.shape)
    p = c._problem(layer, spec)
    packed = Guarded(int(lib.fp_packed_bytes(p, 0)), np.uint8, align=64)
    assert lib.fp_pack_f32(p, ffi.cast("float *", weight.ctypes.data), packed.ptr("void *")) == 0
    x, y = np.ones((1, 8, 5, 5), np.float32), np.empty((1, 8, 5, 5), np.float32)
    args = (ffi.cast("float *", x.ctypes.data), packed.ptr("void *"), ffi.NULL, ffi.cast("float *", y.ctypes.data))
    assert lib.fp_conv_f32(p, *args) == 0
    assert lib.fp_conv_f64(p, ffi.cast("double *", x.ctypes.data), *args[1:3],
                           ffi.cast("double *", y.ctypes.data)) == -2  # packed as f32
    for other in ISAS:
        if other != isa:
            lib.fp_set_isa(other)
            assert lib.fp_conv_f32(p, *args) == -2, f"weights packed for {ISA_NAMES[isa]} ran on {ISA_NAMES[other]}"
    lib.fp_set_isa(isa)
    del prob


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_more_than_64_threads(layout):
    """A machine with more than 64 CPUs (forced: fp_set_max_threads) running every algorithm at 96
    threads: the direct driver once kept per-worker arrays of 64 entries indexed by worker id, written
    past their end (on the stack) by workers 64..95.  Under tools/sanitize.sh such a write aborts."""
    lib.fp_set_max_threads(96)
    try:
        for prob in ((4, 16, 40, 24, 48, 3, 3, 1, 1, 1, 1, layout),     # direct: 4 x 40 row jobs
                     (2, 24, 30, 30, 40, 1, 1, 1, 0, 1, 1, layout),     # 1x1 GEMM
                     (2, 32, 30, 30, 32, 3, 3, 1, 1, 1, 32, layout),    # depthwise
                     (2, 6, 20, 20, 8, 3, 3, 1, 1, 2, 2, layout)):      # grouped, dilated
            for dtype in (np.float32, np.float64):
                _run_guarded(prob, dtype, 96, relu=True, with_bias=True, seed=1)
    finally:
        lib.fp_set_max_threads(0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_one_shot_on_weights_past_l2_stays_inside_its_arrays(isa, layout):
    """The one-shot 1x1 form for small maps with weights past L2 (csrc/gemm/gemm_once_wrows.c: W's rows read in
    place, 16-row windows of W transposed for the last pixels, the last window shifted back to end at Cout)
    on guarded arrays: nothing written outside the output or into the caller's weights, and the reference's
    result (a read of the NaN output or guards would show)."""
    from fastpoint.backends.numpy import NumpyBackend
    from fastpoint.core import machine

    cin = 2400
    cout = int(1.1 * machine.cache_sizes()[2] / (4 * cin)) + 1
    cout += 4 if cout % 16 == 0 else 0  # off a multiple of 16
    rng = np.random.default_rng(31)
    weight = rng.integers(-1, 2, size=(cout, cin, 1, 1)).astype(np.float32)
    bias = rng.integers(-4, 5, size=cout).astype(np.float32)
    for (h, w), threads in itertools.product(((7, 7), (4, 13), (4, 5)), (1, 2)):
        xs = (1, cin, h, w) if layout == "NCHW" else (1, h, w, cin)
        x = rng.integers(-1, 2, size=xs).astype(np.float32)
        layer = make_layer(weight, 1, 0, 1, 1, layout, None, np.float32)
        spec = make_spec(layer, xs, weight.shape)
        p = c._problem(layer, spec)
        p.num_threads = threads
        gw, gx, gb = guarded_copy(weight), guarded_copy(x), guarded_copy(bias)
        gy = Guarded(int(np.prod(spec.out_shape)), np.float32)
        rc = lib.fp_conv_once_f32(p, gx.ptr("float *"), gw.ptr("float *"), gb.ptr("float *"), gy.ptr("float *"), 0)
        where = f"isa={ISA_NAMES[int(lib.fp_isa())]} threads={threads} map={h}x{w} {layout}"
        assert rc == 0, f"{where}: returned {rc}"
        assert gy.guards_intact(), f"{where}: wrote outside the output"
        for name, g, arr in (("x", gx, x), ("weight", gw, weight), ("bias", gb, bias)):
            assert g.guards_intact() and np.array_equal(g.array(arr.shape), arr), f"{where}: wrote into {name}"
        expected = np.empty(spec.out_shape, np.float32)
        NumpyBackend().run(spec, weight, x, bias, expected)
        assert np.array_equal(gy.array(spec.out_shape), expected), f"{where}: differs from the reference"
