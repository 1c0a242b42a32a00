"""The Numba backend: kernels in :mod:`fastpoint.backends.numba_kernels`, compiled on first use.

``import fastpoint`` neither imports Numba nor compiles anything; the first call of each signature
compiles (and caches on disk, ``cache=True``).  The kernels run on fastpoint's own worker threads
(``numba_kernels/workers.py``), not on a Numba parallel region, so Numba's threading layer (and its
thread count) plays no part: calls from several Python threads, and calls in a forked child, are safe
whichever layer Numba would pick.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import replace
from typing import Optional

import numpy as np

from ..core.epilogue import apply_reference
from ..core.spec import ConvSpec, LayerSpec
from ..core.threads import get_num_threads


class NumbaBackend:
    name = "numba"

    def __init__(self) -> None:
        self._kernels = None
        self._installed: Optional[bool] = None

    def available(self) -> bool:
        # find_spec searches sys.path (tens of microseconds): once per process, not once per call
        if self._installed is None:
            self._installed = importlib.util.find_spec("numba") is not None
        return self._installed

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
            out: np.ndarray, residual: Optional[np.ndarray] = None) -> None:
        kernels = self._load()
        threads = min(get_num_threads(), kernels.workers.max_threads())
        if residual is None:
            kernels.run(spec, packed, x, bias, out, threads)
            _epilogue(spec, out, None)
            return
        relu = spec.layer.relu  # ReLU after the residual add: the kernels store conv + bias only
        kernels.run(replace(spec, layer=replace(spec.layer, relu=False)) if relu else spec, packed, x, bias, out,
                    threads)
        _epilogue(spec, out, residual)

    def bind(self, spec: ConvSpec, packed: np.ndarray, bias: Optional[np.ndarray]):
        """``run`` for one spec with its index tables, padded bias and block sizes made once."""
        kernels = self._load()
        launch = kernels.bind(spec, packed, bias)
        max_threads = kernels.workers.max_threads

        act = spec.layer.act

        def runner(x: np.ndarray, out: np.ndarray) -> None:
            threads = get_num_threads()
            launch(x, out, 1 if threads == 1 else min(threads, max_threads()))  # max_threads: a system call
            if act is not None:
                _epilogue(spec, out, None)

        return runner

    def bind_once(self, spec: ConvSpec, check_finite: bool):
        """The one-shot runner of ``spec``: ``runner(x, w, bias, out)`` runs with the weights ``w`` on a
        launcher this Python thread keeps for the plan (``numba_kernels.bind_one_shot``: the dense NCHW
        kernel reads ``w`` in place, the NHWC one packs it block by block inside its loops, depthwise
        weights are copied into the launcher's packing).  It returns False: the Numba kernels read
        written-out zero padding, so a NaN or Inf weight on a padded tap already gives the reference's NaN
        (``0 * w``) and no output needs the fix-up of core/nonfinite.py (``check_finite`` is not used)."""
        kernels = self._load()
        local = threading.local()  # per Python thread: concurrent calls never share the buffers
        max_threads = kernels.workers.max_threads

        def runner(x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], out: np.ndarray) -> bool:
            state = getattr(local, "state", None)
            if state is None:  # a plan's bias is always None or always of its shape (the parse key)
                state = local.state = kernels.bind_one_shot(spec, bias)
            run, set_bias = state
            if bias is not None:
                set_bias(bias)
            threads = get_num_threads()
            if threads > 1:
                threads = min(threads, max_threads())  # max_threads: a system call
            run(x, w, out, threads)  # packs what the kernel does not read in place
            _epilogue(spec, out, None)
            return False

        return runner


def _epilogue(spec: ConvSpec, out: np.ndarray, residual: Optional[np.ndarray]) -> None:
    """The epilogue beyond the kernels' ReLU, as a pass over the output after the kernels (not fused:
    the Numba kernels fuse ReLU only; docs/epilogues.md)."""
    L = spec.layer
    if residual is None and L.act is None:
        return
    if residual is not None:
        out += residual
        if L.relu:
            np.maximum(out, 0, out=out)
    apply_reference(out, L.act, 1 if L.layout == "NCHW" else 3)
