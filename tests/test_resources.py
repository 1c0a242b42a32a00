"""Resources: no memory growth over many calls; 64-bit index math past 2**31 elements (slow)."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")


@linux_only
def test_no_memory_growth_over_10000_calls(any_backend):
    """10,000 tiny calls through every path (conv2d with fresh packing, a layer, out=, NHWC,
    depthwise, unbatched): the resident set must not grow (a leak of even 100 bytes per call
    would add 1 MB)."""
    rng = np.random.default_rng(0)
    x = int_array(rng, (1, 4, 5, 5))
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = int_array(rng, (4, 4, 3, 3))
    wd = int_array(rng, (4, 1, 3, 3))
    b = int_array(rng, (4,))
    layer = fp.Conv2d(w, b, padding=1, activation="relu", backend=any_backend)
    out = np.empty((1, 4, 5, 5), np.float32)

    def calls(count):
        for i in range(count):
            k = i % 5
            if k == 0:
                fp.conv2d(x, w, b, padding=1, backend=any_backend)
            elif k == 1:
                layer(x, out=out)
            elif k == 2:
                fp.conv2d(x_nhwc, wd, padding=1, groups=4, layout="NHWC", backend=any_backend)
            elif k == 3:
                fp.conv1x1(x[0], w[:, :, 0, 0], backend=any_backend)
            else:
                layer(x.astype(np.float64))

    threads = fp.get_num_threads()
    fp.set_num_threads(1)  # one thread: on a loaded CI box, team wake-ups would dominate the run time
    try:
        calls(2000)  # warm up: JIT, caches, allocator arenas
        gc.collect()
        before = _rss_bytes()
        calls(10_000)
        gc.collect()
        grown = _rss_bytes() - before
    finally:
        fp.set_num_threads(threads)
    assert grown < 1 << 20, f"RSS grew by {grown / 1024:.0f} KiB over 10,000 calls on {any_backend}"


# 2**31 + a few elements: the smallest input whose flat index does not fit a signed 32-bit int.
BIG_C, BIG_H, BIG_W = 2, 32768, 32769  # 2 * 32768 * 32769 = 2**31 + 65536 elements


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b for b in fp.backends() if b != "numpy"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_index_math_past_2_to_the_31(backend, layout):
    """An 8.6 GB float32 input that costs almost no memory: np.zeros maps untouched zero pages, a
    1x1 kernel with a large stride reads only a few rows, and only a handful of pages are written.
    Values placed past element 2**31 must land in the right outputs (32-bit index math would wrap)."""
    stride = (BIG_H - 1) // 7  # the last output row reads the last input row
    shape = (1, BIG_C, BIG_H, BIG_W) if layout == "NCHW" else (1, BIG_H, BIG_W, BIG_C)
    try:
        x = np.zeros(shape, np.float32)
    except MemoryError:
        pytest.skip("the system refuses an 8.6 GB virtual allocation")
    w = np.array([[1.0, 1000.0]], np.float32)  # (Cout=1, Cin=2)
    oh, ow = (BIG_H - 1) // stride + 1, (BIG_W - 1) // stride + 1
    rows, cols = [oh - 1, oh - 2, 0], [ow - 1, 0, ow - 2]
    expected = np.zeros((oh, ow), np.float32)
    for k, (oy, ox) in enumerate(zip(rows, cols)):
        iy, ix = oy * stride, ox * stride
        for c in range(BIG_C):
            v = np.float32(k + 1 + 10 * c)
            if layout == "NCHW":
                x[0, c, iy, ix] = v
                flat = (c * BIG_H + iy) * BIG_W + ix
            else:
                x[0, iy, ix, c] = v
                flat = (iy * BIG_W + ix) * BIG_C + c
            expected[oy, ox] += w[0, c] * v
            if k == 0 and c == BIG_C - 1:
                assert flat >= 2**31
    y = fp.conv1x1(x, w, stride=stride, layout=layout, backend=backend)
    got = y[0, 0] if layout == "NCHW" else y[0, :, :, 0]
    np.testing.assert_array_equal(got, expected)
