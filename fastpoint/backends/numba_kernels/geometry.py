"""Where each kernel tap reads: the zero-padded, stride-phase-split copy of the input.

Every kernel works on "flat positions": output pixel (oy, ox) is position ``q = oy * wq + ox`` of a
grid ``wq`` columns wide, and kernel tap ``t`` reads input position ``q + tapoff[t]``.  To make that
true for any padding, stride and dilation, the input is copied once into ``phases`` planes:

* zero padding is written out, so no loop tests borders (and, as in the NumPy reference, padded
  taps contribute ``0 * w``);
* a stride ``s`` splits rows/columns by their remainder mod ``s`` (space-to-depth): in phase plane
  ``(py, px)`` neighbouring output pixels read neighbouring elements, so vector loads stay contiguous;
* positions ``ox >= ow`` of a grid row are junk lanes that are computed but never stored; one spare
  row at the bottom keeps their reads inside the plane.

A 1x1 stride-1 unpadded convolution reads the input itself (``direct``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...core.spec import ConvSpec


@dataclass(frozen=True)
class Geometry:
    direct: bool            # read x itself, no copy
    wq: int                 # grid width (positions per grid row)
    hq1: int                # grid rows per phase plane, spare row included
    phase_py: np.ndarray    # (phases,) row remainder of each plane
    phase_px: np.ndarray    # (phases,) column remainder of each plane
    tapoff: np.ndarray      # (kh * kw,) int64 position offset of each tap, plane offset included
    qtotal: int             # output positions oh * wq

    @property
    def phase_len(self) -> int:
        return self.hq1 * self.wq

    @property
    def plane(self) -> int:
        """Positions per channel (NCHW) or per image (NHWC)."""
        return len(self.phase_py) * self.phase_len


# cached: building it costs about 8 us of Python per call, a sixth of a 7x7 depthwise layer's time
@lru_cache(maxsize=256)
def geometry(spec: ConvSpec) -> Geometry:
    L = spec.layer
    (sh, sw), (dh, dw) = L.stride, L.dilation
    if (L.kh, L.kw) == (1, 1) and (sh, sw) == (1, 1) and spec.oh == spec.h and spec.ow == spec.w:
        return Geometry(True, spec.w, spec.h, np.zeros(1, np.int64), np.zeros(1, np.int64),
                        np.zeros(1, np.int64), spec.h * spec.w)
    taps = [(ky * dh, kx * dw) for ky in range(L.kh) for kx in range(L.kw)]
    phases = sorted({(ry % sh, rx % sw) for ry, rx in taps})
    dymax = max(ry // sh for ry, _ in taps)
    dxmax = max(rx // sw for _, rx in taps)
    wq = spec.ow + dxmax
    hq1 = spec.oh + dymax + 1
    index = {p: i for i, p in enumerate(phases)}
    tapoff = np.array([index[(ry % sh, rx % sw)] * hq1 * wq + (ry // sh) * wq + rx // sw for ry, rx in taps],
                      dtype=np.int64)
    return Geometry(False, wq, hq1, np.array([p[0] for p in phases], np.int64),
                    np.array([p[1] for p in phases], np.int64), tapoff, spec.oh * wq)
