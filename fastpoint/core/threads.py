"""One thread budget for every backend.

``set_num_threads(n)`` sets how many threads a fastpoint call may use; the default is the number of
CPUs this process may run on, or ``FASTPOINT_NUM_THREADS`` when set.  Both compiled backends read
it at each call and hand it to the call itself: the C backend in the problem struct (its pool,
csrc/pool.c, gives each call its own team), the Numba backend as the number of fastpoint's own
worker threads to use (numba_kernels/workers.py, capped by the CPUs available); Numba's thread
count and threading layer play no part.  So concurrent calls from several Python threads each get
their own count.  fastpoint kernels never call BLAS, so they do not nest inside NumPy's thread pool.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator


def _default() -> int:
    env = os.environ.get("FASTPOINT_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"FASTPOINT_NUM_THREADS must be a positive integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"FASTPOINT_NUM_THREADS must be a positive integer, got {env!r}")
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_num_threads = _default()


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads in every later fastpoint call (from any Python thread)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads(n) needs an int, got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads(n) needs n >= 1, got {n}")
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads fastpoint calls use (in this Python thread)."""
    return _local.num_threads or _num_threads


class _Local(threading.local):
    # A class default: reading a thread-local attribute that was never set then costs ~0.05 us, not the
    # ~0.35 us of getattr's caught AttributeError, on every call of a 10 us layer.
    num_threads = None


# A per-Python-thread override: dask runs many tasks at once in one process, and each task must pick
# its own kernel thread count without changing the process-wide setting under the others.
_local = _Local()


@contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """Within the block, fastpoint calls made from this Python thread use ``n`` threads."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread_limit(n) needs an int n >= 1, got {n!r}")
    previous = getattr(_local, "num_threads", None)
    _local.num_threads = n
    try:
        yield
    finally:
        _local.num_threads = previous
