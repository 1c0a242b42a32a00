"""``fastpoint bench --model m.onnx``: a whole ONNX model, end to end, against ONNX Runtime and OpenVINO.

Every contender runs the same random float32 input (free dimensions from ``--input-shape``, else 1 for
N and 256 for the others) at each thread count; they alternate round by round and medians are
compared (:func:`fastpoint.bench.timing.alternate`). Besides the milliseconds the table gives
fastpoint's largest difference from ONNX Runtime relative to ONNX Runtime's largest output magnitude,
and fastpoint's load plus first inference (in a process that has imported onnx already).
``--profile`` prints where fastpoint's time goes, per op type and for the slowest nodes.

=============  ========================================================================================
peer           what is timed
=============  ========================================================================================
onnxruntime    ``InferenceSession.run`` (CPU provider, all graph optimizations, ``intra_op_num_threads``)
openvino       a compiled model's infer request (``CPU``, ``PERFORMANCE_HINT=LATENCY``,
               ``INFERENCE_NUM_THREADS``, ``INFERENCE_PRECISION_HINT=f32``: its default is bf16 where the
               CPU has bf16 instructions, which moves results by ~1e-2 relative)
torch          n/a for an ONNX file (PyTorch does not run ONNX models); use the exporting module
=============  ========================================================================================
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

MODEL_PEERS = ("onnxruntime", "openvino", "torch")


def input_feeds(net, shape: Optional[Sequence[int]] = None, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random inputs for every graph input: ``shape`` for a single input, else the declared one."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in net.inputs:
        if shape is not None and len(net.inputs) == 1:
            dims = tuple(shape)
        else:
            dims = tuple(d if isinstance(d, int) else (1 if i == 0 else 256) for i, d in enumerate(info.shape or ()))
        dtype = info.dtype or np.dtype(np.float32)
        feeds[info.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def _onnxruntime(path: str, threads: int) -> Callable[[Dict[str, np.ndarray]], List[np.ndarray]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


def _openvino(path: str, threads: int) -> Callable[[Dict[str, np.ndarray]], List[np.ndarray]]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                   # f32 as the others: on CPUs with bf16 instructions OpenVINO's default is bf16
                                   "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run(feeds):
        request.infer(feeds)
        return [request.get_output_tensor(i).data for i in range(len(compiled.outputs))]

    return run


PEER_SETUP = {"onnxruntime": _onnxruntime, "openvino": _openvino}


def why_unavailable(peer: str) -> Optional[str]:
    import importlib.util

    if peer == "torch":
        return "PyTorch does not run ONNX files (time the exporting torch module instead)"
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(peer)
    if module is None:
        return f"unknown peer; one of {', '.join(MODEL_PEERS)}"
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install {module})"
    return None


def load_and_first(path: str, feeds, backend: str = "auto") -> Tuple[float, object]:
    import fastpoint as fp

    t0 = time.perf_counter()
    net = fp.load_onnx(path, backend=backend)
    net.run(feeds)
    return time.perf_counter() - t0, net


def bench_model(path: str, peers: Sequence[str], threads: Sequence[int], shape=None, rounds: int = 7,
                backend: str = "auto", sample_s: float = 0.2) -> List[dict]:
    """One row per thread count: ms per inference of fastpoint and each peer (medians), error vs ORT."""
    import fastpoint as fp

    from .timing import alternate, median

    fp.set_num_threads(threads[0])
    # an untimed load first: it imports onnx and reads the file (one-time costs per process)
    feeds = input_feeds(fp.load_onnx(path, backend=backend), shape)
    first_s, net = load_and_first(path, feeds, backend)
    rows = []
    for t in threads:
        fp.set_num_threads(t)
        runners = {p: PEER_SETUP[p](path, t) for p in peers}
        contenders = {"fastpoint": lambda: net.run(feeds)}
        contenders.update({p: (lambda fn=fn: fn(feeds)) for p, fn in runners.items()})
        samples = alternate(contenders, rounds=rounds, sample_s=sample_s, max_total_s=120.0)
        row = {"threads": t, "ms": {k: median(v) * 1e3 for k, v in samples.items()}, "first_s": first_s}
        if "onnxruntime" in runners:
            ours = list(net.run(feeds).values())[0]
            ref = runners["onnxruntime"](feeds)[0]
            row["rel_err"] = float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))
        rows.append(row)
    return rows


def table(path: str, rows: List[dict], peers: Sequence[str]) -> str:
    names = ["fastpoint", *peers]
    head = f"{'threads':>7}  " + "  ".join(f"{n + ' ms':>14}" for n in names) + "  max|fp-ORT|/max|ORT|"
    lines = [f"model {path}", head, "-" * len(head)]
    for r in rows:
        err = f"{r['rel_err']:.1e}" if "rel_err" in r else "-"
        lines.append(f"{r['threads']:>7}  " + "  ".join(f"{r['ms'][n]:>14.1f}" for n in names) + f"  {err:>20}")
    if rows:
        steady = rows[0]["ms"]["fastpoint"] / 1e3
        lines.append(f"fastpoint load + first inference {rows[0]['first_s'] * 1e3:.0f} ms "
                     f"({rows[0]['first_s'] / steady:.1f}x a steady inference at {rows[0]['threads']} thread(s))")
    return "\n".join(lines)


def profile_table(net, feeds, repeat: int = 5, top: int = 12) -> str:
    steps = net.profile(feeds, repeat)
    total = sum(t for _, _, t in steps) or 1e-30
    by_op: Dict[str, List[float]] = {}
    for _, op, t in steps:
        by_op.setdefault(op, []).append(t)
    lines = [f"per-op profile (median of {repeat} runs, {total * 1e3:.1f} ms in the steps)",
             f"{'op':<22}{'nodes':>6}{'ms':>10}{'%':>7}"]
    for op, ts in sorted(by_op.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{op:<22}{len(ts):>6}{sum(ts) * 1e3:>10.2f}{100 * sum(ts) / total:>7.1f}")
    lines.append(f"slowest {top} nodes:")
    for name, op, t in sorted(steps, key=lambda s: -s[2])[:top]:
        lines.append(f"  {op:<20}{t * 1e3:>9.2f} ms  {name}")
    return "\n".join(lines)


def cmd_bench_model(args) -> int:
    """``fastpoint bench --model``: the table, then the per-op profile with ``--profile``."""
    import sys

    import fastpoint as fp

    if args.peers is None:
        peers = [p for p in MODEL_PEERS if why_unavailable(p) is None]
    else:
        peers = [] if args.peers.strip() == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in list(peers):
        reason = why_unavailable(p)
        if reason:
            print(f"skipping peer {p}: {reason}", file=sys.stderr)
            peers.remove(p)
    threads = [int(t) for t in args.bench_threads.split(",") if t.strip()] or [fp.get_num_threads()]
    shape = [int(d) for d in args.input_shape.split(",")] if args.input_shape else None
    backend = args.backends.split(",")[0] if args.backends else "auto"
    rows = bench_model(args.model, peers, threads, shape, rounds=args.rounds or 7, backend=backend)
    print(table(args.model, rows, peers))
    if args.profile:
        net = fp.load_onnx(args.model, backend=backend)
        feeds = input_feeds(net, shape)
        for t in threads:
            fp.set_num_threads(t)
            print(f"\n{t} thread(s): " + profile_table(net, feeds))
    return 0
