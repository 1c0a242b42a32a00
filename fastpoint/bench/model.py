"""``fastpoint bench --model m.onnx``: a whole ONNX model, end to end, against ONNX Runtime and OpenVINO.

Every contender runs the same random float32 input (free dimensions from ``--input-shape``, else 1 for
N and 256 for the others) at each thread count; they alternate round by round and medians are
compared (:func:`fastpoint.bench.timing.alternate`); at more than one thread a pause before each sample
lets the previous contender's spinning pool fall asleep (the layer benches' ``gap_s``). Besides the
milliseconds the table gives fastpoint's largest difference from ONNX Runtime relative to ONNX
Runtime's largest output magnitude, and fastpoint's load plus first inference (in a process that
has imported onnx already).
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


def contender_name(algorithm: str) -> str:
    """fastpoint's contender for ``load_onnx(..., algorithm=)``: "fastpoint" (auto), "fastpoint:winograd"."""
    return "fastpoint" if algorithm == "auto" else f"fastpoint:{algorithm}"


def load_and_first(path: str, feeds, backend: str = "auto", algorithm: str = "auto") -> Tuple[float, object]:
    import fastpoint as fp

    t0 = time.perf_counter()
    net = fp.load_onnx(path, backend=backend, algorithm=algorithm)
    net.run(feeds)
    return time.perf_counter() - t0, net


def bench_model(path: str, peers: Sequence[str], threads: Sequence[int], shape=None, rounds: int = 7,
                backend: str = "auto", sample_s: float = 0.2, algorithms: Sequence[str] = ("auto",),
                repeat: int = 1) -> List[dict]:
    """One row per thread count: ms per inference of fastpoint (one contender per ``algorithms`` entry,
    :func:`contender_name`) and each peer, error vs ORT; load + first call of the first.

    ``repeat`` passes are run one after another (each: a fresh load + first call, then every thread count,
    contenders alternating round by round, their order rotated from pass to pass); a row's ``ms`` is the
    median over the passes of each pass's median, its ``ratio`` (best peer / first fastpoint contender)
    the median of the per-pass ratios, ``first_s`` the median load + first call, and ``passes`` keeps
    every pass (its medians, its ratio and its raw samples)."""
    import fastpoint as fp

    from .runner import Settings
    from .timing import alternate, median

    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    fp.set_num_threads(threads[0])
    # an untimed load first: it imports onnx and reads the file (one-time costs per process)
    feeds = input_feeds(fp.load_onnx(path, backend=backend), shape)
    others: Dict[str, object] = {}  # the other algorithms' networks, loaded once
    runners: Dict[int, Dict[str, Callable]] = {}  # per thread count: the peers' sessions, made once
    passes: Dict[int, List[dict]] = {t: [] for t in threads}
    firsts: List[float] = []
    errors: Dict[int, Dict[str, float]] = {}
    for p in range(repeat):
        fp.set_num_threads(threads[0])
        first_s, net = load_and_first(path, feeds, backend, algorithms[0])
        firsts.append(first_s)
        if p == 0:
            others = {contender_name(a): fp.load_onnx(path, backend=backend, algorithm=a) for a in algorithms[1:]}
        nets = {contender_name(algorithms[0]): net, **others}
        for t in threads:
            fp.set_num_threads(t)
            if t not in runners:
                runners[t] = {peer: PEER_SETUP[peer](path, t) for peer in peers}
            contenders = {c: (lambda n=n: n.run(feeds)) for c, n in nets.items()}
            contenders.update({peer: (lambda fn=fn: fn(feeds)) for peer, fn in runners[t].items()})
            names = list(contenders)  # pass p starts its rounds at another contender (alternate rotates them)
            contenders = {c: contenders[c] for c in names[p % len(names):] + names[:p % len(names)]}
            # at 2+ threads the peers' pools (ONNX Runtime's, OpenVINO's) spin after their sample and would be
            # timed in the next contender's: each sample waits for them to sleep (the layer benches' pause)
            samples = alternate(contenders, rounds=rounds, sample_s=sample_s, max_total_s=120.0,
                                gap_s=Settings.gap_s if t > 1 else 0.0)
            ms = {c: median(samples[c]) * 1e3 for c in names}
            passes[t].append({"ms": ms, "ratio": _ratio(ms, names[0], peers), "first_s": first_s,
                              "samples_s": {c: samples[c] for c in names}})
            if t not in errors and "onnxruntime" in runners[t]:
                ref = runners[t]["onnxruntime"](feeds)[0]
                errors[t] = {c: float(np.abs(list(n.run(feeds).values())[0] - ref).max()
                                      / max(np.abs(ref).max(), 1e-30)) for c, n in nets.items()}
        del nets, net, contenders  # this pass's network goes before the next one loads
    rows = []
    for t in threads:
        ms = {c: median([q["ms"][c] for q in passes[t]]) for c in passes[t][0]["ms"]}
        ratios = [q["ratio"] for q in passes[t] if q["ratio"] is not None]
        row = {"threads": t, "ms": ms, "ratio": median(ratios) if ratios else None, "first_s": median(firsts),
               "passes": passes[t]}
        if t in errors:
            row["rel_err"] = errors[t]
        rows.append(row)
    return rows


