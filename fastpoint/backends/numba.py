"""The Numba backend: kernels in :mod:`fastpoint.backends.numba_kernels`, compiled on first use.

``import fastpoint`` neither imports Numba nor compiles anything; the first call of each signature
compiles (and caches on disk, ``cache=True``).  Numba's ``workqueue`` threading layer aborts the
process when two Python threads run parallel kernels at once, so calls are serialised by a lock
unless a thread-safe layer (tbb, omp) is active.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Optional

import numpy as np

from .._spec import ConvSpec, LayerSpec
from .._threads import get_num_threads

_lock = threading.Lock()
_SAFE_LAYERS = ("tbb", "omp")


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
        threads = min(get_num_threads(), numba.config.NUMBA_NUM_THREADS)
        layer = _threading_layer()
        if layer in _SAFE_LAYERS:
            numba.set_num_threads(threads)  # thread-local in Numba: does not affect other threads
            kernels.run(spec, packed, x, bias, out, threads)
            return
        with _lock:
            numba.set_num_threads(threads)
            kernels.run(spec, packed, x, bias, out, threads)


def _threading_layer() -> Optional[str]:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        return None
