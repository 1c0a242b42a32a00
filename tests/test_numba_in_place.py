"""Dense NCHW layers with few output channels read their input in place (no packed panel): both paths
give the reference's exact results, NaN windows included."""
import numpy as np
import pytest

import fastpoint as fp
from fastpoint.core.threads import thread_limit

from .conftest import int_array

pytest.importorskip("numba")


@pytest.fixture(params=[0, 3], ids=["packed", "in_place"])
def in_place_tiles(request, monkeypatch):
    from fastpoint.backends import numba_kernels

    monkeypatch.setattr(numba_kernels, "IN_PLACE_CO_TILES", request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cout,groups,k,stride", [(2, 1, 1, 1), (16, 1, 1, 1), (18, 1, 1, 2), (13, 1, 3, 1),
                                                   (8, 2, 1, 1), (19, 1, 1, 1)])
def test_small_cout_paths(in_place_tiles, dtype, cout, groups, k, stride):
    rng = np.random.default_rng(cout * 10 + k)
    cin = 6
    x = int_array(rng, (2, cin, 9, 37), dtype=dtype)
    x[1, 2, 4, 30] = np.nan
    w = int_array(rng, (cout, cin // groups, k, k), dtype=dtype)
    b = int_array(rng, (cout,), dtype=dtype)
    kw = dict(stride=stride, padding=k // 2, groups=groups, activation="relu")
    for threads in (1, 2):
        with thread_limit(threads):
            got = fp.conv2d(x, w, b, backend="numba", **kw)
        np.testing.assert_array_equal(got, fp.conv2d(x, w, b, backend="numpy", **kw))
    assert np.isnan(got[1]).any() and not np.isnan(got[0]).any()
