"""Per-call time of one layer, back to back, at 1 and 2 threads: the whole Python call
(`Conv2d(...)(x, out=out)`) and the bare C entry point (`fp_conv_f32` with a prepared problem struct),
to separate the Python path's fixed cost from the kernel's own time and its 2-thread scaling.

    PYTHONPATH=$PWD flock /tmp/fp-bench.lock python tools/call_times.py mb2_dw_960_7,mb2_dw_384_14 NHWC

Each figure: best of 2 rounds (1T, 2T, 1T, 2T) of the median of 7 batches of N calls (env N, default
200).  Call it under the bench lock; the box has 2 cores.
"""
import os
import sys
import time
from typing import Callable

import numpy as np

import fastpoint as fp
from fastpoint import api
from fastpoint.backends import c as cb
from fastpoint.bench.suites import layer as suite_layer


def median_us(f: Callable[[], object], n: int, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return sorted(times)[len(times) // 2] * 1e6


def main(names: str, layout: str = "NHWC") -> None:
    n = int(os.environ.get("N", "200"))
    for name in names.split(","):
        lay = suite_layer(name)
        x, w, b = lay.arrays(layout)
        conv = fp.Conv2d(w, b, layout=layout, backend="c", **lay.kwargs())
        out = np.empty_like(conv(x))
        spec = conv._plan.spec  # the kept plan of the call above
        _, packed, bias, _ = conv._prepared(api.get_backend("c"), x.dtype)
        ffi, lib = cb._ffi, cb._lib
        bufs = (ffi.from_buffer("float[]", x), ffi.from_buffer("char[]", packed.buffer),
                ffi.from_buffer("float[]", bias), ffi.from_buffer("float[]", out))
        res: dict = {}
        for threads in (1, 2, 1, 2):
            fp.set_num_threads(threads)
            prob = cb._problem(spec.layer, spec)  # carries this thread count
            py = median_us(lambda c=conv, x=x, o=out: c(x, out=o), n)
            raw = median_us(lambda f=lib.fp_conv_f32, p=prob, b=bufs: f(p, b[0], b[1], b[2], b[3]), n)
            res.setdefault(threads, []).append((py, raw))
        line = f"{name} {layout}"
        for threads in (1, 2):
            py = min(r[0] for r in res[threads])
            raw = min(r[1] for r in res[threads])
            line += f" | {threads}T call {py:.1f} us, C {raw:.1f} us ({lay.flops / raw / 1e3:.0f} GFLOP/s)"
        print(line, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
