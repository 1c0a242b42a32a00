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
def _await_job(ctl, state, seen, spins):
    """Helper side, without the GIL: wait up to ``spins`` polls for a job newer than ``seen``.

    Returns as soon as the job's caller has entered its kernel (``ctl[1]``, set just before it), so
    the GIL the helper then takes is free.  ``state[0]`` is 0 while the helper is in here and 1 from
    the moment it returns with a job (it is about to take the GIL) until it is back.
    """
    fetch_add(state, 0, -fetch_add(state, 0, 0))
    for _ in range(spins):
        posted = fetch_add(ctl, 0, 0)
        if posted != seen and fetch_add(ctl, 1, 0) == posted:
            fetch_add(state, 0, 1)
            return posted
    return seen


@njit(cache=True, nogil=True)
def _await_helpers(states, helpers, spins):
    """Caller side, without the GIL: wait up to ``spins`` polls until no helper is in Python."""
    for _ in range(spins):
        busy = 0
        for i in range(helpers):
            busy += fetch_add(states[i], 0, 0)
        if busy == 0:
            return


# About 0.2-0.4 ms of polling (as csrc/pool.c's helpers spin ~0.3 ms): a helper that is still running
# when the next call posts its job needs no wake-up.  A sleeping thread's wake-up often lands on the
# CPU of the thread that woke it (see _Helper._leave), where it waits its turn.
SPINS = 100000
# Polls the caller waits, after its tasks are done, for helpers to get back out of Python (tens of
# microseconds): a helper that holds the GIL when the caller returns makes the caller sleep on the
# GIL and be woken, and placed, by the helper (see _Helper._leave).  Bounded, so that a helper that
# lost its CPU right there does not hold the call.
RETURN_SPINS = 5000


def _getcpu_function() -> Optional[Callable[[], int]]:
    """libc's ``sched_getcpu`` (Linux): the CPU the calling thread runs on, in well under a microsecond."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


_getcpu = _getcpu_function()


class _Job:
    __slots__ = ("kernel", "args", "error", "cpu")

    def __init__(self, kernel: Callable, args: tuple, cpu: int) -> None:
        self.kernel = kernel
        self.args = args
        self.error: Optional[BaseException] = None
        self.cpu = cpu  # where the caller runs (-1: unknown)


# jobs posted so far ([0]) and the job whose caller is entering its kernel ([1]); written by the
# caller holding ``_busy``, polled by the spinning helpers
_ctl = np.zeros(8, np.int64)
# per helper, its own 64-byte line: [0] = 1 while it is in Python with a job (see _await_job)
# (as many rows as the machine has CPUs: helpers keep views of their rows, so it is never reallocated)
_states = np.zeros((os.cpu_count() or 1, 8), np.int64)


class _Helper:
    """One helper thread: polls for jobs without the GIL, sleeps on an Event when none come."""

    def __init__(self, index: int) -> None:
        self._index = index
        self._seen = int(_ctl[0])  # read before the job that starts this helper is posted
        self._job: Optional[_Job] = None
        self._wake = threading.Event()
        try:
            self._base = frozenset(os.sched_getaffinity(0))
        except AttributeError:
            self._base = frozenset()
        self._allowed = self._base
        threading.Thread(target=self._loop, name="fastpoint-numba-helper", daemon=True).start()

    def post(self, job: _Job) -> None:
        # a job still unread is replaced: the caller finished it before posting the next one
        self._job = job
        self._wake.set()

    def _leave(self, cpu: int) -> None:
        """Keep off the caller's CPU: allow every CPU of this process but ``cpu``.

        Measured (docs/numba.md, "2 threads: the cause"): on this 2-vCPU box the other vCPU is
        nearly always running someone's low-priority job, so the kernel's wake-up path finds no idle
        CPU and puts a woken helper on the CPU of the thread that woke it, the caller's.  Both then
        share one CPU; the periodic load balancer of the busy other CPU pulls the helper over only
        after tens of milliseconds, and the next sleep and wake-up undoes it.  Excluding the caller's
        CPU moves the helper at once and keeps its later wake-ups off that CPU.  Only this helper
        thread's affinity changes; it is re-evaluated for every job, since the caller may move.
        """
        if cpu < 0 or cpu not in self._allowed:
            return
        want = self._base - {cpu}
        if not want:
            return
        try:
            os.sched_setaffinity(0, want)  # pid 0: this thread only
        except OSError:
            return
        self._allowed = want

    def _loop(self) -> None:
        state = _states[self._index]
        seen = self._seen
        while True:
            posted = _await_job(_ctl, state, seen, SPINS)
            if posted == seen:  # nothing came: sleep until a caller posts
                self._wake.wait()
                self._wake.clear()
                posted = _ctl[0]
            seen = posted
            job, self._job = self._job, None
            if job is None:
                continue
            self._leave(job.cpu)
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
    _states[:] = 0
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
        helpers = min(helpers, _states.shape[0])
        while len(_helpers) < helpers:
            _helpers.append(_Helper(len(_helpers)))
        job = _Job(kernel, args, _getcpu() if _getcpu is not None else -1)
        for h in _helpers[:helpers]:
            h.post(job)
        posted = _ctl[0] + 1
        _ctl[0] = posted
        _ctl[1] = posted  # "entering the kernel": the GIL is released a few microseconds from now
        kernel(*args)
        # the caller ran out of tasks: wait for the ones helpers are still working on (short: each
        # task is a fraction of the call), spinning first, then yielding the CPU to them
        while not _spin_until_done(counter, 2000):
            if job.error is not None:
                raise job.error
            time.sleep(0)
        _await_helpers(_states, helpers, RETURN_SPINS)
        if job.error is not None:
            raise job.error
    finally:
        _busy.release()
