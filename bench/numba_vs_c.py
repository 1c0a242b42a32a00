"""Numba backend versus C backend on the public suites: speed ratio, GFLOP/s and % of FMA peak.

Contenders alternate round by round in one process (fastpoint/bench/timing.py) and medians are compared;
ratio = C time / Numba time (above 1: Numba is faster).  The FMA peak is measured in the same run
(the library's own measurement, csrc/measure.c), so "% peak" is relative to this machine at this moment.

Run (short; hold the shared lock):
    flock /tmp/fp-bench.lock python bench/numba_vs_c.py --threads 1
    flock /tmp/fp-bench.lock python bench/numba_vs_c.py --threads 2 --suite pointwise,spatial
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoint as fp  # noqa: E402
from fastpoint.bench.suites import SUITES  # noqa: E402
from fastpoint.bench.timing import alternate, median  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="pointwise,spatial", help="comma-separated suite names (fastpoint.bench.suites)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated layer names (default: all in the suites)")
    args = ap.parse_args()

    from fastpoint.backends.c import lib

    fp.set_num_threads(args.threads)
    peak = float(lib.fp_measure_fma_peak(1, 0.3)) * args.threads
    layers = [la for s in args.suite.split(",") for la in SUITES[s]]
    if args.only:
        keep = set(args.only.split(","))
        layers = [la for la in layers if la.name in keep]
    print(f"# {datetime.date.today()}  threads={args.threads}  layout={args.layout}  float32  "
          f"FMA peak {peak:.0f} GFLOP/s (1-core peak measured now x {args.threads} threads)")
    print(f"# C backend: {fp.backends()}  command: python bench/numba_vs_c.py {' '.join(sys.argv[1:])}")
    print("| layer | shape | C ms | Numba ms | Numba GFLOP/s | % peak | Numba/C speed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    ratios = []
    for la in layers:
        x, w, b = la.arrays(args.layout)
        contenders = {be: fp.Conv2d(w, b, **la.kwargs(), layout=args.layout, backend=be) for be in ("c", "numba")}
        samples = alternate({k: (lambda c=c, x=x: c(x)) for k, c in contenders.items()}, rounds=args.rounds,
                            sample_s=0.02, max_total_s=3.0)
        t = {k: median(v) for k, v in samples.items()}
        gf = la.flops / t["numba"] / 1e9
        ratio = t["c"] / t["numba"]
        ratios.append(ratio)
        print(f"| {la.name} | {la.shape} | {t['c'] * 1e3:.3f} | {t['numba'] * 1e3:.3f} | {gf:.1f} | "
              f"{100 * gf / peak:.0f}% | {ratio:.2f}x |", flush=True)
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\ngeomean Numba/C speed {geo:.2f}x, lowest {min(ratios):.2f}x over {len(ratios)} layers")


if __name__ == "__main__":
    main()
