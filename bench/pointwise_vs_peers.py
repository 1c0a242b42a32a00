"""fastpoint's 1x1 GEMM against its peers on the public pointwise suite (dev benchmark).

Contenders alternate round by round (fastpoint._timing.alternate) and medians are compared; every
contender runs with the same thread count and writes into a preallocated output where it can.

    flock /tmp/fp-bench.lock python bench/pointwise_vs_peers.py --threads 1 [--layout NHWC] [--layers a,b]

NCHW peers: NumPy matmul of the same M, N, K (OpenBLAS), ONNX Runtime Conv (weights as initializers),
torch conv2d.  NHWC peer: torch conv2d on channels_last tensors.  Peak and stream bandwidth are given
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
from typing import Callable, Dict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoint as fp  # noqa: E402
from fastpoint import _timing  # noqa: E402
from fastpoint._suites import POINTWISE, Layer  # noqa: E402
from fastpoint._timing import alternate, median  # noqa: E402

SETTLE_S = 0.0


def alternate_settled(contenders: Dict[str, Callable[[], object]], rounds: int, sample_s: float,
                      max_total_s: float) -> Dict[str, list]:
    """Like fastpoint._timing.alternate, with an untimed pause of SETTLE_S before every sample."""
    if SETTLE_S <= 0:
        return alternate(contenders, rounds=rounds, sample_s=sample_s, max_total_s=max_total_s)
    clock = _timing.time.perf_counter
    reps = {}
    for name, fn in contenders.items():
        fn()
        t0 = clock()
        fn()
        reps[name] = max(1, int(sample_s / max(clock() - t0, 1e-7)))
    samples: Dict[str, list] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(SETTLE_S)
            t0 = clock()
            for _ in range(reps[name]):
                contenders[name]()
            samples[name].append((clock() - t0) / reps[name])
    return samples
from fastpoint.backends import get_backend  # noqa: E402


def _numpy_gemm(layer: Layer, x: np.ndarray, w: np.ndarray) -> Callable[[], object]:
    n_pix = layer.oh * layer.ow
    xs = np.ascontiguousarray(x[:, :, ::layer.stride, ::layer.stride]).reshape(layer.n, layer.cin, n_pix)
    w2 = np.ascontiguousarray(w.reshape(layer.cout, layer.cin))
    out = np.empty((layer.n, layer.cout, n_pix), np.float32)
    return lambda: np.matmul(w2, xs, out=out)


def _ort(layer: Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[layer.stride] * 2, kernel_shape=[1, 1])
    graph = helper.make_graph(
        [node], "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})


def _torch(layer: Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray, nhwc: bool) -> Callable[[], object]:
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if nhwc else x)
    wt, bt = torch.from_numpy(w), torch.from_numpy(b)
    if nhwc:
        xt = xt.contiguous(memory_format=torch.channels_last)
        wt = wt.contiguous(memory_format=torch.channels_last)

    def call():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, bt, stride=layer.stride)
    return call


def bench(layer: Layer, threads: int, layout: str, peers: list) -> Dict[str, float]:
    x, w, b = layer.arrays(layout)
    conv = fp.Conv2d(w, b, stride=layer.stride, layout=layout, backend="c")
    out = conv(x)
    contenders: Dict[str, Callable[[], object]] = {"fastpoint": lambda: conv(x, out=out)}
    if layout == "NCHW":
        if "numpy" in peers:
            contenders["numpy"] = _numpy_gemm(layer, x, w)
        if "ort" in peers:
            contenders["ort"] = _ort(layer, x, w, b, threads)
    if "torch" in peers:
        contenders["torch"] = _torch(layer, x, w, b, layout == "NHWC")
    samples = alternate_settled(contenders, rounds=7, sample_s=0.03, max_total_s=4.0)
    return {name: median(s) for name, s in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    ap.add_argument("--peers", default="numpy,ort,torch")
    ap.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    ap.add_argument("--settle", type=float, default=0.0, help="untimed sleep before each sample, seconds")
    ap.add_argument("--peak", type=float, default=240.0, help="measured 1-core FMA peak, GFLOP/s")
    ap.add_argument("--stream", type=float, default=16.3, help="measured 1-thread triad bandwidth, GB/s")
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    global SETTLE_S
    SETTLE_S = args.settle

    if args.clock == "cpu":
        if args.threads != 1:
            ap.error("--clock cpu needs --threads 1")

        class _ThreadClock:  # what fastpoint._timing reads as time.perf_counter
            perf_counter = staticmethod(time.thread_time)

        _timing.time = _ThreadClock  # type: ignore[assignment]

    torch.set_num_threads(args.threads)
    fp.set_num_threads(args.threads)
    layers = [la for la in POINTWISE if not args.layers or la.name in args.layers.split(",")]
    peers = args.peers.split(",")
    peak, stream = args.peak * args.threads, args.stream
    print(f"threads={args.threads} layout={args.layout} isa={get_backend('c').isa()} "
          f"peak={peak:.0f} GFLOP/s stream={stream:.1f} GB/s clock={args.clock} settle={args.settle}s "
          f"date={time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| layer | shape | fastpoint GFLOP/s | % peak | GB/s | " + " | ".join(peers) + " | best peer | ratio |")
    print("|---|---|---|---|---|" + "---|" * len(peers) + "---|---|")
    ratios = []
    with threadpool_limits(limits=args.threads):
        for layer in layers:
            t = bench(layer, args.threads, args.layout, peers)
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
