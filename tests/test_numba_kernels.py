"""The Numba kernels at their tile edges, with special values, from several threads, and lazily imported."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp

from .conftest import int_array, run_in_threads

pytest.importorskip("numba")


def ref(x, w, b=None, **kw):
    return fp.conv2d(x, w, b, backend="numpy", **kw)


def run_both(x, w, b=None, **kw):
    got = fp.conv2d(x, w, b, backend="numba", **kw)
    np.testing.assert_array_equal(got, ref(x, w, b, **kw))


def _x(rng, n, c, h, w, layout, dtype=np.float32):
    x = int_array(rng, (n, c, h, w), dtype=dtype)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


# Tile widths: NCHW tiles are 6 output channels x 2 vectors of positions (32 float32 / 16 float64 on
# AVX-512), NHWC tiles 6 pixels x 2 vectors of channels; depthwise uses 4 vectors or 4 pixels.
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cout", [1, 5, 6, 7, 12, 13, 31, 32, 33])
def test_channel_tile_remainders(layout, cout):
    rng = np.random.default_rng(cout)
    x = _x(rng, 1, 7, 5, 6, layout)
    w = int_array(rng, (cout, 7, 3, 3))
    run_both(x, w, int_array(rng, (cout,)), padding=1, layout=layout, activation="relu")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 15), (2, 16), (3, 11), (4, 8), (5, 7), (1, 33), (7, 7), (9, 13)])
def test_position_tile_remainders(layout, hw):
    rng = np.random.default_rng(sum(hw))
    h, wd = hw
    x = _x(rng, 2, 3, h, wd, layout)
    for k, pad in ((1, 0), (3, 1)):
        w = int_array(rng, (4, 3, k, k))
        run_both(x, w, padding=pad, layout=layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("c", [1, 3, 15, 16, 17, 33])
def test_depthwise_remainders(layout, c):
    rng = np.random.default_rng(c)
    x = _x(rng, 1, c, 9, 11, layout)
    w = int_array(rng, (c, 1, 3, 3))
    run_both(x, w, int_array(rng, (c,)), padding=1, groups=c, layout=layout, activation="relu")
    run_both(x, w, stride=2, groups=c, layout=layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float64_strided_dilated_grouped(layout):
    rng = np.random.default_rng(5)
    x = _x(rng, 2, 12, 13, 14, layout, np.float64)
    w = int_array(rng, (18, 4, 3, 3), dtype=np.float64)
    run_both(x, w, int_array(rng, (18,), dtype=np.float64), stride=2, padding=2, dilation=2, groups=3,
             layout=layout, activation="relu")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups", [1, 8])
def test_nan_and_inf_reach_exactly_their_window(layout, groups):
    # NaN and Inf in the last (masked) tile and in the first one; ReLU keeps NaN; junk lanes stay out
    rng = np.random.default_rng(7)
    x = int_array(rng, (1, 8, 7, 9))
    x[0, 2, 0, 0] = np.nan
    x[0, 5, 6, 8] = np.inf
    w = np.abs(int_array(rng, (8, 8 // groups, 3, 3))) + 1
    kw = dict(padding=1, groups=groups, activation="relu")
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    got = fp.conv2d(xl, w, layout=layout, backend="numba", **kw)
    want = ref(xl, w, layout=layout, **kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got, want)


def test_output_garbage_never_read():
    rng = np.random.default_rng(8)
    x = int_array(rng, (1, 5, 7, 7))
    w = int_array(rng, (7, 5, 3, 3))
    out = np.full((1, 7, 7, 7), np.nan, np.float32)
    fp.conv2d(x, w, padding=1, backend="numba", out=out)
    np.testing.assert_array_equal(out, ref(x, w, padding=1))


def test_concurrent_python_threads_do_not_crash():
    # several Python threads at once, each call on 2 threads where it gets the helpers (see workers.py)
    rng = np.random.default_rng(9)
    x = int_array(rng, (2, 8, 12, 12))
    w = int_array(rng, (16, 8, 3, 3))
    want = ref(x, w, padding=1)
    def work():
        for _ in range(20):
            np.testing.assert_array_equal(fp.conv2d(x, w, padding=1, backend="numba"), want)

    run_in_threads(work, 4)


def _python(code: str, **env) -> str:
    full_env = {**os.environ, **env}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_fastpoint_does_not_import_numba():
    out = _python("import sys, fastpoint; fastpoint.backends(); print('numba' in sys.modules)")
    assert out.strip() == "False"


def test_block_sizes_without_the_c_extension():
    # the Numba backend must not need the C extension: cache sizes fall back to sysconf/defaults
    out = _python(
        "import sys; sys.modules['fastpoint._cconv'] = None\n"
        "import numpy as np, fastpoint as fp\n"
        "from fastpoint.backends.numba_kernels import blocking\n"
        "assert 'c' not in fp.backends()\n"
        "s = blocking.cache_sizes(); assert s[1] > 0 and s[2] > 0\n"
        "x = np.ones((1, 3, 5, 5), np.float32); w = np.ones((2, 3, 3, 3), np.float32)\n"
        "print(float(fp.conv2d(x, w, padding=1, backend='numba')[0, 0, 2, 2]))"
    )
    assert out.strip() == "27.0"


def test_concurrent_threads_with_the_workqueue_layer():
    # workqueue is Numba's fallback layer when neither TBB nor OpenMP is present; it aborts the process
    # on concurrent parallel launches.  The backend runs no Numba parallel region at all (its own
    # worker threads, see workers.py), so the layer setting must make no difference
    out = _python(
        "import threading, numpy as np, numba, fastpoint as fp\n"
        "x = np.ones((1, 8, 12, 12), np.float32); w = np.ones((16, 8, 3, 3), np.float32)\n"
        "want = fp.conv2d(x, w, padding=1, backend='numpy')\n"
        "fp.set_num_threads(2)\n"
        "bad = []\n"
        "def work():\n"
        "    for _ in range(10):\n"
        "        if not np.array_equal(fp.conv2d(x, w, padding=1, backend='numba'), want): bad.append(1)\n"
        "ts = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(numba.config.THREADING_LAYER, len(bad))",
        NUMBA_THREADING_LAYER="workqueue",
    )
    assert out.split() == ["workqueue", "0"]
