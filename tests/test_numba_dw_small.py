"""The Numba small-plane depthwise NCHW kernel (vectors across channels): edges of its tiles."""
import numpy as np
import pytest

import fastpoint as fp
from fastpoint.core.threads import thread_limit

from .conftest import int_array

pytest.importorskip("numba")


def run_both(x, w, b=None, **kw):
    got = fp.conv2d(x, w, b, backend="numba", **kw)
    np.testing.assert_array_equal(got, fp.conv2d(x, w, b, backend="numpy", **kw))


# channel counts across the 16 (float32) / 8 (float64) lane blocks; widths 1..20 (< 32 takes the
# small-plane kernel) cover the 4-pixel tile's remainders; heights 1..5
@pytest.mark.parametrize("c", [1, 7, 16, 17, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_planes_widths_heights(c, dtype):
    rng = np.random.default_rng(c)
    w = int_array(rng, (c, 1, 3, 3), dtype=dtype)
    b = int_array(rng, (c,), dtype=dtype)
    for wd in range(1, 21):
        h = 1 + wd % 5
        x = int_array(rng, (2, c, h, wd), dtype=dtype)
        run_both(x, w, b, padding=1, groups=c, activation="relu")
        if h >= 3:
            run_both(x, w, padding=(0, 1), groups=c)


@pytest.mark.parametrize("kw", [dict(stride=2), dict(stride=2, padding=1), dict(stride=(1, 2), padding=(2, 0)),
                                dict(dilation=2, padding=2), dict(dilation=(2, 1), padding=1, stride=2),
                                dict(padding=3), dict(stride=3, padding=2)])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_small_planes_stride_dilation_padding(kw, k):
    rng = np.random.default_rng(k)
    c = 20
    w = int_array(rng, (c, 1, k, k))
    for hw in ((1, 1), (5, 7), (7, 7), (4, 13), (14, 14)):
        x = int_array(rng, (1, c) + hw)
        try:
            ref = fp.conv2d(x, w, groups=c, backend="numpy", **kw)
        except ValueError:  # window larger than the padded input
            continue
        np.testing.assert_array_equal(fp.conv2d(x, w, groups=c, backend="numba", **kw), ref)


def test_small_planes_multiplier_2_and_threads():
    rng = np.random.default_rng(2)
    x = int_array(rng, (2, 24, 7, 7))
    run_both(x, int_array(rng, (48, 1, 3, 3)), int_array(rng, (48,)), padding=1, groups=24)
    w = int_array(rng, (960, 1, 3, 3))
    x = int_array(rng, (3, 960, 7, 7))
    with thread_limit(2):
        run_both(x, w, int_array(rng, (960,)), padding=1, groups=960, activation="relu")


def test_small_planes_nan_reaches_exactly_its_window():
    x = np.ones((1, 17, 6, 6), np.float32)
    x[0, 16, 2, 3] = np.nan
    w = np.ones((17, 1, 3, 3), np.float32)
    got = fp.conv2d(x, w, padding=1, groups=17, backend="numba", activation="relu")
    ref = fp.conv2d(x, w, padding=1, groups=17, backend="numpy", activation="relu")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("kshape", [(1, 3), (2, 3), (5, 3), (3, 1), (3, 2)])
@pytest.mark.parametrize("kw", [dict(), dict(padding=1), dict(dilation=(2, 1), padding=(2, 1)),
                                dict(stride=(2, 1), padding=1), dict(stride=(1, 2), padding=1)])
def test_small_planes_non_square_kernels(kshape, kw):
    # 3-wide kernels at column stride/dilation 1 take the row-reuse tile (_pixels_row3), the others not
    rng = np.random.default_rng(kshape[0])
    c = 19
    w = int_array(rng, (c, 1) + kshape)
    for hw in ((5, 3), (6, 7), (9, 13)):
        x = int_array(rng, (2, c) + hw)
        run_both(x, w, int_array(rng, (c,)), groups=c, activation="relu", **kw)
