"""One-shot direct convolutions that pack the caller's weights inside the loops (csrc/direct/direct.c,
run_unpacked): bit-identical to the prepacked layer on integer-valued data across the packing's block
edges (several packed channel groups, partial 16-channel blocks, groups, dilation, stride), at 1 and 2
threads, NCHW and NHWC, and NaN weights still detected."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.core.threads import thread_limit

from .conftest import int_array

# (x shape NCHW, weight shape, kwargs): weight-heavy small maps, where each packed chunk serves one job
CASES = [
    ((1, 300, 7, 7), (50, 300, 3, 3), dict(padding=1)),                     # cin past several packed groups
    ((1, 40, 6, 5), (72, 40, 3, 3), dict(padding=(2, 1), dilation=(2, 1))),  # 4-block tiles, partial block
    ((1, 64, 9, 9), (40, 32, 3, 3), dict(padding=1, groups=2)),             # grouped
    ((1, 33, 11, 11), (17, 33, 5, 5), dict(padding=2, stride=2)),           # strided 5x5
    ((1, 520, 4, 4), (20, 520, 3, 3), dict(padding=1)),                     # a lone partial block
]


def _layout(x, layout):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_direct_one_shot_packed_in_loops_equals_prepacked(layout, case, threads):
    xs, ws, kw = CASES[case]
    rng = np.random.default_rng(case)
    x, w, b = _layout(int_array(rng, xs), layout), int_array(rng, ws), int_array(rng, ws[:1])
    with thread_limit(threads):
        want = fp.Conv2d(w, b, layout=layout, backend="c", **kw)(x)
        got = fp.conv2d(x, w, b, layout=layout, backend="c", **kw)
    np.testing.assert_array_equal(got, want)
    ref = fp.conv2d(x, w, b, layout=layout, backend="numpy", **kw)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("where", [0, -1])
def test_direct_one_shot_nan_weight_propagates(where):
    """A NaN weight times the zero padding is NaN (PyTorch semantics): the one-shot call must see it."""
    rng = np.random.default_rng(7)
    x, w = int_array(rng, (1, 200, 7, 7)), int_array(rng, (48, 200, 3, 3))
    w.reshape(-1)[where] = np.nan
    got = fp.conv2d(x, w, padding=1, backend="c")
    ref = fp.conv2d(x, w, padding=1, backend="numpy")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
