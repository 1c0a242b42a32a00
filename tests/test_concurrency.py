"""Thread safety: the GIL is released in C, concurrent calls are independent and correct, changing the
thread count under load is safe, and Numba's non-reentrant threading layer is serialised."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastpoint as fp

from .conftest import TESTED_BACKENDS, int_array

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_C = "c" in fp.backends()


@pytest.fixture(autouse=True)
def _restore_threads():
    before = fp.get_num_threads()
    yield
    fp.set_num_threads(before)


@pytest.mark.skipif(not HAS_C, reason="C extension not built")
def test_gil_is_released_during_a_c_call():
    """A Python thread keeps running while the main thread is inside one long C call.

    The counting thread stamps the time every 1000 steps.  Had the call held the GIL, the stamps
    would show a gap as long as the call; released, the longest gap is a scheduler slice."""
    fp.set_num_threads(1)
    rng = np.random.default_rng(0)
    w = int_array(rng, (64, 64, 5, 5))
    layer = fp.Conv2d(w, padding=2, backend="c")
    x = int_array(rng, (1, 64, 16, 16))
    while True:  # grow the input until one call lasts long enough (kernels get faster)
        start = time.perf_counter()
        layer(x)
        if time.perf_counter() - start > 0.1 or x.shape[0] >= 256:
            break
        x = np.concatenate([x, x])

    stamps = []
    stop = threading.Event()

    def spin():
        k = 0
        while not stop.is_set():
            k += 1
            if k % 1000 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.01)
        start = time.perf_counter()
        layer(x)
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    inside = [start] + [s for s in stamps if start < s < end] + [end]
    longest = max(b - a for a, b in zip(inside, inside[1:]))
    took = end - start
    assert len(inside) > 10, f"the Python thread made no progress during a {took:.3f} s C call"
    assert longest < 0.5 * took, f"the Python thread stalled {longest:.3f} s of a {took:.3f} s C call"


def _jobs():
    rng = np.random.default_rng(1)
    jobs = []
    backends = fp.backends()
    shapes = [((2, 8, 12, 12), (16, 8, 3, 3), dict(padding=1)),
              ((1, 16, 9, 9), (16, 1, 3, 3), dict(padding=1, groups=16)),
              ((3, 17, 7, 5), (33, 17, 1, 1), dict()),
              ((1, 12, 10, 10), (6, 4, 3, 3), dict(stride=2, groups=3)),
              ((2, 9, 6, 11), (5, 9, 5, 5), dict(padding="same", activation="relu")),
              ((1, 32, 8, 8), (64, 32, 1, 1), dict(stride=2)),
              ((2, 8, 11, 11), (8, 8, 3, 3), dict(dilation=2, padding=2)),
              ((1, 4, 16, 16), (8, 4, 7, 7), dict(stride=2, padding=3))]
    for i, (xs, ws, kw) in enumerate(shapes):
        layout = "NHWC" if i % 2 else "NCHW"
        x = int_array(rng, xs)
        if layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        w = int_array(rng, ws)
        b = int_array(rng, (ws[0],))
        kw = dict(kw, layout=layout)
        dtype = np.float64 if i % 3 == 2 else np.float32
        x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
        expected = fp.conv2d(x, w, b, backend="numpy", **kw)
        jobs.append((backends[i % len(backends)], x, w, b, kw, expected))
    return jobs


def _run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, "\n".join(errors)


def test_eight_threads_different_shapes_and_backends_at_once():
    jobs = _jobs()
    barrier = threading.Barrier(len(jobs))
    layers = [fp.Conv2d(w, b, backend=bk, **kw) for bk, x, w, b, kw, _ in jobs]

    def work(i):
        backend, x, w, b, kw, expected = jobs[i]
        barrier.wait()
        for rep in range(15):
            got = fp.conv2d(x, w, b, backend=backend, **kw) if rep % 2 else layers[i](x)
            np.testing.assert_array_equal(got, expected, err_msg=f"{backend} {kw} rep {rep}")

    _run_threads(work, len(jobs))


def test_one_layer_shared_by_threads():
    """A Conv2d packs lazily per (backend, dtype); first calls from many threads at once must agree."""
    rng = np.random.default_rng(2)
    w, b = int_array(rng, (24, 16, 3, 3)), int_array(rng, (24,))
    x32 = int_array(rng, (2, 16, 10, 10))
    layer = fp.Conv2d(w, b, padding=1)
    expected = fp.conv2d(x32, w, b, padding=1, backend="numpy")
    barrier = threading.Barrier(8)

    def work(i):
        x = x32.astype(np.float64) if i % 2 else x32
        barrier.wait()
        for _ in range(10):
            np.testing.assert_array_equal(layer(x), expected)

    _run_threads(work, 8)


def test_set_num_threads_while_other_threads_compute():
    jobs = [j for j in _jobs() if j[0] != "numpy"] or _jobs()
    stop = threading.Event()

    def churn():
        k = 0
        while not stop.is_set():
            fp.set_num_threads(1 + k % 4)
            k += 1
            time.sleep(0.0005)

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        def work(i):
            backend, x, w, b, kw, expected = jobs[i % len(jobs)]
            for _ in range(20):
                np.testing.assert_array_equal(fp.conv2d(x, w, b, backend=backend, **kw), expected)

        _run_threads(work, 6)
    finally:
        stop.set()
        churner.join()


_NUMBA_CHILD = textwrap.dedent("""
    import threading, numpy as np, fastpoint as fp, numba
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (2, 8, 24, 24)).astype(np.float32)
    w = rng.integers(-2, 3, (16, 8, 3, 3)).astype(np.float32)
    expected = fp.conv2d(x, w, padding=1, backend="numpy")
    fp.set_num_threads(2)
    errors = []
    def work():
        try:
            for _ in range(10):
                assert np.array_equal(fp.conv2d(x, w, padding=1, backend="numba"), expected)
                assert np.array_equal(fp.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, padding=1,
                                                layout="NHWC", backend="numba"), expected.transpose(0, 2, 3, 1))
        except BaseException as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors, errors
    print("layer", numba.config.THREADING_LAYER)
