"""The Numba backend's kernel table: which kernel runs a packed layer, one row per kernel.

Plain data (importing it imports no Numba), so that ``fastpoint.kernels()`` can list the rows on a
machine without Numba.  ``bind()`` (``__init__.py``) runs the first row that applies; a new kernel is a
row here plus its binder in ``__init__._BINDERS`` (docs/conventions.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

# NCHW depthwise maps narrower than this run vectorized across channels (depthwise_small.py): a
# row of 7-28 pixels fills too few lanes of the per-plane kernel (docs/numba.md, "Depthwise")
SMALL_PLANE_OW = 32


@dataclass(frozen=True)
class Row:
    family: str                            # the kernel's family, also its binder's key
    kind: str                              # the packing it runs on (numba_kernels.Packed.kind)
    module: str                            # where the kernel lives (numba_kernels.<module>)
    tile: Optional[Tuple[int, str]] = None  # register tile: rows x vectors (the lanes follow the dtype)
    applies: Callable[[Any], bool] = lambda spec: True  # on top of the packing's kind

    def name(self, dtype: str) -> str:
        return f"{dtype}_{self.family}__jit"


#: best first within a packing kind
ROWS = (
    Row("dwconv_small_nchw", "dw_nchw", "depthwise_small", applies=lambda spec: spec.ow < SMALL_PLANE_OW),
    Row("dwconv_nchw", "dw_nchw", "depthwise"),
    Row("dense_nchw", "nchw", "dense_nchw", tile=(6, "2v")),
    Row("dense_nhwc", "nhwc", "dense_nhwc", tile=(6, "2v")),
    Row("dwconv_nhwc", "dw_nhwc", "depthwise"),
)


def pick(kind: str, spec: Any) -> Row:
    """The row that runs a layer packed as ``kind`` on ``spec``."""
    for row in ROWS:
        if row.kind == kind and row.applies(spec):
            return row
    raise ValueError(f"no Numba kernel for packing kind {kind!r}")
