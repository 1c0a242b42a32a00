"""Where the kernels' machine code is cached, and loading it without Numba's whole compiler library.

Where: Numba's ``cache=True`` writes beside the source (``__pycache__`` of the installed package)
when that is writable.  Files there are unknown to pip, so ``pip uninstall`` (and the reinstall of
``pip install -e .`` after ``pip install .``) leaves them, and the ``fastpoint`` folder they keep
in site-packages then imports as an empty namespace package that hides the editable install.  So
the kernels are decorated without ``cache=True`` and :func:`cache_kernels` gives each one a cache
in ``NUMBA_CACHE_DIR`` when set, else in a per-user directory keyed by fastpoint's version
(:func:`cache_root`).  Where no directory can be written (a read-only home and install), the kernels
compile in every process instead, as without a cache.

Numba's ``Cache.load_overload`` first calls ``target_context.refresh()``, which imports and installs
every typing and lowering registry Numba has (``numba.np.arraymath``, ``linalg``, random, typed
containers, jitclass, ...) and, through ``numba.np.arraymath``'s BLAS probe, ``scipy.linalg``.  Those
registries are what the *compiler* needs to type and lower Python code; a cached kernel is machine
code already, and running it needs only Numba's runtime (NRT, for the arrays a kernel allocates).
On this box the refresh was 0.25-0.3 s of the 0.45 s first call of a ResNet 3x3 layer with a warm
cache (docs/numba.md, "Warm first call").

Loading: the kernels' caches load with only the runtime initialised.  When the cache has no entry for a
signature (cold cache, a new Numba or CPU), the dispatcher compiles as usual, and Numba's compiler
then runs the full refresh itself (``numba.core.compiler.CompilerBase`` refreshes both contexts)
before typing anything.  Registries install incrementally, so a later full refresh (a kernel
compile, or the user's own Numba code) finds nothing missing.  Only fastpoint's dispatchers are
changed (their cache objects), nothing global in Numba.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from numba import config
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator, _SourceFileBackedLocatorMixin
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys

from ..._version import __version__

#: the kernels' modules: only dispatchers defined there get the cache below
_PACKAGE = __name__.rsplit(".", 1)[0]


def cache_root() -> str:
    """``NUMBA_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/fastpoint/numba/<version>``."""
    if config.CACHE_DIR:
        return config.CACHE_DIR
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastpoint", "numba", __version__)


class _UserCacheLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
    """Numba's locator for ``NUMBA_CACHE_DIR``, rooted at :func:`cache_root`: one folder per source folder
    (named by a hash of its path, so an editable and a site-packages install do not share files)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(cache_root(), self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path


class _UserCacheImpl(CompileResultCacheImpl):
    _locator_classes = [_UserCacheLocator]  # never the package's own __pycache__


# The Numba internals the loads below rely on; with another Numba, loads keep their own load_overload.
_SUPPORTED = all(hasattr(FunctionCache, name) for name in ("_guard_against_spurious_io_errors", "_load_overload"))


class _KernelCache(FunctionCache):
    """A ``FunctionCache`` in :func:`cache_root` whose loads initialise Numba's runtime instead of
    refreshing every registry."""

    _impl_class = _UserCacheImpl

    def load_overload(self, sig, target_context):
        if not _SUPPORTED:
            return super().load_overload(sig, target_context)
        rtsys.initialize(target_context)  # what Numba's refresh does first; cached kernels use NRT
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def cache_kernels(namespace: Dict[str, Any]) -> None:
    """Give every fastpoint dispatcher in ``namespace`` (a module's ``globals()``) the cache above."""
    for obj in list(namespace.values()):
        if (isinstance(obj, Dispatcher) and obj.py_func.__module__.startswith(_PACKAGE)
                and not isinstance(obj._cache, _KernelCache)):
            try:
                obj._cache = _KernelCache(obj.py_func)
            except RuntimeError:  # Numba found no writable cache directory: compile in every process
                pass
