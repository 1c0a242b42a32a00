"""Accuracy of Winograd F(m x m, 3 x 3) in float32 against a float64 direct convolution.

Run: python tools/winograd_accuracy.py [--cin 16 64 128 256 512 2048] [--size 20] [--cout 16] [--no-c]

For each F(m, 3) (NumPy reference, fastpoint/backends/numpy_winograd.py: filter transform in float64,
data and inverse transforms and products in float32) and for the float32 direct convolution as the
baseline, prints max |y - y64| / max |y64| on two kinds of data:

* normal:  x ~ N(0, 1), w ~ N(0, 1) / sqrt(9 * cin) (the 1/sqrt(fan_in) scaling of trained layers);
* integer: x, w integer-valued in [-8, 8] and [-2, 2] (the direct float32 result is exact there
  while sums stay below 2^24; Winograd's is not, because G and A^T hold 1/4, 1/6, 1/24, 8 and 4).

With the C extension built, the columns "C F(2,3)" and "C F(4,3)" give the same measure for the C
kernels of the ISA in use (``fp.conv2d(..., algorithm="winograd")`` with the kernel-table row forced, so
that both run on the same map), whose rounding differs from the reference's by the order of the sums.

The numbers in docs/winograd.md come from this script; tests/test_winograd.py checks the C kernels
against the same bound (1e-4) on every ISA path.
"""

from __future__ import annotations

import argparse

import numpy as np

from fastpoint.backends.numpy_winograd import conv2d_winograd_nchw


def c_kernels() -> dict:
    """F(m) -> the C kernel-table row of the ISA in use, or {} without the C extension."""
    import fastpoint as fp

    try:
        rows = [k for k in fp.kernels() if k.family == "winograd"]
    except Exception:  # no C extension: the reference columns only
        return {}
    isa = next((k.isa for k in rows if k.name.endswith("avx512")), None) or next(
        (k.isa for k in rows if k.name.endswith("avx2")), "scalar")
    return {k.tile[0]: k.name for k in rows if k.isa == isa and k.available}


def c_winograd(x: np.ndarray, w: np.ndarray, name: str) -> np.ndarray:
    import fastpoint as fp
    from fastpoint.backends.kernel_table import forced_kernel

    with forced_kernel(name):
        return fp.conv2d(x.astype(np.float32), w.astype(np.float32), padding=1, backend="c", algorithm="winograd")


def direct(x: np.ndarray, w: np.ndarray, pad: int, dtype) -> np.ndarray:
    """3x3 stride-1 cross-correlation summed tap by tap in ``dtype``."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(dtype)
    w = w.astype(dtype)
    oh, ow = xp.shape[2] - 2, xp.shape[3] - 2
    y = np.zeros((x.shape[0], w.shape[0], oh, ow), dtype=dtype)
    for i in range(3):
        for j in range(3):
            y += np.einsum("kc,nchw->nkhw", w[:, :, i, j], xp[:, :, i:i + oh, j:j + ow])
    return y


def study(cins, size: int, cout: int, seed: int = 0, with_c: bool = True):
    rng = np.random.default_rng(seed)
    kernels = c_kernels() if with_c else {}
    rows = []
    for kind in ("normal", "integer"):
        for cin in cins:
            if kind == "normal":
                x = rng.standard_normal((1, cin, size, size))
                w = rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)
            else:
                x = rng.integers(-8, 9, (1, cin, size, size)).astype(np.float64)
                w = rng.integers(-2, 3, (cout, cin, 3, 3)).astype(np.float64)
            ref = direct(x, w, 1, np.float64)
            scale = np.abs(ref).max()
            err = {"direct": np.abs(direct(x, w, 1, np.float32) - ref).max() / scale}
            for m in (2, 4, 6):
                y = conv2d_winograd_nchw(x.astype(np.float32), w, padding=(1, 1, 1, 1), m=m, dtype=np.float32)
                err[f"F({m},3)"] = np.abs(y - ref).max() / scale
            for m, name in sorted(kernels.items()):
                err[f"C F({m},3)"] = np.abs(c_winograd(x, w, name) - ref).max() / scale
            rows.append((kind, cin, err))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cin", type=int, nargs="+", default=[16, 64, 128, 256, 512, 2048])
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--cout", type=int, default=16)
    ap.add_argument("--no-c", action="store_true", help="the NumPy reference only")
    a = ap.parse_args()
    rows = study(a.cin, a.size, a.cout, with_c=not a.no_c)
    names = list(rows[0][2])
    print("| data | Cin | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for kind, cin, err in rows:
        print(f"| {kind} | {cin} | " + " | ".join(f"{err[n]:.1e}" for n in names) + " |")


if __name__ == "__main__":
    main()