def _ratio(ms: Dict[str, float], ours: str, peers: Sequence[str]) -> Optional[float]:
    """The fastest peer's time over ``ours``'s (> 1: fastpoint is faster); None without peers."""
    best = min((ms[p] for p in peers if p in ms), default=None)
    return best / ms[ours] if best else None


def table(path: str, rows: List[dict], peers: Sequence[str]) -> str:
    """The end-to-end table: ms per contender, the first fastpoint contender's speed-up over the fastest
    peer, each fastpoint contender's error vs ORT; with several passes (:func:`bench_model`'s ``repeat``)
    the medians over the passes, the median of the per-pass speed-ups and their range."""
    ours = [c for c in rows[0]["ms"] if c.startswith("fastpoint")] if rows else ["fastpoint"]
    names = [*ours, *peers]
    width = {n: max(14, len(n) + 3) for n in names}
    head = (f"{'threads':>7}  " + "  ".join(f"{n + ' ms':>{width[n]}}" for n in names)
            + (f"  {'x best peer':>11}" if peers else "") + "  max|fp-ORT|/max|ORT|")
    lines = [f"model {path}", head, "-" * len(head)]
    for r in rows:
        err = " / ".join(f"{r['rel_err'][c]:.1e}" for c in ours) if "rel_err" in r else "-"
        ratio = r["ratio"] if "ratio" in r else _ratio(r["ms"], ours[0], peers)
        gain = f"  {ratio:>11.2f}" if ratio else ""
        lines.append(f"{r['threads']:>7}  " + "  ".join(f"{r['ms'][n]:>{width[n]}.1f}" for n in names) + gain
                     + f"  {err:>20}")
    passes = len(rows[0].get("passes", ())) if rows else 0
    if passes > 1:
        spread = "; ".join(f"{r['threads']} thread(s) {min(q['ratio'] for q in r['passes']):.2f}-"
                           f"{max(q['ratio'] for q in r['passes']):.2f}" for r in rows
                           if all(q["ratio"] for q in r["passes"]))
        lines.append(f"medians of {passes} passes; x best peer: the median of the per-pass ratios"
                     + (f" (range {spread})" if spread else ""))
    if rows:
        steady = rows[0]["ms"][ours[0]] / 1e3
        lines.append(f"fastpoint load + first inference {rows[0]['first_s'] * 1e3:.0f} ms "
                     f"({rows[0]['first_s'] / steady:.1f}x a steady inference at {rows[0]['threads']} thread(s))")
    return "\n".join(lines)


