"""fastpoint's 1x1 GEMM against its peers on the public pointwise suite (dev benchmark).

Contenders alternate round by round (fastpoint.bench.timing.alternate) and medians are compared; every
contender runs with the same thread count and writes into a preallocated output where it can.

    flock /tmp/fp-bench.lock python bench/pointwise_vs_peers.py --threads 1 [--layout NHWC] [--layers a,b]

NCHW peers: NumPy matmul of the same M, N, K (OpenBLAS), ONNX Runtime Conv (weights as initializers),
torch conv2d.  NHWC peer: torch conv2d on channels_last tensors.  Each is set up by
fastpoint.bench.peers, as ``fastpoint bench`` sets it up.  Peak and stream bandwidth are given
on the command line (measured with bench/fma_peak.c and bench/stream_triad.c).

``--settle S`` sleeps S seconds (untimed) before each sample: thread pools that keep spinning after
their last call (OpenBLAS's for tens of milliseconds) would otherwise hold the second core during
the next contender's sample; fastpoint's pool spins 0.3 ms.  At 2 threads this changed fastpoint's
result on 256->64@56 from about 125 to about 230 GFLOP/s in runs right after NumPy.

``--clock cpu`` (1 thread only) times with the calling thread's CPU time instead of the wall clock:
at one thread every contender here computes in the calling thread, so time slices lost to other
processes on a shared machine are not charged to anyone (cache and memory contention still are).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoint as fp  # noqa: E402
from fastpoint.backends import get_backend  # noqa: E402
from fastpoint.bench import timing  # noqa: E402
from fastpoint.bench.peers import prepared_runs  # noqa: E402
from fastpoint.bench.suites import POINTWISE, Layer  # noqa: E402
from fastpoint.bench.timing import alternate, median  # noqa: E402

#: peers of the NCHW runs and of the NHWC runs, as fastpoint.bench.peers names them
PEERS = {"NCHW": ("numpy-gemm", "onnxruntime", "torch"), "NHWC": ("torch-cl",)}


def bench(layer: Layer, threads: int, layout: str, peers: List[str], settle_s: float) -> Dict[str, float]:
    """Median seconds per call of fastpoint and of each peer (set up as ``fastpoint bench`` sets them up)."""
    x, w, b = layer.arrays(layout)
    conv = fp.Conv2d(w, b, stride=layer.stride, layout=layout, backend="c")
    out = conv(x)
    contenders: Dict[str, Callable[[], object]] = {"fastpoint": lambda: conv(x, out=out)}
    with prepared_runs(peers, layer, threads, layout) as runs:
        contenders.update(runs)
        samples = alternate(contenders, rounds=7, sample_s=0.03, max_total_s=4.0, gap_s=settle_s)
    return {name: median(s) for name, s in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    ap.add_argument("--peers", default="", help="comma-separated peers of fastpoint.bench.peers "
                    "(default: numpy-gemm,onnxruntime,torch for NCHW, torch-cl for NHWC)")
    ap.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    ap.add_argument("--settle", type=float, default=0.0, help="untimed sleep before each sample, seconds")
    ap.add_argument("--peak", type=float, default=240.0, help="measured 1-core FMA peak, GFLOP/s")
    ap.add_argument("--stream", type=float, default=16.3, help="measured 1-thread triad bandwidth, GB/s")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    if args.clock == "cpu":
        if args.threads != 1:
            ap.error("--clock cpu needs --threads 1")

        class _ThreadClock:  # what fastpoint.bench.timing reads as time.perf_counter
            perf_counter = staticmethod(time.thread_time)

        timing.time = _ThreadClock  # type: ignore[assignment]

    fp.set_num_threads(args.threads)
    layers = [la for la in POINTWISE if not args.layers or la.name in args.layers.split(",")]
    peers = args.peers.split(",") if args.peers else list(PEERS[args.layout])
    peak, stream = args.peak * args.threads, args.stream
    print(f"threads={args.threads} layout={args.layout} isa={get_backend('c').isa()} "
          f"peak={peak:.0f} GFLOP/s stream={stream:.1f} GB/s clock={args.clock} settle={args.settle}s "
          f"date={time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| layer | shape | fastpoint GFLOP/s | % peak | GB/s | " + " | ".join(peers) + " | best peer | ratio |")
    print("|---|---|---|---|---|" + "---|" * len(peers) + "---|---|")
    ratios = []
    with threadpool_limits(limits=args.threads):
        for layer in layers:
            t = bench(layer, args.threads, args.layout, peers, args.settle)
            gf = {k: layer.flops / v * 1e-9 for k, v in t.items()}
            peer_names = [p for p in peers if p in t]
            best = min(peer_names, key=lambda p: t[p])
            ratio = t[best] / t["fastpoint"]
            ratios.append(ratio)
            cells = " | ".join(f"{gf[p]:.1f}" if p in gf else "-" for p in peers)
            print(f"| {layer.name} | {layer.shape} | {gf['fastpoint']:.1f} | {100 * gf['fastpoint'] / peak:.0f}% | "
                  f"{layer.min_bytes / t['fastpoint'] * 1e-9:.1f} | {cells} | {best} | {ratio:.2f} |", flush=True)
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geomean ratio vs best peer: {geo:.3f}   min: {min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
