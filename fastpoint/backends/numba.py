"""The Numba backend: kernels in :mod:`fastpoint.backends.numba_kernels`, compiled on first use.

``import fastpoint`` neither imports Numba nor compiles anything; the first call of each signature
compiles (and caches on disk, ``cache=True``).  Numba's ``workqueue`` threading layer aborts the
process when two Python threads run parallel kernels at once, so calls are serialised by a lock
unless a thread-safe layer (tbb, omp) is active.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Optional

import numpy as np

from .._spec import ConvSpec, LayerSpec
from .._threads import get_num_threads

_lock = threading.Lock()
_SAFE_LAYERS = ("tbb", "omp")
_forked = False


def _in_forked_child() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_forked_child)


class NumbaBackend:
    name = "numba"

    def __init__(self) -> None:
        self._kernels = None

    def available(self) -> bool:
        return importlib.util.find_spec("numba") is not None

    def why_unavailable(self) -> Optional[str]:
        if not self.available():
            return "Numba is not installed; pip install numba"
        return None

    def _load(self):
        if self._kernels is None:
            from . import numba_kernels

            self._kernels = numba_kernels
        return self._kernels

    def prepack(self, layer: LayerSpec, weight: np.ndarray) -> np.ndarray:
        return self._load().pack(layer, weight)

    def run(self, spec: ConvSpec, packed: np.ndarray, x: np.ndarray, bias: Optional[np.ndarray],
            out: np.ndarray) -> None:
        import numba

        kernels = self._load()
        if _forked:
            _prepare_forked_child(numba)
        threads = min(get_num_threads(), numba.config.NUMBA_NUM_THREADS)
        layer = _threading_layer()
        if layer in _SAFE_LAYERS:
            numba.set_num_threads(threads)  # thread-local in Numba: does not affect other threads
            kernels.run(spec, packed, x, bias, out, threads)
            return
        with _lock:
            numba.set_num_threads(threads)
            kernels.run(spec, packed, x, bias, out, threads)


def _prepare_forked_child(numba) -> None:
    """GNU OpenMP cannot start thread teams in a child of fork() (the first parallel region hangs,
    and Numba's omp layer terminates the process on purpose).  Before this process's first parallel
    launch, pick a fork-safe layer; if the parent already fixed the omp layer, say what to do instead
    of hanging or dying."""
    layer = _threading_layer()
    if layer is None:
        numba.config.THREADING_LAYER = "forksafe"
    elif layer == "omp":
        raise RuntimeError(
            "the numba backend cannot run in a process forked after Numba's 'omp' threading layer was "
            "started (GNU OpenMP is not fork-safe); use multiprocessing's 'spawn' or 'forkserver' start "
            "method, backend='c', NUMBA_THREADING_LAYER=workqueue, or install tbb")


def _threading_layer() -> Optional[str]:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        return None
