"""Fixed per-call cost of a fastpoint call on tiny layers, where the kernel itself is < 1 us.

For each backend: a repeat call of a ``Conv2d`` with ``out=`` (the benchmark's way), without ``out``,
and a one-shot ``conv2d()`` (packs the weights every call), ``conv1x1()`` and ``conv1d()``; for the C
backend also the bare C entry point with a prepared problem and cffi views (the floor).  Best of 5
rounds of N calls (env N, default 20000), 1 thread.  ``CPU=1`` times the calling thread's CPU time
(``time.thread_time``) instead of the wall clock: on a loaded box the wall-clock figures of
microsecond calls move by tens of percent between runs, the CPU time far less.  ``PYTHONPATH`` picks
the tree, so two builds can be compared:

    flock /tmp/fp-bench.lock env PYTHONPATH=$PWD CPU=1 python bench/call_overhead.py
"""

from __future__ import annotations

import os
import time
import timeit

import numpy as np

import fastpoint as fp

_TIMER = time.thread_time if os.environ.get("CPU") == "1" else time.perf_counter


def best_us(f, n: int) -> float:
    return min(timeit.repeat(f, number=n, repeat=5, timer=_TIMER)) / n * 1e6


def one(name: str, backend: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, kw: dict, n: int) -> str:
    layer = fp.Conv2d(w, b, backend=backend, **kw)
    out = np.empty_like(layer(x))
    line = (f"{name:20s} {backend:6s} Conv2d(x, out=) {best_us(lambda: layer(x, out=out), n):6.2f} us, "
            f"Conv2d(x) {best_us(lambda: layer(x), n):6.2f} us, "
            f"conv2d() {best_us(lambda: fp.conv2d(x, w, b, backend=backend, out=out, **kw), n // 10):6.2f} us")
    if w.shape[1] == x.shape[1] and w.shape[2:] == (3, 3):  # the dense case: its 1x1 and 1-d forms too
        w1, x1, w3 = w[:, :, 1, 1].copy(), x[:, :, 0], w[:, :, 1].copy()
        out1 = np.empty_like(fp.conv1d(x1, w3, b, padding=1, backend=backend))
        t1 = best_us(lambda: fp.conv1x1(x, w1, b, backend=backend, out=out), n // 10)
        t2 = best_us(lambda: fp.conv1d(x1, w3, b, padding=1, backend=backend, out=out1), n // 10)
        line += f", conv1x1() {t1:6.2f} us, conv1d() {t2:6.2f} us"
    if backend == "c":
        from fastpoint.backends import c as cb

        spec = layer._plan.spec  # the kept plan of the calls above
        _, packed, bias, _ = layer._prepared(fp.api.get_backend("c"), x.dtype)
        ffi = cb._ffi
        prob = cb._problem(spec.layer, spec)
        views = (ffi.from_buffer("float[]", x), ffi.from_buffer("char[]", packed.buffer),
                 ffi.from_buffer("float[]", bias), ffi.from_buffer("float[]", out))
        conv = cb._lib.fp_conv_f32
        line += f", bare C {best_us(lambda: conv(prob, *views), n):6.2f} us"
    return line


def main() -> None:
    n = int(os.environ.get("N", "20000"))
    fp.set_num_threads(1)
    x = np.ones((1, 8, 4, 4), np.float32)
    b = np.ones(8, np.float32)
    cases = {"dw 8ch 3x3 @4x4": (np.ones((8, 1, 3, 3), np.float32), dict(padding=1, groups=8)),
             "dense 8->8 3x3 @4x4": (np.ones((8, 8, 3, 3), np.float32), dict(padding=1))}
    for name, (w, kw) in cases.items():
        for backend in [b_ for b_ in ("c", "numba") if b_ in fp.backends()]:
            print(one(name, backend, x, w, b, kw, n), flush=True)


if __name__ == "__main__":
    main()
