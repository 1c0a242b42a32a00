"""Dev benchmark: fastpoint's C backend on the SPATIAL suite against PyTorch conv2d and ONNX Runtime.

Run under the shared lock, e.g.::

    flock /tmp/fp-bench.lock python bench/spatial_vs_peers.py --threads 1 --peak 115

Contenders alternate round by round (fastpoint/_timing.py) and medians are compared; every
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
from fastpoint import _suites  # noqa: E402
from fastpoint._timing import alternate, median  # noqa: E402


def _torch_fn(layer: _suites.Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray, nhwc: bool) -> Callable[[], object]:
    import torch
    import torch.nn.functional as F

    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    if nhwc:
        tx = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels_last view of NHWC data
        tw = tw.contiguous(memory_format=torch.channels_last)
    kw = layer.kwargs()

    def call() -> object:
        with torch.no_grad():
            return F.relu(F.conv2d(tx, tw, tb, **kw), inplace=True)
    return call


def _ort_fn(layer: _suites.Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    p, d = layer.padding, layer.dilation
    node = helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[layer.k, layer.k], strides=[layer.stride] * 2,
                            pads=[p, p, p, p], dilations=[d, d], group=layer.groups)
    relu = helper.make_node("Relu", ["c"], ["y"])
    graph = helper.make_graph(
        [node, relu], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    del onnx
    feed = {"x": x}
    return lambda: sess.run(None, feed)


def bench_layer(layer: _suites.Layer, threads: int, nhwc: bool, rounds: int, peers: List[str]) -> Dict[str, float]:
    layout = "NHWC" if nhwc else "NCHW"
    x, w, b = layer.arrays(layout)
    conv = fp.Conv2d(w, b, activation="relu", layout=layout, backend="c", **layer.kwargs())
    out = conv(x)
    contenders: Dict[str, Callable[[], object]] = {"fastpoint": lambda: conv(x, out=out)}
    if "torch" in peers:
        contenders["torch"] = _torch_fn(layer, x, w, b, nhwc)
    if "ort" in peers and not nhwc:
        contenders["ort"] = _ort_fn(layer, x, w, b, threads)
    samples = alternate(contenders, rounds=rounds, sample_s=0.03, max_total_s=6.0)
    return {name: median(s) for name, s in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all of SPATIAL)")
    ap.add_argument("--nhwc", action="store_true", help="NHWC data; torch runs channels_last")
    ap.add_argument("--peak", type=float, default=0.0, help="measured FMA peak GFLOP/s at this thread count")
    ap.add_argument("--bw", type=float, default=0.0, help="measured stream bandwidth GB/s at this thread count")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--peers", default="torch,ort")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    fp.set_num_threads(args.threads)
    peers = args.peers.split(",") if args.peers else []
    layers = [_suites.layer(n) for n in args.layers.split(",")] if args.layers else _suites.SPATIAL
    from fastpoint.backends.c import CBackend
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# {now:%Y-%m-%d %H:%M} UTC, threads={args.threads}, layout={'NHWC' if args.nhwc else 'NCHW'}, "
          f"relu fused, isa={CBackend().isa()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print("| layer | shape | fastpoint GFLOP/s | torch | ort | fp / best peer | % peak | fp GB/s | % bw |")
    print("|---|---|---|---|---|---|---|---|---|")
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
        print(f"| {layer.name} | {layer.shape} | {gf['fastpoint']:.1f} | {gf.get('torch', float('nan')):.1f} | "
              f"{gf.get('ort', float('nan')):.1f} | {ratio:.2f} | {pk} | {gbs:.1f} | {bw} |", flush=True)
    geo = float(np.exp(np.mean(np.log(ratios))))
    print(f"\ngeomean fastpoint / best peer: {geo:.2f}; min {min(ratios):.2f}")


if __name__ == "__main__":
    main()
