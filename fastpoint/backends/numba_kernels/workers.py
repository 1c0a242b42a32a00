"""The threads that run a Numba kernel: the calling thread plus helpers that join if they get a CPU.

Why not ``prange``: a Numba parallel region ends with a join that waits for every thread of its team.
When the machine has fewer free CPUs than the team has threads (another process is busy, or another
runtime's threads spin), a helper that is not scheduled holds the whole call until the scheduler gives
it a time slice; with OpenMP's spin-waiting helpers (Numba's ``omp`` layer) the team's own threads also
take turns on one CPU.  Measured on this 2-vCPU box with one other busy process: 12-20 ms per call
instead of 0.1-2 ms (docs/numba.md, "Threads").

So the kernels are plain ``nogil`` functions that take tasks from a shared counter, and this module
runs them as the C backend's pool does (csrc/pool.c): the calling thread works too, helpers (Python
threads, started on first need) are woken to run the same function, and the caller waits only for
tasks that a helper has *started*.  A helper that gets no CPU finds no task left when it wakes and
does nothing; the call costs what one thread costs, never a scheduler time slice per call.

On a shared machine the other CPUs are rarely idle, and a woken helper is then placed on the CPU of
the thread that woke it: the caller's.  So a helper keeps off the caller's CPU (:meth:`_Helper._leave`)
and, in the steady state, never sleeps: it polls for jobs without the GIL and takes the GIL only once
the caller is inside its kernel, and the caller returns only once the helpers are out of Python
(docs/numba.md, "Threads").

Counter protocol (see :func:`new_counter`): every worker writes the task count, takes a worker
number, claims tasks with atomic adds, from its own range first, and adds what it finished to the
count of tasks done (see :func:`start`, :func:`next_task`).  Numba's threading layer is never used, so neither its
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

# Counter layout (int64, 64-byte lines so that workers do not share a line they write): line 0 holds
# [tasks done, task count, ranges, workers arrived]; line 1 + r holds how much of range r is claimed.
_DONE, _NTASKS, _RANGES, _ARRIVED = 0, 1, 2, 3
_LINE = 8


def new_counter(ranges: int) -> np.ndarray:
    """The counter of one call whose tasks are dealt in ``ranges`` ranges (one per worker)."""
    counter = np.zeros(_LINE * (ranges + 1), np.int64)
    counter[_RANGES] = ranges
    return counter


@njit(inline="always")
def _bound(ntasks, r, ranges, claim):
    """First task of range r; interior bounds are multiples of ``claim``, so a claimed block never
    straddles two ranges."""
    if r >= ranges:
        return ntasks
    return (ntasks * r // ranges) // claim * claim


@njit(inline="always")
def _claim(counter, me, ntasks, claim):
    """The first task of the next ``claim`` tasks: from the worker's own range first, then from the
    fronts of the others' (a finished range costs a read, not a write).  ``ntasks`` when none is left."""
    ranges = counter[_RANGES]
    for k in range(ranges):
        r = me + k
        if r >= ranges:
            r -= ranges
        lo = _bound(ntasks, r, ranges, claim)
        hi = _bound(ntasks, r + 1, ranges, claim)
        line = _LINE * (r + 1)
        if lo + counter[line] < hi:
            task = lo + fetch_add(counter, line, claim)
            if task < hi:
                return task
    return ntasks


@njit(inline="always")
def start(counter, ntasks, claim):
    """Record the task count, take a worker number and claim the first ``claim`` tasks.

    Returns (first task, worker).  Tasks are dealt in one range per worker, in arrival order (the
    caller arrives first, tens of microseconds before a helper): back-to-back calls of a layer thus
    give each thread the same part of the layer, whose data stays in that core's L2, as in csrc/pool.c.
    With one shared counter the parts landed on either core from call to call (docs/numba.md).
    """
    counter[_NTASKS] = ntasks
    me = fetch_add(counter, _ARRIVED, 1) % counter[_RANGES]
    return _claim(counter, me, ntasks, claim), me


@njit(inline="always")
def next_task(counter, me, done, claim):
    """Count ``done`` finished tasks, then claim the next ``claim`` (see :func:`start`)."""
    fetch_add(counter, _DONE, done)
    return _claim(counter, me, counter[_NTASKS], claim)


@njit(nogil=True)
def _finish(counter, states, helpers, spins):
    """Caller side, without the GIL, after its own tasks: wait until every task is done, then (for
    up to ``spins`` polls) until no helper is in Python.  False if tasks were still running after
    ``spins`` polls (the caller then yields its CPU and calls again).

    One function for both waits: returning to Python in between would take the GIL just when the
    helper that finished the last task wants it, and one of the two would sleep on the GIL and pay
    a wake-up (~30 us measured).  A helper that holds the GIL when the caller returns does the same.
    """
    done = False
    for _ in range(spins):
        if fetch_add(counter, _DONE, 0) >= counter[_NTASKS]:
            done = True
            break
    if not done:
        return False
    for _ in range(spins):
        busy = 0
        for i in range(helpers):
            busy += fetch_add(states[i], 0, 0) != 0
        if busy == 0:
            break
    return True


