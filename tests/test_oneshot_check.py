"""The one-shot weight check (csrc/oneshot.c) on every ISA path: a NaN or +-Inf anywhere among the caller's
weights (rows the packing takes 16 (AVX-512) or 8 (AVX2) at a time, the element-wise edge rows, the last
partial vector of a separate check) reaches the padded outputs, as ``0 * w`` does in the reference."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.core.threads import thread_limit

from .conftest import int_array

# (x shape NCHW, weight shape, kwargs): direct (packed inside its loops; Cout 40 = 2 x 16 + 8 edge rows,
# Cin x taps = 333 columns, off the vector width) and depthwise (packed after the split and checked as it
# packs, csrc/dwconv: 37 channels = 2 x 16 + 5 per NCHW job, 37 x 9 = 333 weights)
CASES = [((1, 37, 5, 5), (40, 37, 3, 3), dict(padding=1)),
         ((1, 37, 6, 6), (37, 1, 3, 3), dict(padding=1, groups=37))]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_one_shot_check_finds_each_non_finite_weight(isa, layout, case, threads):
    """1 thread: the direct case packs inside its loops (one row block); 2: its rows split, it packs first."""
    xs, ws, kw = CASES[case]
    rng = np.random.default_rng(case)
    x, w = int_array(rng, xs), int_array(rng, ws)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    flat = w.size
    for where in (0, 17, flat // 2, 16 * (flat // 16) - 1, flat - 1):
        for bad in (np.nan, np.inf, -np.inf):
            wb = w.copy()
            wb.reshape(-1)[where] = bad
            want = fp.conv2d(x, wb, layout=layout, backend="numpy", **kw)
            with thread_limit(threads):
                got = fp.conv2d(x, wb, layout=layout, backend="c", **kw)
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fp.conv2d(x, w, layout=layout, backend="c", **kw),
                                  fp.conv2d(x, w, layout=layout, backend="numpy", **kw))
