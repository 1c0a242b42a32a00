"""Loading the kernels from Numba's on-disk cache without loading Numba's whole compiler library.

Numba's ``Cache.load_overload`` first calls ``target_context.refresh()``, which imports and installs
every typing and lowering registry Numba has (``numba.np.arraymath``, ``linalg``, random, typed
containers, jitclass, ...) and, through ``numba.np.arraymath``'s BLAS probe, ``scipy.linalg``.  Those
registries are what the *compiler* needs to type and lower Python code; a cached kernel is machine
code already, and running it needs only Numba's runtime (NRT, for the arrays a kernel allocates).
On this box the refresh was 0.25-0.3 s of the 0.45 s first call of a ResNet 3x3 layer with a warm
cache (docs/numba.md, "Warm first call").

So the kernels' caches load with only the runtime initialised.  When the cache has no entry for a
signature (cold cache, a new Numba or CPU), the dispatcher compiles as usual, and Numba's compiler
then runs the full refresh itself (``numba.core.compiler.CompilerBase`` refreshes both contexts)
before typing anything.  Registries install incrementally, so a later full refresh (a kernel
compile, or the user's own Numba code) finds nothing missing.  Only fastpoint's dispatchers are
changed: the class of their cache object, nothing global in Numba.
"""

from __future__ import annotations

from typing import Any, Dict

from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys


class _RuntimeOnlyLoadCache(FunctionCache):
    """A ``FunctionCache`` whose loads initialise Numba's runtime instead of refreshing every registry."""

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)  # what Numba's refresh does first; cached kernels use NRT
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


# The Numba internals relied on above; with another Numba, the caches keep their own load_overload.
_SUPPORTED = all(hasattr(FunctionCache, name) for name in ("_guard_against_spurious_io_errors", "_load_overload"))


def load_without_refresh(namespace: Dict[str, Any]) -> None:
    """Make every cached Numba dispatcher in ``namespace`` (a module's ``globals()``) load as above."""
    if not _SUPPORTED:
        return
    for obj in list(namespace.values()):
        if isinstance(obj, Dispatcher) and type(getattr(obj, "_cache", None)) is FunctionCache:
            obj._cache.__class__ = _RuntimeOnlyLoadCache
