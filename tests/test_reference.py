"""The NumPy reference against explicit loops, on small cases."""
import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array
from .naive import conv2d_loops

CASES = [
    # (n, cin, h, w, cout, kh, kw, stride, padding, pad_tblr, dilation, groups)
    (1, 3, 5, 6, 4, 3, 3, (1, 1), 1, (1, 1, 1, 1), (1, 1), 1),
    (2, 4, 7, 5, 6, 3, 2, (2, 1), (1, 0), (1, 1, 0, 0), (1, 2), 2),
    (1, 4, 6, 6, 8, 3, 3, (1, 1), "same", (2, 2, 2, 2), (2, 2), 4),
    (1, 2, 6, 7, 2, 2, 4, (1, 1), "same", (0, 1, 1, 2), (1, 1), 1),
    (1, 3, 8, 8, 3, 5, 5, (3, 2), 2, (2, 2, 2, 2), (1, 1), 3),
    (1, 5, 4, 4, 2, 1, 1, (2, 2), "valid", (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("case", CASES)
def test_reference_matches_loops(case):
    n, cin, h, w, cout, kh, kw, stride, padding, pads, dilation, groups = case
    rng = np.random.default_rng(1)
    x = int_array(rng, (n, cin, h, w), dtype=np.float64)
    weight = int_array(rng, (cout, cin // groups, kh, kw), dtype=np.float64)
    bias = int_array(rng, (cout,), dtype=np.float64)
    got = fp.conv2d(x, weight, bias, stride, padding, dilation, groups, backend="numpy")
    np.testing.assert_array_equal(got, conv2d_loops(x, weight, bias, stride, pads, dilation, groups))


def test_same_padding_puts_extra_at_bottom_right():
    # even kernel: total padding 1 goes entirely to the bottom/right, as in PyTorch
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    w = np.ones((1, 1, 2, 2), dtype=np.float32)
    y = fp.conv2d(x, w, padding="same", backend="numpy")
    assert y.shape == x.shape
    assert y[0, 0, 0, 0] == 0 + 1 + 4 + 5
    assert y[0, 0, 3, 3] == 15
