"""What the machine is: CPU model, vector ISA, data cache sizes, for every backend and for the tooling.

One place answers these, so that the C backend, the Numba backend's block sizes, ``fastpoint info``
and benchmark records agree.  When the C extension is built its own detection (csrc/cpu.c) is the
answer: it is what the C kernels dispatch on, ``FASTPOINT_ISA`` included.  Without it (an install
without a compiler) the same rules run here in Python: ``/proc/cpuinfo`` flags for the ISA, sysconf
for the caches, and the same defaults as csrc/cpu.c where the OS does not say.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Dict, FrozenSet, Optional

#: ISA names from the least to the most capable; an ISA's level is its index (what csrc/cpu.c numbers)
ISAS = ("scalar", "avx2", "avx512")

#: the CPU flags each ISA needs (the same test as csrc/cpu.c's detect_supported)
_NEEDS = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512vl", "avx512bw", "avx512dq", "fma"}}

#: data cache bytes assumed where the OS does not say (macOS, some VMs): csrc/cpu.c's defaults
DEFAULT_CACHES = {1: 32 * 1024, 2: 1024 * 1024, 3: 8 * 1024 * 1024}
_SYSCONF = {1: "SC_LEVEL1_DCACHE_SIZE", 2: "SC_LEVEL2_CACHE_SIZE", 3: "SC_LEVEL3_CACHE_SIZE"}


def _c():
    """The C extension's (ffi, lib), or None where it was not built."""
    from ..backends.c import ffi, lib

    return None if lib is None else (ffi, lib)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> FrozenSet[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def detected_isa(flags: Optional[FrozenSet[str]] = None) -> str:
    """The best ISA this CPU runs, from its flags (pure Python; ``scalar`` where they cannot be read)."""
    flags = _cpu_flags() if flags is None else flags
    return next((name for name in reversed(ISAS) if _NEEDS.get(name, set()) <= flags), "scalar")


def _lowered(supported: str) -> str:
    """``supported``, lowered by FASTPOINT_ISA as csrc/cpu.c lowers it (never raised; unknown names ignored)."""
    wanted = os.environ.get("FASTPOINT_ISA", "")
    wanted = "scalar" if wanted == "portable" else wanted
    if wanted in ISAS and ISAS.index(wanted) < ISAS.index(supported):
        return wanted
    return supported


def isa() -> Dict[str, str]:
    """The ISA in use and the best one supported, and where the answer comes from."""
    c = _c()
    if c is not None:
        ffi, lib = c
        name = lambda i: ffi.string(lib.fp_isa_name(i)).decode()  # noqa: E731
        return {"in_use": name(lib.fp_isa()), "supported": name(lib.fp_isa_supported()), "source": "C extension"}
    supported = detected_isa()
    return {"in_use": _lowered(supported), "supported": supported, "source": "/proc/cpuinfo (no C extension)"}


@functools.cache
def cache_sizes() -> Dict[int, int]:
    """Data cache bytes per level (1, 2, 3): the C extension's detection when built, else sysconf, else
    the defaults."""
    c = _c()
    if c is not None:
        return {level: int(c[1].fp_cache_size(level)) for level in (1, 2, 3)}
    sizes = {}
    for level, name in _SYSCONF.items():
        try:
            value = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            value = -1
        sizes[level] = value if value > 0 else DEFAULT_CACHES[level]
    return sizes