def profile_table(net, feeds, repeat: int = 5, top: int = 12, threads: Optional[int] = None) -> str:
    """Where the time goes: per op type, then the slowest nodes with GFLOP/s and % of the FMA peak.

    The peak is the machine's measured float32 FMA peak at ``threads`` threads
    (:func:`fastpoint.bench.measure.fma_peak`): what a convolution's multiply-adds could reach, so
    ``%peak`` says how far each layer is from its limit (data-movement ops show GB/s instead).
    """
    from .measure import fma_peak

    steps = net.profile(feeds, repeat)
    plan = net.plan()
    total = sum(t for _, _, t in steps) or 1e-30
    flops = [_step_flops(s) for s in plan.steps]
    moved = [_step_bytes(plan, s) for s in plan.steps]
    peak = None
    for _ in range(8 if threads else 0):  # the best of eight short ones: other processes only lower it
        peak = fma_peak(threads, seconds=0.05, again=True)
    by_op: Dict[str, List[int]] = {}
    for i, (_, op, _) in enumerate(steps):
        by_op.setdefault(op, []).append(i)
    conv_t = sum(steps[i][2] for op, idx in by_op.items() if op in _CONV_OPS for i in idx)
    conv_f = sum(flops[i] for op, idx in by_op.items() if op in _CONV_OPS for i in idx)
    lines = [f"per-op profile (median of {repeat} runs, {total * 1e3:.1f} ms in the steps"
             + (f", FMA peak {peak:.0f} GFLOP/s" if peak else "") + ")",
             f"{'op':<22}{'nodes':>6}{'ms':>10}{'%':>7}{'GFLOP/s':>9}{'%peak':>7}"]
    for op, idx in sorted(by_op.items(), key=lambda kv: -sum(steps[i][2] for i in kv[1])):
        t = sum(steps[i][2] for i in idx)
        f = sum(flops[i] for i in idx)
        gf = f / t * 1e-9 if t > 0 and f and op in _CONV_OPS else None
        lines.append(f"{op:<22}{len(idx):>6}{t * 1e3:>10.2f}{100 * t / total:>7.1f}"
                     + (f"{gf:>9.1f}" + (f"{100 * gf / peak:>7.1f}" if peak else "") if gf else ""))
    if conv_t > 0 and conv_f:
        gf = conv_f / conv_t * 1e-9
        lines.append(f"convolutions together: {conv_f / 1e9:.2f} GFLOP in {conv_t * 1e3:.1f} ms = {gf:.1f} GFLOP/s"
                     + (f" ({100 * gf / peak:.0f} % of peak); at peak they would take {conv_f / peak * 1e-6:.1f} ms"
                        if peak else "") + f"; the other ops {100 * (1 - conv_t / total):.1f} % of the time")
    lines.append(f"slowest {top} nodes:")
    lines.append(f"  {'op':<18}{'ms':>8}{'MFLOP':>9}{'GFLOP/s':>9}{'%peak':>7}{'MB':>7}  "
                 f"{'shape in -> out':<28} kernel  node")
    order = sorted(range(len(steps)), key=lambda i: -steps[i][2])[:top]
    for i in order:
        name, op, t = steps[i]
        step = plan.steps[i]
        gf = flops[i] / t * 1e-9 if t > 0 and flops[i] and op in _CONV_OPS else None
        pct = f"{100 * gf / peak:>7.1f}" if gf and peak else f"{'':>7}"
        shapes = "x".join(map(str, step.in_shapes[0] or ())) + " -> " + "x".join(map(str, step.out_shapes[0] or ()))
        kernel = step.node.op.kernel(step.in_shapes) if step.in_shapes and step.in_shapes[0] is not None else "?"
        fused = ("+" + "+".join(step.node.op.fused)) if step.node.op.fused else ""
        lines.append(f"  {op + fused:<18}{t * 1e3:>8.2f}{flops[i] / 1e6:>9.1f}"
                     + (f"{gf:>9.1f}" if gf else f"{'':>9}") + pct
                     + f"{moved[i] / 1e6:>7.1f}  {shapes:<28} {kernel}  {name}")
    return "\n".join(lines)


