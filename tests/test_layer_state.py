"""A Conv2d layer is a snapshot of its weights: later changes to the caller's arrays change nothing."""
import numpy as np

import fastpoint as fp


def test_layer_ignores_later_changes_to_weight_and_bias(any_backend):
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    b = np.ones(3, np.float32)
    layer = fp.Conv2d(w, b, padding=1, backend=any_backend)
    expected = fp.conv2d(x, w, b, padding=1, backend="numpy")
    first = layer(x)
    w *= 2
    b[:] = -7
    np.testing.assert_array_equal(layer(x), first)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(layer(x.astype(np.float64)), expected)  # packed after the change
