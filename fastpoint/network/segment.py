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


def segment(model: str, inp: str, out: str, *, workers: int = 2, chunk: int = 1024, scheduler: Optional[str] = None,
            argmax: bool = True, layout: str = "auto", scale: Optional[float] = None, memory_limit: str = "2GiB",
            num_threads: int = 1, progress: bool = True, component: Optional[str] = None) -> dict:
    """The command's work, callable from Python (examples/segment_large_image.py, tools/dask_scaling.py)."""
    import dask.array as da
    import distributed

    import fastpoint as fp

    from .tiled import run, tiling

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
    x = x.rechunk((1, -1, chunk, chunk))
    t = tiling(net, x.shape, x.chunks, dtype)
    y = run(net, x, num_threads=num_threads)
    if argmax:
        y = y.argmax(axis=1).astype(np.uint8 if y.shape[1] <= 256 else np.int32)
        if layout != "NCHW":
            y = y[0]
    elif layout != "NCHW":
        y = y[0]
    if scheduler:
        client = distributed.Client(scheduler)
        cluster = None
    else:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        cpu0 = client.run(_cpu_seconds)  # the workers' start-up (imports) is not the job's
        start = time.perf_counter()
        store = da.to_zarr(y, out, overwrite=True, compute=False)
        future = client.compute(store)
        if progress:
            distributed.progress(future)
        future.result()
        seconds = time.perf_counter() - start
        rss = client.run(_peak_rss)
        cpu = client.run(_cpu_seconds)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    pixels = int(x.shape[0] * x.shape[2] * x.shape[3])
    report = {"model": model, "input_shape": list(src.shape), "output_shape": list(y.shape), "chunk": chunk,
              "workers": len(rss), "seconds": seconds, "mpixel_per_s": pixels / seconds / 1e6,
              "worker_cpu_seconds": sum(cpu[w] - cpu0.get(w, 0.0) for w in cpu),
              "peak_rss_mib": sorted(v / 2**20 for v in rss.values()),
              "halo": [list(h) for h in t.halo], "alignment": t.alignment,
              "tile_shapes": [list(s) for s in t.tile_shapes],
              "task_peak_activation_mib": t.peak_bytes / 2**20, "halo_overhead": t.overhead}
    return report


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
    report = segment(args.model, args.input, args.output, workers=args.workers, chunk=args.chunk,
                     scheduler=args.scheduler, argmax=not args.raw, layout=args.layout, scale=args.scale,
                     memory_limit=args.memory_limit, num_threads=args.fp_threads, progress=not args.no_progress,
                     component=args.component)
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
    p.add_argument("--chunk", type=int, default=1024, help="output chunk size in pixels (the halo comes on top)")
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
    p.add_argument("--json", default=None, help="write the run's figures (time, RSS, halo) to this file")
    p.set_defaults(func=cmd_segment)
