import contextlib
import os
import threading

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as _cbackend

# Every C call is split across the threads it is allowed, as before the thread rule (backends/c.py
# call_threads keeps calls too small to pay for a pool wake on one thread): the thread-count sweeps of
# the tests use small problems, and must still split them.  tests/test_call_entry.py tests the rule.
_cbackend.WAKES_PER_SPLIT = 0.0

# Hypothesis profiles: "ci" (default) is bounded and derandomized so CI is fast and repeatable;
# "long" explores far more (HYPOTHESIS_PROFILE=long, or pytest --hypothesis-profile=long).
try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=80, deadline=None, derandomize=True, print_blob=True)
    settings.register_profile("long", max_examples=3000, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test extra; only tests/test_property.py needs it
    pass

#: FASTPOINT_TEST_BACKENDS=c,numba limits the backend fixtures (the sanitizer pass tests C only)
_ONLY = [b for b in os.environ.get("FASTPOINT_TEST_BACKENDS", "").split(",") if b]
TESTED_BACKENDS = [b for b in fp.backends() if not _ONLY or b in _ONLY or b == "numpy"]

#: backends compared with the NumPy reference (every available one but the reference itself)
FAST_BACKENDS = [b for b in TESTED_BACKENDS if b != "numpy"]


@pytest.fixture(params=FAST_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=TESTED_BACKENDS)
def any_backend(request):
    return request.param


def int_array(rng, shape, lo=-3, hi=3, dtype=np.float32):
    """Integer-valued floats: sums are exact in float32, whatever the summation order."""
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def pytest_collection_modifyitems(config, items):
    """Tests marked slow are skipped in a plain ``pytest`` run (CI); select them with ``-m slow``
    (or any ``-m`` expression) or FASTPOINT_SLOW=1."""
    if config.option.markexpr or os.environ.get("FASTPOINT_SLOW", "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or FASTPOINT_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


#: the C backend's ISA paths, by the names FASTPOINT_ISA takes
C_ISAS = {"scalar": 0, "avx2": 1, "avx512": 2}


@contextlib.contextmanager
def forced_isa(level: int):
    """Run the C backend's ``level`` path (0 scalar, 1 avx2, 2 avx512) in-process, then put back the ISA
    it had; skips the test where the extension is missing or the CPU lacks the ISA.  Packings record
    their ISA, so weights must be packed afresh inside (fp.conv2d and fresh fp.Conv2d layers do)."""
    from fastpoint.backends import c as cback

    lib = cback.lib
    if lib is None:
        pytest.skip("C extension not built")
    if level > lib.fp_isa_supported():
        pytest.skip(f"CPU lacks ISA level {level}")
    before = int(lib.fp_isa())
    assert int(lib.fp_set_isa(level)) == level
    try:
        yield level
    finally:
        lib.fp_set_isa(before)


@pytest.fixture(params=list(C_ISAS))
def isa(request):
    """Force each C ISA path in turn; the value is its name (``C_ISAS[isa]`` is the level that
    lib.fp_isa() returns).  conv2d packs afresh on every call."""
    with forced_isa(C_ISAS[request.param]):
        yield request.param


def assert_c_equals_reference(x, w, b=None, layout="NCHW", **kw):
    """The C backend, writing into a NaN-filled out= (every output must be written), equals the reference."""
    expected = fp.conv2d(x, w, b, backend="numpy", layout=layout, **kw)
    out = np.full_like(expected, np.nan)
    got = fp.conv2d(x, w, b, backend="c", layout=layout, out=out, **kw)
    np.testing.assert_array_equal(got, expected)


def run_in_threads(work, n: int = 4) -> None:
    """Run ``work()`` on ``n`` Python threads at once; fail with every exception they raised."""
    errors = []

    def guarded():
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
