"""The contract every backend implements.

A backend is stateless apart from lazily loaded machinery (a compiled extension, jitted functions).
It never validates arguments and never allocates the result: the API layer has done both.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import numpy as np

from ..core.spec import ConvSpec, LayerSpec


class Backend(Protocol):
    name: str

    def available(self) -> bool:
        """True when the backend can run in this process."""

    def why_unavailable(self) -> Optional[str]:
        """A sentence saying why it cannot run and how to fix that, or None when it can."""

    def prepack(self, layer: LayerSpec, weight: np.ndarray) -> Any:
        """Rearrange a C-contiguous ``(Cout, Cin/groups, KH, KW)`` weight of ``layer.dtype`` once."""

    def run(self, spec: ConvSpec, packed: Any, x: np.ndarray, bias: Optional[np.ndarray],
            out: np.ndarray) -> None:
        """Compute the convolution of the C-contiguous 4-d ``x`` into the C-contiguous 4-d ``out``.

        ``bias`` is None or a contiguous ``(Cout,)`` array of ``x.dtype``.  ``out`` may hold garbage
        (NaN included) on entry and must be written, never read.
        """