_CONV_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _step_flops(step) -> int:
    if any(s is None for s in step.out_shapes) or not step.in_shapes or step.in_shapes[0] is None:
        return 0
    try:
        return int(step.node.op.flops(step.in_shapes, step.out_shapes))
    except (TypeError, IndexError):
        return 0


def _step_bytes(plan, step) -> int:
    """Bytes a step reads and writes at least once (its activations, not weights)."""
    total = 0
    for name in list(step.node.inputs) + list(step.node.outputs):
        shape, dtype = plan.shapes.get(name), plan.dtypes.get(name)
        if name and name not in plan.consts and shape is not None and dtype is not None:
            total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return total


def _rss_bytes() -> int:
    """This process's resident set now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _release_free_heap() -> None:
    """Give the pages of freed heap memory back to the OS (glibc ``malloc_trim``; nothing elsewhere).

    Loading frees a lot (ONNX Runtime the protobuf and the unpacked initializers once its session has
    packed them: about 130 MiB for fcn_resnet50); the allocator keeps those pages resident, and
    activations allocated later reuse them without the RSS growing (fcn: 0.4 MiB of measured growth).
    Trimmed before "loaded" is read, every page a run then needs shows as growth."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS count here (Linux: ``clear_refs`` 5 resets VmHWM), so load-time peaks do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """The peak RSS since the last reset (VmHWM), else since the process started (ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def packed_weight_bytes(net) -> int:
    """Bytes of the convolutions' packed weights (prepacked on their first call)."""
    total = 0
    for node in net._graph.nodes:
        for layer in getattr(node.op, "_layers", {}).values():
            for entry in getattr(layer, "_packed", {}).values():
                buf = getattr(entry[1], "buffer", None)
                total += int(getattr(buf, "nbytes", 0) or 0)
    return total


def memory_child(contender: str, path: str, threads: int, feeds_path: str, runs: int = 3) -> dict:
    """In a fresh process: RSS once the model is loaded and ready, and the peak over ``runs`` inferences.

    The growth from "loaded" to the peak is what running costs beyond the weights: activations and
    scratch (ONNX Runtime packs its weights when the session is made; fastpoint on the first call,
    so the packed weights' bytes are taken out of its growth and reported apart). The inputs come from
    ``feeds_path`` (an ``.npz`` the parent wrote), so a peer's process loads nothing but the peer: no
    memory freed before the measurement (a fastpoint network loaded to make the inputs, say) is there
    for the peer to reuse without its RSS growing.
    """
    import fastpoint as fp

    fp.set_num_threads(threads)
    with np.load(feeds_path) as f:
        feeds = {k: f[k] for k in f.files}
    info: dict = {}
    if contender.startswith("fastpoint"):  # fastpoint or fastpoint:ALGORITHM (contender_name)
        net = fp.load_onnx(path, algorithm=contender.partition(":")[2] or "auto")
        # a model of fixed input shapes packs, and binds this thread's arena, in load_onnx (docs/networks.md,
        # "Packing straight from the file"): the arena counts in the growth, as when the first run makes it
        spare = getattr(net, "_spare", None)  # (Network.pack: the first run's program and arena)
        info.update(packed_at_load=packed_weight_bytes(net), arena_at_load=0 if spare is None else spare[2].nbytes)
        _release_free_heap()
        loaded = _rss_bytes()
        _reset_peak_rss()
        for _ in range(runs):
            net.run(feeds)
        plan = net.plan()
        info.update(planned_peak=plan.peak_bytes, arena=plan.arena_bytes, packed=packed_weight_bytes(net))
    else:
        run = PEER_SETUP[contender](path, threads)
        _release_free_heap()
        loaded = _rss_bytes()
        _reset_peak_rss()
        for _ in range(runs):
            run(feeds)
    info.update(loaded=loaded, peak=_peak_rss_bytes(), after=_rss_bytes())
    return info


def memory_rows(path: str, contenders: Sequence[str], threads: int,
                shape: Optional[Sequence[int]] = None) -> Dict[str, dict]:
    """:func:`memory_child` of each contender, each in its own fresh Python process, on the same inputs."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    import fastpoint as fp

    code = ("import json, sys; from fastpoint.bench.model import memory_child; "
            "print(json.dumps(memory_child(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])))")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        feeds_path = os.path.join(tmp, "feeds.npz")
        np.savez(feeds_path, **input_feeds(fp.load_onnx(path), shape))
        for c in contenders:
            res = subprocess.run([sys.executable, "-c", code, c, path, str(threads), feeds_path], capture_output=True,
                                 text=True)
            if res.returncode == 0:
                rows[c] = json.loads(res.stdout.strip().splitlines()[-1])
            else:
                print(f"memory of {c}: failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return rows


def memory_table(rows: Dict[str, dict]) -> str:
    mib = 1 / 2**20
    lines = [f"{'contender':<12}{'loaded MiB':>11}{'peak RSS MiB':>13}{'growth MiB':>11}  notes"]
    for c, r in rows.items():
        growth = (r["peak"] - r["loaded"] - (r.get("packed", 0) - r.get("packed_at_load", 0))
                  + r.get("arena_at_load", 0))
        note = (f"packed weights {r['packed'] * mib:.0f} MiB (taken out of the growth); planned peak activations "
                f"{r['planned_peak'] * mib:.1f} MiB, arena {r['arena'] * mib:.1f} MiB"
                if c.startswith("fastpoint") else "")
        lines.append(f"{c:<12}{r['loaded'] * mib:>11.0f}{r['peak'] * mib:>13.0f}{growth * mib:>11.1f}  {note}")
    return "\n".join(lines)


def save_model_record(args, rows: List[dict], peers: Sequence[str], threads: Sequence[int],
                      algorithms: Sequence[str], repeat: int) -> None:
    """``--json`` with ``--model``: the command, machine, versions and every row with all its passes."""
    import json
    import shlex

    from .runner import _loadavg, _versions, machine_info

    record = {"kind": "model", "model": args.model, "repeat": repeat, "threads": list(threads),
              "peers": list(peers), "algorithms": list(algorithms),
              "command": "fastpoint " + " ".join(shlex.quote(a) for a in getattr(args, "argv", ["bench"])),
              "machine": {**machine_info(threads), "loadavg_after": _loadavg()},
              "versions": _versions(peers), "rows": rows}
    with open(args.json, "w") as f:
        json.dump(record, f, indent=1)


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
    algorithms = [a.strip() for a in (args.algorithm or "auto").split(",") if a.strip()] or ["auto"]
    repeat = getattr(args, "repeat", 1)
    if repeat < 1:
        print("--repeat needs a positive count", file=sys.stderr)
        return 2
    rows = bench_model(args.model, peers, threads, shape, rounds=args.rounds or 7, backend=backend,
                       algorithms=algorithms, repeat=repeat)
    print(table(args.model, rows, peers))
    if getattr(args, "json", ""):
        save_model_record(args, rows, peers, threads, algorithms, repeat)
        print(f"every pass's medians and raw samples written to {args.json}")
    if getattr(args, "memory", False):
        print(f"\nmemory at {threads[0]} thread(s), each contender in a fresh process (RSS):")
        contenders = [*map(contender_name, algorithms), *[p for p in peers if p in PEER_SETUP]]
        print(memory_table(memory_rows(args.model, contenders, threads[0], shape)))
    if args.profile:
        net = fp.load_onnx(args.model, backend=backend, algorithm=algorithms[0])
        feeds = input_feeds(net, shape)
        for t in threads:
            fp.set_num_threads(t)
            print(f"\n{t} thread(s): " + profile_table(net, feeds, threads=t))
    return 0
