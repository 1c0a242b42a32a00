"""``fastpoint segment model.onnx input.zarr output.zarr``: a whole network over an image larger than memory.

The image is read from zarr lazily, cut into ``--chunk`` pixel chunks, and run by
:func:`fastpoint.dask.run` (exact: each task runs the whole network on its chunk plus the halo) on a
``dask.distributed`` LocalCluster of ``--workers`` processes with one thread each, or on an existing
scheduler (``--scheduler ADDRESS``). The output is the per-pixel class map (``--argmax``, uint8 when
there are at most 256 classes) or the network's raw output (``--raw``), written to zarr chunk by chunk.

Input layouts: a 4-d array in the graph's layout (N, C, H, W), a 3-d (C, H, W), or an (H, W, C) image
(RGB zarr as microscopes and scanners write it). Integer images are scaled by ``--scale`` (default 1/255)
into the network's dtype. The run prints a progress bar, the throughput and each worker's peak resident
memory.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Optional

import numpy as np


def _to_nchw(x, channels: Optional[int], layout: str):
    """The zarr array as (N, C, H, W), and the layout it came in."""
    if layout == "auto":
        if x.ndim == 4:
            layout = "NCHW"
        elif x.ndim == 3 and channels is not None and x.shape[0] == channels and x.shape[2] != channels:
            layout = "CHW"
        elif x.ndim == 3:
            layout = "HWC"
        elif x.ndim == 2:
            layout = "HW"
        else:
            raise ValueError(f"input of shape {x.shape}: pass --layout (NCHW, CHW, HWC or HW)")
    order = {"NCHW": (0, 1, 2, 3), "CHW": (None, 0, 1, 2), "HWC": (None, 2, 0, 1), "HW": (None, None, 0, 1)}
    if layout not in order:
        raise ValueError(f"--layout must be NCHW, CHW, HWC or HW, got {layout!r}")
    if x.ndim != 4 - order[layout].count(None):
        raise ValueError(f"input of shape {x.shape} is not {layout}")
    perm = [a for a in order[layout] if a is not None]
    x = x.transpose(perm)
    for i, a in enumerate(order[layout]):
        if a is None:
            x = x[None] if i == 0 else x[:, None]
    return x, layout


def choose_chunk(net, shape, dtype, memory_limit: int, worker_base: int, mem, tasks_per_worker: int = 1,
                 tune: bool = False, crop: bool = False) -> dict:
    """The square output chunk with the least recomputed halo whose task fits a worker's memory.

    A task holds one tile's arena (from the plan, exact) and what the steps allocate beside it
    (``mem``: :func:`fastpoint.network.tiled.task_memory`, measured), one per task slot of a worker
    (each thread has its own arena); the worker holds ``worker_base`` on top (its Python, dask, NumPy and
    fastpoint, measured on the workers). The budget stays below dask's pause threshold
    (``distributed.worker.memory.pause``, 80 % of the limit by default) by a tenth of the limit, since a
    paused worker would hold its arena and never resume. Candidates are multiples of the tile alignment;
    among those that fit, the one whose tiles recompute the least (``Tiling.overhead`` on this image,
    ragged ends included) wins, the larger on a tie.

    ``tune``: a network's rate per pixel may fall as its feature maps outgrow the caches, so a smaller
    tile can win despite more recomputation. Then the fitting multiples of 256 (and the least-recomputing
    fit) are timed here: a middle tile's task (cropped as ``crop`` says), one fresh Network per tile shape
    at 1 thread (thread CPU seconds of a second call, robust to other processes); the chunk with the most
    output pixels per second wins."""
    import dask

    from .tiled import tiling

    pause = dask.config.get("distributed.worker.memory.pause", 0.8) or 1.0
    budget = (float(pause) - 0.1) * memory_limit if memory_limit else float("inf")
    n, h, w = shape[0], shape[2], shape[3]
    p = tiling(net, shape, ((1,) * n, (shape[1],), (h,), (w,)), dtype).alignment
    step = p * -(-128 // p)
    best = None
    fits = []
    for c in range(step, max(h, w) + step, step):
        ch = tuple(min(c, h - i) for i in range(0, h, c))
        cw = tuple(min(c, w - i) for i in range(0, w, c))
        t = tiling(net, shape, ((1,) * n, (shape[1],), ch, cw), dtype)
        need = worker_base + tasks_per_worker * max(mem.bytes(net, s, dtype) for s in t.tile_shapes)
        if need > budget:
            if best is not None and c > 2 * best["chunk"]:
                break  # tiles only grow from here
            continue
        entry = {"chunk": c, "halo_overhead": t.overhead, "task_bytes": need - worker_base, "worker_bytes": need,
                 "budget_bytes": budget, "tiling": t}
        fits.append(entry)
        if best is None or t.overhead <= best["halo_overhead"] + 1e-9:
            best = entry
    if best is not None and tune:
        timed = [e for e in fits if e["chunk"] % 256 == 0 or e is best]
        for e in timed:
            e["mpixel_per_cpu_s"] = _task_rate(net, e["tiling"], dtype, crop)
        best = dict(max(timed, key=lambda e: e["mpixel_per_cpu_s"]))
        best["timed"] = [{k: e[k] for k in ("chunk", "halo_overhead", "mpixel_per_cpu_s")} for e in timed]
    if best is not None:
        best = {k: v for k, v in best.items() if k != "tiling"}
    if best is None:
        raise MemoryError(f"no chunk fits: the smallest tile ({step} px + halo) needs more than {budget / 2**20:.0f} "
                          f"MiB per worker (memory_limit {memory_limit / 2**20:.0f} MiB, worker base "
                          f"{worker_base / 2**20:.0f} MiB); raise --memory-limit")
    return best


def _task_rate(net, t, dtype, crop: bool) -> float:
    """Output Mpixel per thread-CPU second of the task of a middle chunk of tiling ``t`` (its second call,
    a fresh Network, 1 thread)."""
    import copy

    from ..core.threads import thread_limit
    from .network import Network
    from .tiled import _Crops

    fresh = Network(copy.deepcopy(net._graph), net.backend)  # packed weights stay out of the shipped graph
    bi, bj = len(t.tiles[0]) // 2, len(t.tiles[1]) // 2
    (a0, a1), (b0, b1) = t.tiles[0][bi], t.tiles[1][bj]
    shape = (1, t.tile_shapes[0][1], a1 - a0, b1 - b0)
    box = []
    for i, (k, s) in enumerate(((bi, a0), (bj, b0))):
        o0 = sum(t.out_chunks[i][:k]) - int(s / t.reach[i].step)
        box.append((o0, o0 + t.out_chunks[i][k] - 1))
    x = np.random.default_rng(0).random(shape, dtype=np.float64).astype(dtype)
    plan = fresh.plan({fresh.inputs[0].name: (shape, np.dtype(dtype))})
    runner = _Crops(plan, fresh.outputs[0].name, tuple(box), t.alignment) if crop else None
    call = (lambda: runner.run(plan, x, fresh.outputs[0].name)) if runner is not None and runner.ok else \
        (lambda: fresh(x))
    with thread_limit(1):
        call()
        c0 = time.thread_time()
        call()
        sec = time.thread_time() - c0
    return t.out_chunks[0][bi] * t.out_chunks[1][bj] / max(sec, 1e-9) / 1e6


def segment(model: str, inp: str, out: str, *, workers: int = 2, chunk=None, scheduler: Optional[str] = None,
            argmax: bool = True, layout: str = "auto", scale: Optional[float] = None, memory_limit: str = "2GiB",
            num_threads: int = 1, progress: bool = True, component: Optional[str] = None, crop: bool = False) -> dict:
    """The command's work, callable from Python (examples/segment_large_image.py, tools/dask_scaling.py).

    ``chunk`` None (or "auto"): :func:`choose_chunk` picks it from the workers' memory limit; "tune": the
    same, timing the candidate tiles here first."""
    import dask.array as da
    import distributed

    import fastpoint as fp

    from .tiled import run, task_memory, task_stats, tiling

    net = fp.load_onnx(model)
    dtype = np.dtype(net.inputs[0].dtype or np.float32)
    channels = net.inputs[0].shape[1] if net.inputs[0].shape and isinstance(net.inputs[0].shape[1], int) else None
    src = da.from_zarr(inp, component=component)
    x, layout = _to_nchw(src, channels, layout)
    if x.dtype.kind in "iu":
        x = x.astype(dtype) * dtype.type(1 / 255 if scale is None else scale)
    elif scale is not None:
        x = x.astype(dtype) * dtype.type(scale)
    else:
        x = x.astype(dtype)
    if scheduler:
        client = distributed.Client(scheduler)
        cluster = None
    else:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        choice = None
        if chunk in (None, "auto", "tune"):
            infos = client.scheduler_info()["workers"].values()
            limit = min((int(i.get("memory_limit") or 0) for i in infos), default=0)
            base = max(client.run(_worker_base).values())
            slots = max((int(i.get("nthreads") or 1) for i in infos), default=1)
            choice = choose_chunk(net, x.shape, dtype, limit, base, task_memory(net, dtype, channels, crop=crop),
                                  slots, tune=chunk == "tune", crop=crop)
            chunk = choice["chunk"]
        chunk = int(chunk)
        x = x.rechunk((1, -1, chunk, chunk))
        t = tiling(net, x.shape, x.chunks, dtype)
        y = run(net, x, num_threads=num_threads, crop=crop)
        if argmax:
            y = y.argmax(axis=1).astype(np.uint8 if y.shape[1] <= 256 else np.int32)
        if layout != "NCHW":
            y = y[0]
        cpu0 = client.run(_cpu_seconds)  # the workers' start-up (imports) is not the job's
        client.run(task_stats, True)
        start = time.perf_counter()
        store = da.to_zarr(y, out, overwrite=True, compute=False)
        future = client.compute(store)
        if progress:
            distributed.progress(future)
        future.result()
        seconds = time.perf_counter() - start
        rss = client.run(_peak_rss)
        cpu = client.run(_cpu_seconds)
        stats = client.run(task_stats)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    pixels = int(x.shape[0] * x.shape[2] * x.shape[3])
    report = {"model": model, "input_shape": list(src.shape), "output_shape": list(y.shape), "chunk": chunk,
              "crop": crop, "chunk_choice": choice, "workers": len(rss), "seconds": seconds,
              "mpixel_per_s": pixels / seconds / 1e6,
              "worker_cpu_seconds": sum(cpu[w] - cpu0.get(w, 0.0) for w in cpu),
              "peak_rss_mib": sorted(v / 2**20 for v in rss.values()),
              "halo": [list(h) for h in t.halo], "alignment": t.alignment,
              "tile_shapes": [list(s) for s in t.tile_shapes],
              "task_peak_activation_mib": t.peak_bytes / 2**20, "halo_overhead": t.overhead,
              "tasks": {k: sum(v[k] for v in stats.values()) for k in next(iter(stats.values()), {})}}
    return report


def _worker_base() -> int:
    """A worker's resident memory with what a tile task imports loaded (before any task ran)."""
    import zarr  # noqa: F401

    import fastpoint  # noqa: F401

    from .tiled import run  # noqa: F401

    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    """This process's peak resident memory: VmHWM (the high-water mark of its own address space; getrusage's
    ru_maxrss is not, on Linux it survives exec and so starts at the spawning parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cmd_segment(args: argparse.Namespace) -> int:
    chunk = args.chunk if args.chunk in ("auto", "tune") else int(args.chunk)
    report = segment(args.model, args.input, args.output, workers=args.workers, chunk=chunk,
                     scheduler=args.scheduler, argmax=not args.raw, layout=args.layout, scale=args.scale,
                     memory_limit=args.memory_limit, num_threads=args.fp_threads, progress=not args.no_progress,
                     component=args.component, crop=args.crop)
    print(f"\n{report['output_shape']} written to {args.output} in {report['seconds']:.1f} s "
          f"({report['mpixel_per_s']:.2f} Mpixel/s); halo {report['halo']}, tile starts every "
          f"{report['alignment']} px, {100 * report['halo_overhead']:.0f}% recomputed, "
          f"{report['task_peak_activation_mib']:.0f} MiB activations per task")
    print("peak RSS per worker (MiB): " + ", ".join(f"{v:.0f}" for v in report["peak_rss_mib"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="run an ONNX network over a zarr image larger than memory (exact tiles, "
                                       "dask.distributed)")
    p.add_argument("model", help="the .onnx file (a fully convolutional network, free H and W)")
    p.add_argument("input", help="input zarr array (N,C,H,W / C,H,W / H,W,C)")
    p.add_argument("output", help="output zarr array (overwritten)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes, 1 thread each")
    p.add_argument("--chunk", default="auto",
                   help="output chunk size in pixels (the halo comes on top); 'auto' (default): the least "
                        "recomputation that fits --memory-limit; 'tune': the fitting chunk whose tiles run fastest, "
                        "timed first")
    p.add_argument("--scheduler", default=None, help="address of an existing dask scheduler (no LocalCluster)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--argmax", action="store_true", help="write the class map (default)")
    group.add_argument("--raw", action="store_true", help="write the network's output instead of its argmax")
    p.add_argument("--layout", default="auto", help="input layout: auto (default), NCHW, CHW, HWC, HW")
    p.add_argument("--scale", type=float, default=None, help="multiply the input by this (default 1/255 for "
                                                             "integer images)")
    p.add_argument("--component", default=None, help="the array inside a zarr group")
    p.add_argument("--memory-limit", default="2GiB", help="per LocalCluster worker (default 2GiB)")
    p.add_argument("--fp-threads", type=int, default=1, help="kernel threads per task (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--crop", action="store_true", help="each step computes only what the chunk needs of it "
                                                       "(exact; slower than whole tiles so far, see docs/dask.md)")
    p.add_argument("--json", default=None, help="write the run's figures (time, RSS, halo) to this file")
    p.set_defaults(func=cmd_segment)
