"""The kernel tables of the compiled backends as records: ``fastpoint.kernels()``.

The C tables live in ``csrc/kernel_table.c`` (one per family), the Numba one in
``backends/numba_kernels/table.py``; docs/conventions.md says how a kernel gets its row.  The C
backend's testing override (run one kernel wherever its algorithm applies) is :func:`force_kernels`,
or ``FASTPOINT_KERNEL=<name>[,<name>]`` in the environment, read once at start-up.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple, Union


@dataclass(frozen=True)
class Kernel:
    """One row of a kernel table."""

    name: str                  # <dtype>_<family>_<tile>__<isa>, e.g. f32_gemm_8x48__avx512
    backend: str               # "c" or "numba"
    family: str                # gemm, conv, generic, dwconv (C); dense_nchw, ... (Numba)
    dtype: str                 # "float32" or "float64"
    isa: str                   # avx512, avx2, scalar (C); jit (Numba: LLVM compiles for this CPU)
    tile: Optional[Tuple[Union[int, str], ...]]  # register tile (rows, columns), None when none
    available: bool            # this build has it and this CPU runs it


_DTYPES = {0: "float32", 1: "float64"}


def _c_kernels() -> List[Kernel]:
    from .c import ffi, lib

    if lib is None:
        return []
    rows = []
    for i in range(int(lib.fp_kernel_count())):
        k = lib.fp_kernel_at(i)
        tile = (int(k.tile_m), int(k.tile_n)) if k.tile_m else None
        rows.append(Kernel(ffi.string(k.name).decode(), "c", ffi.string(k.family).decode(), _DTYPES[int(k.f64)],
                           ffi.string(lib.fp_isa_name(k.isa)).decode(), tile, bool(lib.fp_kernel_available(i))))
    return rows


def _numba_kernels() -> List[Kernel]:
    from . import backends
    from .numba_kernels.table import ROWS

    available = "numba" in backends()
    return [Kernel(row.name(dtype[0] + dtype[-2:]), "numba", row.family, dtype, "jit", row.tile, available)
            for row in ROWS for dtype in ("float32", "float64")]


def kernels() -> List[Kernel]:
    """Every kernel of the compiled backends, C first, each table best first."""
    return _c_kernels() + _numba_kernels()


def print_kernels() -> None:
    """The tables as ``fastpoint info --kernels`` prints them."""
    rows = kernels()
    print(f"{'kernel':28s} {'backend':7s} {'family':18s} {'dtype':7s} {'isa':6s} {'tile':6s} available")
    for k in rows:
        tile = "x".join(str(v) for v in k.tile) if k.tile else "-"
        available = "yes" if k.available else "no"
        print(f"{k.name:28s} {k.backend:7s} {k.family:18s} {k.dtype:7s} {k.isa:6s} {tile:6s} {available}")


def _refusal(names: Sequence[str]) -> str:
    rows = {k.name: k for k in _c_kernels()}
    seen = set()
    for name in names:
        k = rows.get(name)
        if k is None:
            return f"unknown C kernel {name!r}; known: {', '.join(rows)}"
        if not k.available:
            return f"C kernel {name!r} needs {k.isa}, which this CPU (or build) lacks"
        if (k.family, k.dtype) in seen:
            return f"two {k.dtype} kernels of family {k.family!r} forced at once: {', '.join(names)}"
        seen.add((k.family, k.dtype))
    return f"cannot force {', '.join(names)}"


def _split(names: Union[str, Sequence[str], None]) -> List[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n.strip()]


def force_kernels(names: Union[str, Sequence[str], None]) -> None:
    """Run the named C kernels wherever their algorithm applies (tests, benchmarks); None clears.

    Weights packed before a change are refused afterwards (pack them again).  Raises ValueError for
    an unknown name, a kernel this CPU cannot run, or two of one family and dtype."""
    from .c import ffi, lib

    wanted = _split(names)
    if lib is None:
        if wanted:
            raise ValueError("the C extension is not built: no kernel can be forced")
        return
    if lib.fp_force_kernels(",".join(wanted).encode() if wanted else ffi.NULL) != 0:
        raise ValueError(_refusal(wanted))


@contextlib.contextmanager
def forced_kernel(name: str) -> Iterator[Kernel]:
    """``with forced_kernel(name):`` force one C kernel, then clear the override."""
    row = next((k for k in _c_kernels() if k.name == name), None)
    force_kernels([name])
    try:
        yield row
    finally:
        force_kernels(None)


def env_refusal() -> Optional[str]:
    """Why FASTPOINT_KERNEL cannot be honoured, or None when it is unset or fine."""
    from .c import lib

    value = os.environ.get("FASTPOINT_KERNEL", "")
    if lib is None or not value.strip() or lib.fp_kernel_env_status() == 0:
        return None
    return f"FASTPOINT_KERNEL={value}: {_refusal(_split(value))}"
