"""What the machine is: CPU model, vector ISA in use, cache sizes (for `fastpoint info` and reports)."""

from __future__ import annotations

import platform
from typing import Dict, Optional


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def c_lib():
    from .backends.c import lib

    return lib


def isa() -> Optional[Dict[str, str]]:
    """ISA chosen by the C backend and the best one supported, or None without the extension."""
    lib = c_lib()
    if lib is None:
        return None
    from .backends.c import ffi

    name = lambda i: ffi.string(lib.fp_isa_name(i)).decode()  # noqa: E731
    return {"in_use": name(lib.fp_isa()), "supported": name(lib.fp_isa_supported())}


def cache_sizes() -> Dict[str, int]:
    lib = c_lib()
    if lib is None:
        return {}
    return {f"L{level}": int(lib.fp_cache_size(level)) for level in (1, 2, 3)}