""")


@pytest.mark.skipif("numba" not in fp.backends(), reason="numba not installed")
@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_numba_threading_layer_is_safe_from_many_threads(layer):
    """Numba's workqueue layer aborts the process on concurrent parallel launches; the backend runs
    none (its own worker threads), whatever the layer setting.  In a child, so that an abort is a
    failure, not the end of the run."""
    env = dict(os.environ)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _NUMBA_CHILD], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    if layer != "default":
        assert f"layer {layer}" in proc.stdout


def test_absurd_thread_count_does_not_crash():
    """set_num_threads(100000) once crashed libgomp (SIGSEGV); the C entry clamps the team to the
    processors and Numba to its pool.  In a child, so that a crash is a failure."""
    code = ("import numpy as np, fastpoint as fp\n"
            "fp.set_num_threads(100000)\n"
            "x = np.ones((4, 8, 16, 16), np.float32); w = np.ones((8, 8, 3, 3), np.float32)\n"
            "for b in fp.backends():\n"
            "    assert fp.conv2d(x, w, backend=b).sum() == 4 * 8 * 14 * 14 * 72, b\n")
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"


_FORK_CHILD = textwrap.dedent("""
    import os, sys, numpy as np, fastpoint as fp
    parent, child = sys.argv[1], sys.argv[2]
    x = np.ones((4, 8, 16, 16), np.float32); w = np.ones((8, 8, 3, 3), np.float32)
    fp.set_num_threads(2)
    if parent != "none":
        fp.conv2d(x, w, backend=parent)  # starts the parent's C / Numba thread pool
    pid = os.fork()
    if pid == 0:
        try:
            ok = fp.conv2d(x, w, backend=child).sum() == 4 * 8 * 14 * 14 * 72
            os._exit(0 if ok else 3)
        except RuntimeError as e:  # a clear refusal is acceptable; a hang or a kill is not
            os._exit(7 if "fork" in str(e) else 4)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("parent", ["none", "c", "numba"])
