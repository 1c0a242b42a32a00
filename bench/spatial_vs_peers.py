"""Dev benchmark: fastpoint's C backend on the SPATIAL suite against PyTorch conv2d and ONNX Runtime.

The peers are set up by fastpoint.bench.peers, as ``fastpoint bench`` sets them up (no ReLU fused).

Run under the shared lock, e.g.::

    flock /tmp/fp-bench.lock python bench/spatial_vs_peers.py --threads 1 --peak 115

Contenders alternate round by round (fastpoint/bench/timing.py) and medians are compared; every
contender gets its weights packed / its session created before timing.  Prints a Markdown table:
GFLOP/s per contender, fastpoint / best peer, % of the given FMA peak and, for depthwise, GB/s
(input + output + weights moved once).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import Callable, Dict, List

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads must not spin beside the contenders
# On a 2-core box shared with other work, spinning OpenMP barriers (libgomp's default, used by both
# fastpoint and torch) lose whole time slices to a descheduled team member; passive waiting does not.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoint as fp  # noqa: E402
from fastpoint.bench import suites  # noqa: E402
from fastpoint.bench.peers import prepared_runs  # noqa: E402
from fastpoint.bench.timing import alternate, median  # noqa: E402


def bench_layer(layer: suites.Layer, threads: int, nhwc: bool, rounds: int, peers: List[str]) -> Dict[str, float]:
    """Median seconds per call of fastpoint and of each peer (set up as ``fastpoint bench`` sets them up)."""
    layout = "NHWC" if nhwc else "NCHW"
    x, w, b = layer.arrays(layout)
    conv = fp.Conv2d(w, b, layout=layout, backend="c", **layer.kwargs())
    out = conv(x)
    contenders: Dict[str, Callable[[], object]] = {"fastpoint": lambda: conv(x, out=out)}
    with prepared_runs(peers, layer, threads, layout) as runs:
        contenders.update(runs)
        samples = alternate(contenders, rounds=rounds, sample_s=0.03, max_total_s=6.0)
    return {name: median(s) for name, s in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all of SPATIAL)")
    ap.add_argument("--nhwc", action="store_true", help="NHWC data (then name NHWC peers, e.g. --peers torch-cl)")
    ap.add_argument("--peak", type=float, default=0.0, help="measured FMA peak GFLOP/s at this thread count")
    ap.add_argument("--bw", type=float, default=0.0, help="measured stream bandwidth GB/s at this thread count")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--peers", default="torch,onnxruntime", help="comma-separated peers of fastpoint.bench.peers")
    args = ap.parse_args()

    fp.set_num_threads(args.threads)
    peers = args.peers.split(",") if args.peers else []
    layers = [suites.layer(n) for n in args.layers.split(",")] if args.layers else suites.SPATIAL
    from fastpoint.backends.c import CBackend
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# {now:%Y-%m-%d %H:%M} UTC, threads={args.threads}, layout={'NHWC' if args.nhwc else 'NCHW'}, "
          f"isa={CBackend().isa()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print("| layer | shape | fastpoint GFLOP/s | " + " | ".join(peers)
          + " | fp / best peer | % peak | fp GB/s | % bw |")
    print("|---|---|---|" + "---|" * len(peers) + "---|---|---|---|")
    ratios = []
    for layer in layers:
        t = bench_layer(layer, args.threads, args.nhwc, args.rounds, peers)
        gf = {k: layer.flops / v / 1e9 for k, v in t.items()}
        best = min(v for k, v in t.items() if k != "fastpoint") if len(t) > 1 else float("nan")
        ratio = best / t["fastpoint"]
        ratios.append(ratio)
        gbs = layer.min_bytes / t["fastpoint"] / 1e9
        pk = f"{100 * gf['fastpoint'] / args.peak:.0f}%" if args.peak and not layer.depthwise else ""
        bw = f"{100 * gbs / args.bw:.0f}%" if args.bw and layer.depthwise else ""
        cells = " | ".join(f"{gf[p]:.1f}" if p in gf else "-" for p in peers)
        print(f"| {layer.name} | {layer.shape} | {gf['fastpoint']:.1f} | {cells} | {ratio:.2f} | {pk} | "
              f"{gbs:.1f} | {bw} |", flush=True)
    geo = float(np.exp(np.mean(np.log(ratios))))
    print(f"\ngeomean fastpoint / best peer: {geo:.2f}; min {min(ratios):.2f}")


if __name__ == "__main__":
    main()
