"""A/B of the fused epilogue (docs/epilogues.md) against the convolution plus a separate NumPy pass.

For each layer, one process alternates the contenders call by call (so a loaded machine slows them
alike) and reports medians:

    bare      Conv2d(activation=None)(x)                            the convolution alone
    fused     Conv2d(activation=act)(x, residual=r)                 the epilogue in the store
    separate  Conv2d(activation=None)(x, out=y), then act in NumPy  (in place: no temporaries but the act's)

    python tools/epilogue_ab.py [--repeat 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastpoint as fp

# (name, x shape, weight shape, kwargs, layout)
LAYERS = [
    ("1x1 256->64@56 NHWC", (1, 56, 56, 256), (64, 256, 1, 1), {}, "NHWC"),
    ("1x1 64->256@56 NCHW", (1, 64, 56, 56), (256, 64, 1, 1), {}, "NCHW"),
    ("3x3 64@56 NHWC", (1, 56, 56, 64), (64, 64, 3, 3), {"padding": 1}, "NHWC"),
    ("3x3 128@28 NCHW", (1, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}, "NCHW"),
    ("dw3x3 144@56 NHWC", (1, 56, 56, 144), (144, 1, 3, 3), {"padding": 1, "groups": 144}, "NHWC"),
    ("dw3x3 240@28 NCHW", (1, 240, 28, 28), (240, 1, 3, 3), {"padding": 1, "groups": 240}, "NCHW"),
]


def numpy_pass(y: np.ndarray, act, r) -> None:
    """The epilogue as a user writes it in NumPy, in place where NumPy allows."""
    if r is not None:
        np.add(y, r, out=y)
    if act == "relu":
        np.maximum(y, 0, out=y)
    elif act == "hardswish":
        t = np.clip(y + 3, 0, 6)
        np.multiply(y, t, out=y)
        np.multiply(y, 1 / 6, out=y)
    elif act == "sigmoid":
        np.negative(y, out=y)
        np.exp(y, out=y)
        np.add(y, 1, out=y)
        np.reciprocal(y, out=y)


def contenders(bare, fused, x, y, act, res) -> dict:
    out_f, out_s = np.empty_like(y), np.empty_like(y)
    return {
        "bare": lambda: bare(x, out=out_s),
        "fused": lambda: fused(x, out=out_f, residual=res),
        "separate": lambda: (bare(x, out=out_s), numpy_pass(out_s, act, res)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    fp.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads={args.threads} repeat={args.repeat}; medians in us")
    print(f"{'layer':22s} {'epilogue':18s} {'bare':>8s} {'fused':>8s} {'separate':>9s} {'fused-bare':>11s} "
          f"{'sep-bare':>9s}")
    for name, xs, ws, kw, layout in LAYERS:
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) * 0.1).astype(np.float32)
        bare = fp.Conv2d(w, layout=layout, **kw)
        y = bare(x)
        r = rng.standard_normal(y.shape).astype(np.float32)
        for act, res in (("relu", r), ("hardswish", None), ("sigmoid", None)):
            fused = fp.Conv2d(w, layout=layout, activation=act, **kw)
            runs = contenders(bare, fused, x, y, act, res)
            times = {k: [] for k in runs}
            for _ in range(10):
                for f in runs.values():
                    f()
            for _ in range(args.repeat):
                for k, f in runs.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
            med = {k: 1e6 * float(np.median(v)) for k, v in times.items()}
            label = act + (" + residual" if res is not None else "")
            print(f"{name:22s} {label:18s} {med['bare']:8.1f} {med['fused']:8.1f} {med['separate']:9.1f} "
                  f"{med['fused'] - med['bare']:11.1f} {med['separate'] - med['bare']:9.1f}")


if __name__ == "__main__":
    main()
