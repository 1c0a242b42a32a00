"""Backend registry and the ``"auto"`` policy.

``"auto"`` takes the first available backend in :data:`AUTO_ORDER`: the C kernels when the extension
was built, else Numba, else the NumPy reference.  The NumPy backend is always available, so
``import fastpoint`` works even where neither a compiler nor Numba is present.
"""

from __future__ import annotations

from typing import Dict, List

from ._base import Backend
from .c import CBackend
from .numba import NumbaBackend
from .numpy import NumpyBackend

_REGISTRY: Dict[str, Backend] = {b.name: b for b in (CBackend(), NumbaBackend(), NumpyBackend())}
AUTO_ORDER = ("c", "numba", "numpy")


def backends() -> List[str]:
    """Names of the backends that work in this process, fastest first."""
    return [name for name in AUTO_ORDER if _REGISTRY[name].available()]


def get_backend(name: str) -> Backend:
    """Resolve a backend name (``"auto"`` included) to a working backend, or raise ValueError."""
    if name == "auto":
        # the first available in order; NumPy always is
        return next(b for b in map(_REGISTRY.get, AUTO_ORDER) if b.available())
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"backend must be 'auto' or one of {sorted(_REGISTRY)}, got {name!r}; "
                         f"available here: {backends()}")
    backend = _REGISTRY[name]
    if not backend.available():
        raise ValueError(f"backend {name!r} is not available: {backend.why_unavailable()}")
    return backend


def all_backends() -> Dict[str, Backend]:
    """Every known backend, available or not (for `fastpoint info`)."""
    return dict(_REGISTRY)


__all__ = ["AUTO_ORDER", "Backend", "all_backends", "backends", "get_backend"]
