"""Per-call time of one layer as `fastpoint bench` sees it: a pause (helpers fall asleep), then ~50 ms
of back-to-back calls; 1 and 2 threads alternating sample by sample.

    PYTHONPATH=$PWD flock /tmp/fp-bench.lock python tools/pause_times.py mb2_dw_384_14 NHWC 1,2

Env: ROUNDS (samples per thread count, default 7), GAP (pause in s, default 0.15).  With a
diagnostics build of the pool (`CFLAGS=-DFP_POOL_TRACE python setup.py build_ext --inplace`) and
FP_POOL_TRACE_FILE=<path>, every pooled call is recorded there at exit; read it with
tools/pool_trace.py.
"""
import os
import sys
import time

import numpy as np

import fastpoint as fp
from fastpoint.bench.suites import layer as suite_layer


def main(name: str, layout: str = "NHWC", threads_arg: str = "1,2") -> None:
    threads = [int(t) for t in threads_arg.split(",")]
    rounds = int(os.environ.get("ROUNDS", "7"))
    gap = float(os.environ.get("GAP", "0.15"))
    lay = suite_layer(name)
    x, w, b = lay.arrays(layout)
    conv = fp.Conv2d(w, b, layout=layout, backend="c", **lay.kwargs())
    out = np.empty_like(conv(x))
    for t in threads:
        fp.set_num_threads(t)
        conv(x, out=out)
    t0 = time.perf_counter()
    conv(x, out=out)
    reps = max(1, int(0.05 / (time.perf_counter() - t0)))
    res: dict = {t: [] for t in threads}
    for _ in range(rounds):
        for t in threads:
            fp.set_num_threads(t)
            time.sleep(gap)
            start = time.perf_counter()
            for _ in range(reps):
                conv(x, out=out)
            res[t].append((time.perf_counter() - start) / reps * 1e6)
    cells = [f"{t}T {sorted(v)[len(v) // 2]:.1f} us" for t, v in res.items()]
    print(f"{name} {layout} ({reps} calls a sample): " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