@pytest.mark.parametrize("child", ["c", "numba"])
def test_calls_in_a_forked_child_neither_hang_nor_die(parent, child):
    """The C kernels' pool starts afresh in a forked child (csrc/pool.c, pthread_atfork) and runs the
    call on 2 threads there; so do the Numba backend's worker threads (numba_kernels/workers.py, reset
    by os.register_at_fork; no OpenMP team is involved).  multiprocessing's default start method on
    Linux is fork.

    Only the backends under test (FASTPOINT_TEST_BACKENDS): a Numba child compiles its kernels cold when
    nothing in the run compiled them before (7.5 s of CPU on this box, 26 s wall at load 9.5, whatever
    the parent ran: no fork-time lock), and under tools/sanitize.sh, which tests C only, that compile ran
    with ASan's allocator preloaded on a loaded box and passed the 120 s timeout."""
    if {parent, child} - set(TESTED_BACKENDS) - {"none"}:
        pytest.skip("backend not available or not under test")
    proc = subprocess.run([sys.executable, "-c", _FORK_CHILD, parent, child], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "child exit 0", proc.stdout + proc.stderr[-2000:]


# Shapes giving each C kernel few chunks (fewer than threads, or not a multiple of them) and many.
_RANGE_CASES = [
    ("NCHW", (1, 16, 5, 5), (8, 16, 1, 1), dict()),                    # 1x1 GEMM, tiny
    ("NHWC", (1, 56, 56, 16), (24, 16, 1, 1), dict()),                 # 1x1 GEMM, many pixels
    ("NHWC", (1, 7, 7, 96), (96, 1, 3, 3), dict(padding=1, groups=96)),    # depthwise, 7x7 map
    ("NCHW", (2, 48, 14, 14), (48, 1, 3, 3), dict(padding=1, groups=48)),  # depthwise
    ("NCHW", (1, 16, 9, 9), (32, 16, 3, 3), dict(padding=1)),              # direct
    ("NCHW", (1, 8, 11, 11), (8, 4, 3, 3), dict(padding=2, dilation=2, groups=2)),  # direct, grouped, dilated
]


@pytest.mark.skipif(not HAS_C, reason="C extension not built")
@pytest.mark.parametrize("layout,xs,ws,kw", _RANGE_CASES)
def test_chunk_ranges_cover_every_chunk_once(layout, xs, ws, kw):
    """Chunks are dealt in one range per worker and stolen across ranges (csrc/pool.c): at any thread
    count, also more threads than chunks or cores, back-to-back calls give the 1-thread result."""
    rng = np.random.default_rng(1)
    x, w, b = int_array(rng, xs), int_array(rng, ws), int_array(rng, (ws[0],))
    layer = fp.Conv2d(w, b, layout=layout, backend="c", **kw)
    fp.set_num_threads(1)
    expected = layer(x)
    for threads in (2, 3, 5, 16):
        fp.set_num_threads(threads)
        out = np.full_like(expected, np.nan)
        for _ in range(5):
            np.testing.assert_array_equal(layer(x, out=out), expected)


@pytest.mark.skipif(not HAS_C, reason="C extension not built")
def test_pool_results_exact_with_pauses_and_a_busy_thread():
    """Helpers that wake on the caller's CPU move off it, and a helper preempted inside a job is pulled
    onto the waiting caller's CPU (csrc/pool.c); neither may change a result.  Calls alternate with
    pauses (helpers asleep) and bursts (helpers spinning) while a busy thread competes for the CPUs."""
    rng = np.random.default_rng(2)
    x, w, b = int_array(rng, (1, 14, 14, 96)), int_array(rng, (96, 1, 3, 3)), int_array(rng, (96,))
    layer = fp.Conv2d(w, b, layout="NHWC", backend="c", padding=1, groups=96)
    before = fp.get_num_threads()
    fp.set_num_threads(1)
    expected = layer(x)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(2000))

    hog = threading.Thread(target=busy)
    hog.start()
    try:
        fp.set_num_threads(2)
        out = np.full_like(expected, np.nan)
        for burst in range(12):
            time.sleep(0.01 if burst % 2 else 0.0)
            for _ in range(50):
                np.testing.assert_array_equal(layer(x, out=out), expected)
    finally:
        stop.set()
        hog.join()
        fp.set_num_threads(before)
