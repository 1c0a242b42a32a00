"""The threads that run a Numba kernel: the calling thread plus helpers that join if they get a CPU.

Why not ``prange``: a Numba parallel region ends with a join that waits for every thread of its team.
When the machine has fewer free CPUs than the team has threads (another process is busy, or another
runtime's threads spin), a helper that is not scheduled holds the whole call until the scheduler gives
it a time slice; with OpenMP's spin-waiting helpers (Numba's ``omp`` layer) the team's own threads also
take turns on one CPU.  Measured on this 2-vCPU box with one other busy process: 12-20 ms per call
instead of 0.1-2 ms (docs/numba.md, "2 threads under load").

So the kernels are plain ``nogil`` functions that take tasks from a shared counter, and this module
runs them as the C backend's pool does (csrc/pool.c): the calling thread works too, helpers (Python
threads, started on first need) are woken to run the same function, and the caller waits only for
tasks that a helper has *started*.  A helper that gets no CPU finds no task left when it wakes and
does nothing; the call costs what one thread costs, never a scheduler time slice per call.

Counter protocol, ``counter = [next task, tasks done, task count]`` (int64): every worker writes the
task count, claims tasks with an atomic add on ``counter[0]`` and adds what it finished to
``counter[1]`` (see :func:`next_task`).  Numba's threading layer is never used, so neither its
``workqueue`` layer's abort on concurrent calls nor GNU OpenMP's trouble after ``fork()`` applies.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, List, Optional

import numpy as np
from numba import njit

from .simd import fetch_add


@njit(cache=True, inline="always")
def start(counter, ntasks, claim):
    """Record the task count and claim the first ``claim`` tasks; returns the first one's index."""
    counter[2] = ntasks
    return fetch_add(counter, 0, claim)


@njit(cache=True, inline="always")
def next_task(counter, done, claim):
    """Count ``done`` finished tasks, then claim the next ``claim``; returns the first one's index."""
    fetch_add(counter, 1, done)
    return fetch_add(counter, 0, claim)


@njit(cache=True, nogil=True)
def _spin_until_done(counter, spins):
    for _ in range(spins):
        if fetch_add(counter, 1, 0) >= counter[2]:
            return True
    return False


@njit(cache=True, nogil=True)
def _spin_for_post(posts, seen, spins):
    """Spin (without the GIL) until ``posts[0] != seen`` or ``spins`` polls have passed."""
    for _ in range(spins):
        if fetch_add(posts, 0, 0) != seen:
            return


# About 0.2-0.4 ms of polling (as csrc/pool.c's helpers spin ~0.3 ms): a helper that is still running
# when the next call posts its job needs no wake-up.  A sleeping thread's wake-up often lands on the
# CPU of the thread that woke it (the caller, busy with its share), where it waits its turn: then the
# helper joined 0.1-0.4 ms late and layers of 0.2 ms gained nothing from a second thread.
SPINS = 20000


class _Job:
    __slots__ = ("kernel", "args", "error")

    def __init__(self, kernel: Callable, args: tuple) -> None:
        self.kernel = kernel
        self.args = args
        self.error: Optional[BaseException] = None


class _Helper:
    """One helper thread: sleeps on an Event, runs the latest job posted to it."""

    def __init__(self) -> None:
        self._job: Optional[_Job] = None
        self._wake = threading.Event()
        self._posts = np.zeros(1, np.int64)  # jobs posted so far, polled by a spinning helper
        threading.Thread(target=self._loop, name="fastpoint-numba-helper", daemon=True).start()

    def post(self, job: _Job) -> None:
        # a job still unread is replaced: the caller finished it before posting the next one
        self._job = job
        self._posts[0] += 1
        self._wake.set()

    def _loop(self) -> None:
        while True:
            _spin_for_post(self._posts, self._posts[0], SPINS if self._job is None else 0)
            self._wake.wait()
            self._wake.clear()
            job, self._job = self._job, None
            if job is None:
                continue
            try:
                job.kernel(*job.args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                job.error = exc
            job = None  # do not keep the call's arrays alive while waiting for the next one


_helpers: List[_Helper] = []
_busy = threading.Lock()


def _reset_after_fork() -> None:
    # threads do not survive fork(): the child starts its own helpers when it needs them
    global _busy
    _helpers.clear()
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def max_threads() -> int:
    """CPUs this process may run on: more threads than that only take turns."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def run(kernel: Callable, args: tuple, threads: int) -> None:
    """``kernel(*args, counter)`` on the calling thread and up to ``threads - 1`` helpers.

    A call made while another Python thread's call holds the helpers runs on its own thread alone
    (as the C pool does): concurrent calls stay correct and the CPUs are not oversubscribed.
    """
    counter = np.zeros(3, np.int64)
    args = args + (counter,)
    helpers = min(threads, max_threads()) - 1
    if helpers <= 0 or not _busy.acquire(blocking=False):
        kernel(*args)
        return
    try:
        while len(_helpers) < helpers:
            _helpers.append(_Helper())
        job = _Job(kernel, args)
        for h in _helpers[:helpers]:
            h.post(job)
        kernel(*args)
        # the caller ran out of tasks: wait for the ones helpers are still working on (short: each
        # task is a fraction of the call), spinning first, then yielding the CPU to them
        while not _spin_until_done(counter, 2000):
            if job.error is not None:
                raise job.error
            time.sleep(0)
    finally:
        _busy.release()