@njit(nogil=True)
def _await_job(ctl, counters, state, seen, spins):
    """Helper side, without the GIL: wait up to ``spins`` polls for a job newer than ``seen``.

    ``ctl = [job number, its counter's row + 1]``.  Once a job is posted, ``state[0:2]`` is set to its
    number and row + 1 (until the helper is back in here), then the helper waits, still without the GIL, until
    a worker has entered the job's kernel (its caller: the GIL is then free).  Taking the GIL while
    the caller still held it made the helper sleep and start ~30 us later (measured).  Returns the
    job number, or ``seen`` if none came.
    """
    fetch_add(state, 0, -fetch_add(state, 0, 0))
    for _ in range(spins):
        posted = fetch_add(ctl, 0, 0)
        if posted != seen:
            row = fetch_add(ctl, 1, 0) - 1
            fetch_add(state, 1, row + 1 - fetch_add(state, 1, 0))
            fetch_add(state, 0, posted)
            for _ in range(spins):
                if fetch_add(counters[row], _ARRIVED, 0) > 0 or fetch_add(ctl, 0, 0) != posted:
                    break
            return posted
    return seen


# About 0.5 ms of polling here (csrc/pool.c's helpers spin ~0.3 ms): a helper that is still polling
# when the next call posts its job needs no wake-up.  With 20000 polls (0.1 ms) helpers slept
# between the calls of small layers and paid a wake-up each time.
SPINS = 100000
# Polls (~25 us) the caller waits, after its tasks are done, for helpers to get back out of Python,
# bounded so that a helper that lost its CPU right there does not hold the call (see _finish).
RETURN_SPINS = 5000
# Counters of the calls run with helpers: a ring of rows that spinning helpers can watch without the
# GIL.  A row is reused only when no helper is still inside the call that used it (see run).
RING = max(64, 2 * (os.cpu_count() or 1))  # more rows than helpers: a free row always exists
_MAX_RANGES = os.cpu_count() or 1
_counters = np.zeros((RING, _LINE * (_MAX_RANGES + 1)), np.int64)


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
    __slots__ = ("kernel", "args", "error", "cpu", "number", "open")

    def __init__(self, kernel: Callable, args: tuple, cpu: int, number: int) -> None:
        self.kernel = kernel
        self.args = args
        self.error: Optional[BaseException] = None
        self.cpu = cpu  # where the caller runs (-1: unknown)
        self.number = number
        self.open = True  # set False by the caller, holding the GIL, before it returns


# [number of the latest job, its counter's row + 1]: written by the caller holding ``_busy``, polled by
# the spinning helpers
_ctl = np.zeros(8, np.int64)
# per helper, its own 64-byte line: [0] = number of the job it is taking or running, 0 while it is
# polling or asleep, [1] = that job's row + 1 (see _await_job)
# (as many rows as the machine has CPUs: helpers keep views of their rows, so it is never reallocated)
_states = np.zeros((os.cpu_count() or 1, 8), np.int64)


class _Helper:
    """One helper thread: polls for jobs without the GIL, sleeps on an Event when none come."""

    def __init__(self, index: int) -> None:
        self._index = index
        self._seen = int(_ctl[0])  # read before the job that starts this helper is posted
        self._job: Optional[_Job] = None
        self._wake = threading.Event()
        self._sleeping = False
        try:
            self._base = frozenset(os.sched_getaffinity(0))
        except AttributeError:
            self._base = frozenset()
        self._allowed = self._base
        threading.Thread(target=self._loop, name="fastpoint-numba-helper", daemon=True).start()

    def post(self, job: _Job) -> None:
        # a job still unread is replaced: the caller finished it before posting the next one
        self._job = job

    def wake(self) -> None:
        """Called after the job number is published: wakes the helper if it sleeps (a set() costs ~3 us)."""
        if self._sleeping:
            self._wake.set()

    def _leave(self, cpu: int) -> None:
        """Keep off the caller's CPU: allow every CPU of this process but ``cpu``.

        Measured (docs/threads.md, "Helpers keep off the caller's CPU"): on this 2-vCPU box the other vCPU is
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
            posted = _await_job(_ctl, _counters, state, seen, SPINS)
            if posted == seen:  # nothing came: sleep until a caller posts
                # the flag is raised before the last look at the job number, and a caller publishes
                # the number before it looks at the flag: a job is never posted past a sleeper
                self._sleeping = True
                if _ctl[0] == seen:
                    self._wake.wait()
                self._sleeping = False
                self._wake.clear()
                continue  # _await_job sees the new job at once
            seen = posted
            job, self._job = self._job, None
            # the state word (set in _await_job) is visible to the caller before it closes the job,
            # so a row is never reused under a helper that still runs the call it belongs to
            if job is None or job.number != posted or not job.open:
                job = None  # a call that ended before this helper came: do not keep its arrays alive
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
    helpers = min(threads, max_threads(), _MAX_RANGES, _states.shape[0] + 1) - 1
    if helpers <= 0 or not _busy.acquire(blocking=False):
        kernel(*args, new_counter(1))
        return
    try:
        while len(_helpers) < helpers:
            _helpers.append(_Helper(len(_helpers)))
        number = int(_ctl[0]) + 1
        row = number % RING
        taken = {r - 1 for n, r in _states[:len(_helpers), :2].tolist() if n}
        while row in taken:  # a helper is still in the call that used this row
            row = (row + 1) % RING
        counter = _counters[row]
        counter[:] = 0
        counter[_RANGES] = helpers + 1
        job = _Job(kernel, args + (counter,), _getcpu() if _getcpu is not None else -1, number)
        for h in _helpers[:helpers]:
            h.post(job)
        _ctl[1] = row + 1
        _ctl[0] = number
        for h in _helpers[:helpers]:
            h.wake()
        try:
            kernel(*job.args)
            # the caller ran out of tasks: wait for the ones helpers are still working on (short:
            # each task is a fraction of the call), spinning first, then yielding the CPU to them
            while not _finish(counter, _states, len(_helpers), RETURN_SPINS):
                if job.error is not None:
                    raise job.error
                time.sleep(0)
        finally:
            job.open = False
        if job.error is not None:
            raise job.error
    finally:
        _busy.release()
