"""``fastpoint check`` cases of conv1d and transposed convolution (the conv2d ones are in ``check.py``).

Each backend against the NumPy backend (conv1d: the 2-d reference on one row; transposed: the
scatter-add reference), on integer-valued inputs, so results must be equal.  The cases cover what the
C backend sends down each of its paths: kernel 1 (the conv1x1 GEMM), strided (the lowered conv1d GEMM),
stride 1 and depthwise (the 2-d kernels), causal pairs; K == stride (the scattering GEMM) and the
sub-pixel phases with padding, output_padding, dilation, groups and bias-only phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple, Union

import numpy as np


@dataclass(frozen=True)
class OpCase:
    op: str  # "conv1d" or "conv_transpose2d"
    n: int
    cin: int
    cout: int
    size: int  # L, or H = W
    k: int
    stride: int = 1
    padding: Union[int, str, Tuple[int, int]] = 0
    dilation: int = 1
    groups: int = 1
    output_padding: int = 0
    layout: str = "NCHW"  # "NCHW"/"NHWC"; conv1d maps them to "NCL"/"NLC"
    dtype: str = "float32"

    @property
    def name(self) -> str:
        return (f"{self.op}-n{self.n}c{self.cin}o{self.cout}s{self.size}k{self.k}st{self.stride}p{self.padding}"
                f"d{self.dilation}g{self.groups}op{self.output_padding}-{self.layout}-{self.dtype}").replace(" ", "")

    def run(self, backend: str) -> np.ndarray:
        import fastpoint as fp

        rng = np.random.default_rng(len(self.name))
        dt = np.dtype(self.dtype)
        if self.op == "conv1d":
            x = rng.integers(-3, 4, (self.n, self.cin, self.size)).astype(dt)
            w = rng.integers(-2, 3, (self.cout, self.cin // self.groups, self.k)).astype(dt)
            layout = "NCL" if self.layout == "NCHW" else "NLC"
            x = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
            return fp.conv1d(x, w, rng.integers(-5, 6, self.cout).astype(dt), self.stride, self.padding,
                             self.dilation, self.groups, activation="relu", layout=layout, backend=backend)
        x = rng.integers(-3, 4, (self.n, self.cin, self.size, self.size)).astype(dt)
        w = rng.integers(-2, 3, (self.cin, self.cout // self.groups, self.k, self.k)).astype(dt)
        x = x if self.layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return fp.conv_transpose2d(x, w, rng.integers(-5, 6, self.cout).astype(dt), self.stride, self.padding,
                                   self.output_padding, self.groups, self.dilation, activation="relu",
                                   layout=self.layout, backend=backend)


def op_cases() -> List[OpCase]:
    c1 = [OpCase("conv1d", 2, 17, 33, 40, 1), OpCase("conv1d", 2, 16, 8, 37, 1, 2),
          OpCase("conv1d", 1, 8, 8, 50, 2, padding=(8, 0), dilation=8), OpCase("conv1d", 1, 9, 17, 30, 7, padding=3),
          OpCase("conv1d", 2, 16, 16, 20, 31, padding="same", groups=16), OpCase("conv1d", 1, 1, 24, 64, 10, 5),
          OpCase("conv1d", 1, 12, 20, 31, 3, 2, (2, 1)), OpCase("conv1d", 1, 4, 6, 9, 1, padding=(0, 2))]
    ct = [OpCase("conv_transpose2d", 1, 17, 16, 7, 2, 2), OpCase("conv_transpose2d", 2, 8, 9, 5, 3, 3),
          OpCase("conv_transpose2d", 1, 8, 8, 6, 3, 2, 1, output_padding=1),
          OpCase("conv_transpose2d", 1, 6, 6, 5, 4, 2, 1, groups=2),
          OpCase("conv_transpose2d", 1, 4, 4, 4, 16, 8, 4), OpCase("conv_transpose2d", 1, 4, 5, 5, 1, 3, 0, 1, 1, 2),
          OpCase("conv_transpose2d", 1, 4, 6, 5, 3, 3, 2, 2, 1, 1)]
    cases = c1 + ct
    cases += [OpCase(**{**c.__dict__, "layout": "NHWC"}) for c in c1[:4] + ct[:4]]
    cases += [OpCase(**{**c.__dict__, "dtype": "float64"}) for c in (c1[2], ct[2])]
    return cases


def run_op_case(case: OpCase, backend: str) -> Tuple[bool, float]:
    """(equal, max abs difference) of ``backend`` against the NumPy backend on ``case``."""
    expected, got = case.run("numpy"), case.run(backend)
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return False, float("inf")
    return bool(np.array_equal(got, expected)), float(np.max(np.abs(got - expected))) if got.size else 0.0
