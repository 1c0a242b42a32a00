"""Do subnormal (denormal) inputs slow a kernel down?  Time each backend on normal and on subnormal
data of the same shape, alternating, and print the median ratio subnormal / normal.

The C and Numba kernels run with flush-to-zero + denormals-are-zero (csrc/fpenv.c,
fastpoint/backends/numba_kernels/fpenv.py), so their ratio should stay near 1 (the target is < 1.5);
NumPy does not flush and is shown for comparison.

    flock /tmp/fp-bench.lock python bench/denormals.py [--threads N] [--backends c,numba,numpy]
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoint as fp  # noqa: E402
from fastpoint.bench.timing import alternate, median  # noqa: E402

LAYERS = [
    # name, x shape (NCHW), weight shape, kwargs
    ("3x3 64->64 28x28", (1, 64, 28, 28), (64, 64, 3, 3), dict(padding=1)),
    ("1x1 128->128 28x28", (1, 128, 28, 28), (128, 128, 1, 1), {}),
    ("dw3x3 128 56x56", (1, 128, 56, 56), (128, 1, 3, 3), dict(padding=1, groups=128)),
]


def data(shape, kind: str, rng) -> np.ndarray:
    base = rng.uniform(0.5, 1.0, size=shape).astype(np.float32)
    if kind == "normal":
        return base
    if kind == "subnormal-in":  # inputs below the normal range (1.2e-38): every product is subnormal
        return base * np.float32(1e-39)
    return base * np.float32(1e-20)  # "subnormal-out": normal inputs, products ~1e-40 (with 1e-20 weights)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", default=",".join(fp.backends()))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    fp.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# bench/denormals.py --threads {args.threads}  ({datetime.date.today()}, float32, NCHW, batch 1)")
    print("| layer | backend | normal (ms) | subnormal inputs (ms) | ratio | subnormal products (ms) | ratio |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for name, xs, ws, kw in LAYERS:
        w = rng.uniform(0.5, 1.0, size=ws).astype(np.float32)
        w_tiny = w * np.float32(1e-20)
        inputs = {k: data(xs, k, rng) for k in ("normal", "subnormal-in", "subnormal-out")}
        for backend in args.backends.split(","):
            layer = fp.Conv2d(w, backend=backend, **kw)
            tiny = fp.Conv2d(w_tiny, backend=backend, **kw)
            contenders = {
                "normal": lambda f=layer, x=inputs["normal"]: f(x),
                "subnormal-in": lambda f=layer, x=inputs["subnormal-in"]: f(x),
                "subnormal-out": lambda f=tiny, x=inputs["subnormal-out"]: f(x),
            }
            samples = alternate(contenders, rounds=args.rounds, sample_s=0.05, max_total_s=6)
            t = {k: median(v) * 1e3 for k, v in samples.items()}
            r_in, r_out = t["subnormal-in"] / t["normal"], t["subnormal-out"] / t["normal"]
            if backend == "c":
                worst = max(worst, r_in, r_out)
            print(f"| {name} | {backend} | {t['normal']:.3f} | {t['subnormal-in']:.3f} | {r_in:.2f} | "
                  f"{t['subnormal-out']:.3f} | {r_out:.2f} |", flush=True)
    if "c" in args.backends.split(","):
        print(f"\nC backend: worst subnormal/normal ratio {worst:.2f} (target < 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
