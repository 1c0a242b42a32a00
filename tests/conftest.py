import numpy as np
import pytest

import fastpoint as fp

#: backends compared with the NumPy reference (every available one but the reference itself)
FAST_BACKENDS = [b for b in fp.backends() if b != "numpy"]


@pytest.fixture(params=FAST_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=fp.backends())
def any_backend(request):
    return request.param


def int_array(rng, shape, lo=-3, hi=3, dtype=np.float32):
    """Integer-valued floats: sums are exact in float32, whatever the summation order."""
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)
