"""First-call time of the Numba backend in a fresh process, cold and warm on-disk cache.

Each measurement starts a new Python process that imports fastpoint and times its first
``conv2d(..., backend="numba")`` call (numba import + compilation or cache load + run) on a ResNet-50
3x3 layer.  ``NUMBA_CACHE_DIR`` points at a temporary directory: the first process compiles (cold),
the next ones load the cache (warm).

Run: ``flock /tmp/fp-bench.lock python bench/numba_first_call.py [layer] [layout] [warm runs, default 5]``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import time, numpy as np
t0 = time.perf_counter()
import fastpoint as fp
from fastpoint.bench.suites import layer
la = layer({name!r})
x, w, b = la.arrays({layout!r})
t1 = time.perf_counter()
fp.conv2d(x, w, b, **la.kwargs(), layout={layout!r}, backend="numba")
t2 = time.perf_counter()
fp.conv2d(x, w, b, **la.kwargs(), layout={layout!r}, backend="numba")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def first_calls(name: str, layout: str, warm_runs: int = 5):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        code = CHILD.format(name=name, layout=layout)
        runs = []
        for _ in range(1 + warm_runs):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                 cwd=root, check=True).stdout.split()
            runs.append([float(v) for v in out])
    return runs[0], runs[1:]


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "r50_3x3_64_56"
    layout = sys.argv[2] if len(sys.argv) > 2 else "NCHW"
    warm_runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    cold, warm = first_calls(name, layout, warm_runs)
    print(f"{name} {layout}: import fastpoint {cold[0]:.2f} s")
    print(f"  cold cache: first call {cold[1]:.2f} s (second call {cold[2] * 1e3:.1f} ms)")
    each = ", ".join(f"{r[1]:.2f}" for r in warm)
    print(f"  warm cache: first call {statistics.median(r[1] for r in warm):.2f} s "
          f"(median of {len(warm)}: {each}; second call {statistics.median(r[2] for r in warm) * 1e3:.1f} ms)")
