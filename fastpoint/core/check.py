"""Correctness sweeps: every backend against the NumPy reference on a table of cases.

The same table drives ``fastpoint check`` and the test-suite, so what a user checks on a new CPU is
what CI checks.  Inputs are small integers, so float32 sums are exact whatever the summation order
and results must be *equal*, not merely close.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Iterator, List, Tuple, Union

import numpy as np

Pair = Union[int, Tuple[int, int]]


@dataclass(frozen=True)
class Case:
    n: int
    cin: int
    h: int
    w: int
    cout: int
    kh: int = 3
    kw: int = 3
    stride: Pair = 1
    padding: Union[Pair, str] = 0
    dilation: Pair = 1
    groups: int = 1
    layout: str = "NCHW"
    dtype: str = "float32"
    bias: bool = True
    activation: Union[str, None] = None

    @property
    def name(self) -> str:
        d = asdict(self)
        return (f"n{d['n']}c{d['cin']}h{d['h']}w{d['w']}o{d['cout']}k{d['kh']}x{d['kw']}s{d['stride']}"
                f"p{d['padding']}d{d['dilation']}g{d['groups']}-{d['layout']}-{d['dtype']}"
                f"{'-bias' if d['bias'] else ''}{'-relu' if d['activation'] else ''}").replace(" ", "")

    def arrays(self, seed: int = 0):
        """Integer-valued x, weight, bias in the case's layout and dtype."""
        rng = np.random.default_rng(seed)
        dt = np.dtype(self.dtype)
        shape = (self.n, self.cin, self.h, self.w) if self.layout == "NCHW" else (self.n, self.h, self.w, self.cin)
        x = rng.integers(-3, 4, size=shape).astype(dt)
        weight = rng.integers(-2, 3, size=(self.cout, self.cin // self.groups, self.kh, self.kw)).astype(dt)
        bias = rng.integers(-5, 6, size=self.cout).astype(dt) if self.bias else None
        return x, weight, bias

    def is_valid(self) -> bool:
        """Whether the dilated kernel fits the padded input (sweeps skip combinations that do not)."""
        from .spec import _pair

        (kh, kw), (dh, dw) = (self.kh, self.kw), _pair("dilation", self.dilation, 1)
        if self.padding == "same":
            return True
        ph, pw = (0, 0) if self.padding == "valid" else _pair("padding", self.padding, 0)
        return self.h + 2 * ph >= dh * (kh - 1) + 1 and self.w + 2 * pw >= dw * (kw - 1) + 1

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    activation=self.activation, layout=self.layout)


def run_case(case: Case, backend: str, seed: int = 0) -> Tuple[bool, float]:
    """Compare ``backend`` with the reference on ``case``; returns (equal, max abs difference)."""
    from ..api import conv2d

    x, weight, bias = case.arrays(seed)
    expected = conv2d(x, weight, bias, backend="numpy", **case.kwargs())
    got = conv2d(x, weight, bias, backend=backend, **case.kwargs())
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return False, float("inf")
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    return bool(np.array_equal(got, expected)), diff


def _vector_edge_channels() -> List[int]:
    # below, at, above and not a multiple of the 8- and 16-lane vector widths
    return [1, 3, 8, 15, 16, 17, 33]


def quick_cases() -> List[Case]:
    """A minute-scale sweep: every feature once, plus the channel counts around vector widths."""
    cases = [
        Case(1, 16, 9, 11, 32, 1, 1),
        Case(2, 24, 8, 8, 40, 1, 1, stride=2, activation="relu"),
        Case(1, 8, 10, 9, 16, 3, 3, padding=1),
        Case(1, 5, 12, 12, 7, 5, 5, stride=2, padding=2),
        Case(1, 3, 15, 15, 8, 7, 7, stride=2, padding=3),
        Case(1, 6, 9, 13, 4, 1, 7, padding=(0, 3)),
        Case(1, 6, 9, 13, 4, 3, 1, padding="same"),
        Case(1, 8, 12, 12, 8, 3, 3, dilation=2, padding=2),
        Case(1, 12, 8, 8, 6, 3, 3, padding=1, groups=3),
        Case(1, 16, 10, 10, 16, 3, 3, padding=1, groups=16),
        Case(1, 8, 10, 10, 16, 3, 3, padding=1, groups=8, stride=2),
        Case(3, 16, 7, 7, 17, 3, 3, padding="valid", activation="relu"),
        Case(0, 4, 5, 5, 4, 3, 3),
        Case(1, 4, 1, 1, 5, 1, 1),
        Case(1, 4, 1, 1, 5, 3, 3, padding=1),
    ]
    cases += [Case(1, c, 6, 7, c + 1, 3, 3, padding=1) for c in _vector_edge_channels()]
    cases += [Case(1, 17, 6, 7, 33, 1, 1, bias=False)]
    extra = []
    for c in cases:
        extra.append(Case(**{**asdict(c), "layout": "NHWC"}))
    extra.append(Case(1, 8, 9, 9, 12, 3, 3, padding=1, dtype="float64"))
    extra.append(Case(1, 8, 9, 9, 12, 3, 3, padding=1, dtype="float64", layout="NHWC", groups=4))
    return cases + extra


def full_cases() -> Iterator[Case]:
    """The exhaustive sweep of the contract (several hundred cases)."""
    return (case for case in _all_cases() if case.is_valid())


def _all_cases() -> Iterator[Case]:
    yield from quick_cases()
    kernels = [(1, 1), (3, 3), (5, 5), (7, 7), (1, 7), (3, 1)]
    for (kh, kw), s, d, layout in itertools.product(kernels, (1, 2, 3), (1, 2, 3), ("NCHW", "NHWC")):
        for padding in (0, 1, (2, 1), "valid") + (("same",) if s == 1 else ()):
            yield Case(2, 6, 11, 10, 10, kh, kw, stride=s, padding=padding, dilation=d, layout=layout)
    for groups, cin, cout in ((2, 8, 6), (3, 9, 12), (8, 8, 8), (8, 8, 16), (32, 32, 32), (17, 17, 34)):
        for layout, dtype, s in itertools.product(("NCHW", "NHWC"), ("float32", "float64"), (1, 2)):
            yield Case(2, cin, 9, 10, cout, 3, 3, stride=s, padding=1, groups=groups, layout=layout, dtype=dtype,
                       activation="relu")
    for c, layout in itertools.product(_vector_edge_channels() + [31, 48, 65], ("NCHW", "NHWC")):
        for k, cout in ((1, 2), (1, 21), (1, c), (3, c), (3, 2 * c + 1)):
            yield Case(1, c, 5, 13, cout, k, k, padding=k // 2, layout=layout)
