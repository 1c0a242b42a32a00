"""Where Winograd pays in a network: ``load_onnx(..., algorithm="winograd")``'s per-node rule.

``fp.conv2d`` and ``fp.Conv2d`` run Winograd wherever it is asked for and applies (3x3, stride 1,
dilation 1, groups 1: ``core.spec.check_algorithm``). A network asked for Winograd runs it only on the
nodes where it is faster than the direct kernel (docs/winograd.md, "Networks"): its transforms run along
the channels, one vector of them at a time, and its GEMMs have K = the input channels, so with fewer input
channels than one vector of the ISA in use the transforms work mostly on padding and the GEMMs are too
short. Measured at 1 thread, NHWC, thread CPU time, direct / Winograd time, 3x3 Cin->32 on 256x256:
AVX-512 (16 lanes) Cin 3 0.50, 8 0.74, 12 0.87, 16 1.16, 32 1.62; AVX2 (8 lanes) Cin 8 1.24, 12 1.11,
16 1.55, 32 2.48. Every other eligible layer of the public models (32-2048 channels, maps 16-256) and the
small maps tried (128-512 channels on 4x4 to 14x14) ran at least as fast with Winograd, so the rule is on
the input channels alone.
"""

from __future__ import annotations

from .machine import isa

#: float32 lanes of one vector of each ISA (csrc/winograd: the transforms' vector width)
VECTOR_LANES = {"avx512": 16, "avx2": 8, "scalar": 4}


def winograd_pays(cin: int, isa_name: str = "") -> bool:
    """True where a network's 3x3 stride-1 layer of ``cin`` input channels runs faster with Winograd than
    with the direct kernel on ``isa_name`` (default: the ISA in use): ``cin`` fills a vector."""
    return cin >= VECTOR_LANES.get(isa_name or isa()["in_use"], 16)
