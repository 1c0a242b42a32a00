"""Warm-cache loads of the Numba kernels skip Numba's full registry refresh (numba_kernels/cacheload.py).
Where the cache lives: tests/test_numba_cache_dir.py.

Each check runs in fresh processes sharing one Numba cache directory: the first process compiles
(or loads), the second must load every kernel path from the cache, give exact results, and leave
Numba fully usable for the user's own jitted code afterwards.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# every kernel path once: dense NCHW/NHWC (prepared input and 1x1 direct), grouped, depthwise NCHW
# (per-plane and small-plane kernels) and NHWC, float64, 1 and 2 threads (the workers' spin loops)
CHILD = r"""
import sys
import numpy as np
import fastpoint as fp

rng = np.random.default_rng(0)
def arr(*shape, dtype=np.float32):
    return rng.integers(-3, 4, size=shape).astype(dtype)

cases = [
    ("NCHW", arr(1, 8, 9, 9), arr(16, 8, 3, 3), dict(padding=1)),
    ("NHWC", arr(1, 9, 9, 8), arr(16, 8, 3, 3), dict(padding=1, stride=2)),
    ("NCHW", arr(1, 8, 6, 6), arr(12, 8, 1, 1), {}),
    ("NCHW", arr(1, 8, 7, 7), arr(8, 2, 3, 3), dict(groups=4, padding=1)),
    ("NCHW", arr(1, 16, 7, 7), arr(16, 1, 3, 3), dict(groups=16, padding=1, activation="relu")),
    ("NCHW", arr(1, 4, 40, 40), arr(4, 1, 3, 3), dict(groups=4, padding=1)),
    ("NHWC", arr(1, 7, 7, 16), arr(16, 1, 3, 3), dict(groups=16, padding=1)),
    ("NCHW", arr(1, 8, 9, 9, dtype=np.float64), arr(16, 8, 3, 3), dict(padding=1)),
]
for threads in (1, 2):
    fp.set_num_threads(threads)
    for layout, x, w, kw in cases:
        got = fp.conv2d(x, w, layout=layout, backend="numba", **kw)
        want = fp.conv2d(x, w, layout=layout, backend="numpy", **kw)
        np.testing.assert_array_equal(got, want)
print("registries", "numba.np.arraymath" in sys.modules)

import numba

@numba.njit
def user_code(a):  # needs the registries the kernel loads skipped: they must load now
    return np.median(a) + np.cumsum(a)[-1] + np.sort(a)[0]

a = np.arange(5.0)
assert abs(user_code(a) - (np.median(a) + np.cumsum(a)[-1] + np.sort(a)[0])) < 1e-12

try:
    import scipy.linalg  # noqa: F401  Numba's linear algebra needs SciPy's BLAS; not a fastpoint dependency
except ImportError:
    pass
else:
    @numba.njit
    def user_linalg(a):
        return np.dot(a, a) + np.linalg.norm(a)

    assert abs(user_linalg(a) - (np.dot(a, a) + np.linalg.norm(a))) < 1e-12
layout, x, w, kw = cases[0]
np.testing.assert_array_equal(fp.conv2d(x, w, layout=layout, backend="numba", **kw),
                              fp.conv2d(x, w, layout=layout, backend="numpy", **kw))
print("ok")
"""


def _run(env) -> str:
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_warm_cache_loads_without_registries_and_numba_stays_usable():
    # the default cache directory, which the rest of the suite fills: usually nothing to compile here
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    first = _run(env)
    assert first.split()[-1] == "ok"
    warm = _run(env)
    assert warm.split() == ["registries", "False", "ok"], warm


def test_only_fastpoint_dispatchers_change():
    from numba import njit
    from numba.core.caching import FunctionCache, NullCache

    from fastpoint.backends.numba_kernels import cacheload, prepare

    @njit(cache=True)
    def users_cached(a):
        return a + 1

    @njit
    def users_uncached(a):
        return a + 1

    namespace = {"cached": users_cached, "uncached": users_uncached, "other": np.float32}
    cacheload.cache_kernels(namespace)
    assert type(users_cached._cache) is FunctionCache and type(users_uncached._cache) is NullCache
    assert users_cached(1) == 2 and users_uncached(1) == 2
    kernel_cache = prepare.prepare_nchw._cache
    assert isinstance(kernel_cache, cacheload._KernelCache)
    assert kernel_cache._cache_path.startswith(cacheload.cache_root())
