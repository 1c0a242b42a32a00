"""The Numba backend's worker threads (numba_kernels/workers.py): each task runs exactly once, the
thread count is honoured, and a helper that cannot start in time never holds the call up."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from fastpoint.backends.numba_kernels import workers  # noqa: E402
from fastpoint.backends.numba_kernels.simd import fetch_add  # noqa: E402

from .conftest import run_in_threads  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _toy(ntasks, spin, owner, ids, counter):
    """Task t spins ``spin`` steps and records which worker ran it (workers number themselves)."""
    me = fetch_add(ids, 0, 1)
    task, me = workers.start(counter, ntasks, 1)
    while task < ntasks:
        s = 0.0
        for i in range(spin):
            s += np.sqrt(i)
        owner[task] = me if s >= 0 else -2
        task = workers.next_task(counter, me, 1, 1)


_toy_nogil = njit(nogil=True)(_toy)
_toy_holding_the_gil = njit(nogil=False)(_toy)


def _run(kernel, threads, ntasks=64, spin=20000):
    owner = np.full(ntasks, -1, np.int64)
    workers.run(kernel, (ntasks, spin, owner, np.zeros(1, np.int64)), threads)
    return owner


def test_every_task_runs_once_on_at_most_threads_workers():
    for threads in (1, 2, 3):
        owner = _run(_toy_nogil, threads)
        assert (owner >= 0).all()  # each task ran (to completion: the caller waited for it)
        assert len(set(owner.tolist())) <= min(threads, workers.max_threads())


def test_one_thread_runs_on_the_caller_alone():
    before = len(workers._helpers)
    owner = _run(_toy_nogil, 1)
    assert (owner == 0).all()
    assert len(workers._helpers) == before


@njit(nogil=True)
def _toy_waiting(ntasks, patience, owner, ids, counter):
    """Like _toy, but the first task waits (up to ``patience`` polls) until a second worker has
    started, so that on a busy machine the helper surely gets its chance to take a task."""
    me = fetch_add(ids, 0, 1)
    task, me = workers.start(counter, ntasks, 1)
    while task < ntasks:
        if task == 0:
            for _ in range(patience):
                if fetch_add(ids, 0, 0) >= 2:
                    break
        owner[task] = me
        task = workers.next_task(counter, me, 1, 1)


@pytest.mark.skipif(workers.max_threads() < 2, reason="needs 2 CPUs")
def test_two_threads_share_the_tasks():
    owner = _run(_toy_waiting, 2, ntasks=8, spin=2_000_000_000)
    assert (owner >= 0).all()
    assert set(owner.tolist()) == {0, 1}  # the helper joined and took the tasks after the first


@pytest.mark.skipif(workers.max_threads() < 2, reason="needs 2 CPUs")
def test_a_helper_that_cannot_start_does_not_hold_the_call():
    # a kernel that keeps the GIL leaves the woken helper unable to start until the caller is done:
    # the caller then runs every task and returns without waiting for the helper
    owner = _run(_toy_holding_the_gil, 2)
    assert (owner == 0).all()
    time.sleep(0.05)  # the helper wakes late, finds no task and touches nothing
    assert (owner == 0).all()


def test_concurrent_calls_from_python_threads():
    def work():
        for _ in range(20):
            owner = _run(_toy_nogil, 2, ntasks=16, spin=2000)
            assert (owner >= 0).all()

    run_in_threads(work, 4)


def test_backend_never_starts_a_numba_parallel_region():
    # Numba's threading layer is never launched (its thread pools neither spin against fastpoint's
    # workers nor abort on concurrent calls); threads: 1 starts no helper, nor does a tiny layer at 2;
    # a ResNet 3x3 layer at 2 starts one
    code = ("import threading, numpy as np, numba, fastpoint as fp\n"
            "x = np.ones((1, 8, 20, 20), np.float32); w = np.ones((16, 8, 3, 3), np.float32)\n"
            "def helpers(): return sum(t.name == 'fastpoint-numba-helper' for t in threading.enumerate())\n"
            "fp.set_num_threads(1); fp.conv2d(x, w, backend='numba')\n"
            "fp.conv2d(x, w[:8, :1], groups=8, backend='numba')\n"
            "print(helpers())\n"
            "fp.set_num_threads(2); fp.conv2d(x, w, backend='numba')\n"
            "print(helpers())\n"  # too small for a helper (see numba_kernels.useful_threads)
            "big, wb = np.ones((1, 64, 56, 56), np.float32), np.ones((64, 64, 3, 3), np.float32)\n"
            "y = fp.conv2d(big, wb, backend='numba')\n"
            "assert (y == 576).all()\n"
            "print(helpers())\n"
            "try:\n"
            "    numba.threading_layer(); print('launched')\n"
            "except ValueError:\n"
            "    print('none')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0] == "0"
    assert lines[1] == "0"
    assert lines[2] == ("1" if workers.max_threads() >= 2 else "0")
    assert lines[3] == "none"


def test_helpers_do_not_keep_the_arrays_of_a_finished_call():
    import gc
    import weakref

    owner = np.full(64, -1, np.int64)
    ref = weakref.ref(owner)
    workers.run(_toy_nogil, (64, 20000, owner, np.zeros(1, np.int64)), 2)
    del owner
    for _ in range(200):  # a helper may still be returning from the call
        gc.collect()
        if ref() is None:
            return
        time.sleep(0.005)
    pytest.fail("a helper thread still holds the last call's arrays")


@njit(nogil=True)
def _toy_ranges(ntasks, patience, owner, ids, counter):
    """Task 0 waits (bounded) until the second worker has claimed a task of its own range."""
    me = fetch_add(ids, 0, 1)
    task, slot = workers.start(counter, ntasks, 1)
    while task < ntasks:
        if task == 0:
            for _ in range(patience):
                if fetch_add(counter, workers._LINE * 2, 0) > 0:
                    break
        owner[task] = me
        task = workers.next_task(counter, slot, 1, 1)


@pytest.mark.skipif(workers.max_threads() < 2, reason="needs 2 CPUs")
def test_each_worker_starts_with_its_own_range():
    # tasks are dealt in one range per worker, so that back-to-back calls give each thread the same
    # part of a layer (its data stays in that core's L2): the second worker starts at task 4 of 8
    owner = _run(_toy_ranges, 2, ntasks=8, spin=2_000_000_000)
    assert (owner >= 0).all()
    assert owner[0] == 0 and owner[4] == 1


def test_many_calls_reuse_the_counter_ring_safely():
    # more calls than the ring has rows, each with every task run exactly once
    for i in range(workers.RING * 2 + 3):
        owner = _run(_toy_nogil, 2, ntasks=8 + i % 5, spin=200)
        assert (owner >= 0).all()


def test_ranges_never_hand_out_a_block_twice():
    # blocks of `claim` tasks from 3 ranges: interior range bounds are multiples of the block size
    @njit
    def deal(ntasks, claim, ranges, order):
        counter = np.zeros(workers._LINE * (ranges + 1), np.int64)
        counter[workers._RANGES] = ranges
        seen = np.zeros(ntasks, np.int64)
        slots = np.zeros(ranges, np.int64)
        firsts = np.zeros(ranges, np.int64)
        for w in range(ranges):
            firsts[w], slots[w] = workers.start(counter, ntasks, claim)
        k = 0
        while True:
            w = order[k % order.shape[0]]
            k += 1
            t = firsts[w]
            if t >= ntasks:
                if (firsts >= ntasks).all():
                    return seen
                continue
            for i in range(t, min(ntasks, t + claim)):
                seen[i] += 1
            firsts[w] = workers.next_task(counter, slots[w], min(ntasks, t + claim) - t, claim)

    for ntasks in (1, 5, 16, 17, 40):
        for claim in (1, 3, 16):
            seen = deal(ntasks, claim, 3, np.array([0, 2, 2, 1, 0, 0, 0], np.int64))
            assert (seen == 1).all(), (ntasks, claim, seen)


@pytest.mark.skipif(workers.max_threads() < 2 or not hasattr(os, "sched_setaffinity"), reason="needs 2 CPUs, Linux")
def test_a_helper_keeps_off_the_callers_cpu():
    # _leave changes the affinity of the thread that calls it (a helper: here a throwaway thread)
    import threading

    result = {}

    def body():
        h = workers._Helper.__new__(workers._Helper)
        h._base = h._allowed = frozenset(os.sched_getaffinity(0))
        cpu = min(h._base)
        h._leave(cpu)
        result["after"] = os.sched_getaffinity(0)
        result["cpu"] = cpu
        h._leave(cpu)  # already off that CPU: nothing to do
        result["again"] = os.sched_getaffinity(0)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert result["cpu"] not in result["after"] and result["after"]
    assert result["again"] == result["after"]
    assert result["cpu"] in os.sched_getaffinity(0)  # the calling (test) thread is untouched
