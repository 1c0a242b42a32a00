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
from typing import Optional, Tuple

import numpy as np

#: per axis of (N, C, H, W): the stored image's axis it is (None: a new axis of length 1)
_ORDER = {"NCHW": (0, 1, 2, 3), "CHW": (None, 0, 1, 2), "HWC": (None, 2, 0, 1), "HW": (None, None, 0, 1)}


def _layout_of(shape, channels: Optional[int], layout: str) -> str:
    if layout == "auto":
        ndim = len(shape)
        if ndim == 4:
            return "NCHW"
        if ndim == 3 and channels is not None and shape[0] == channels and shape[2] != channels:
            return "CHW"
        if ndim == 3:
            return "HWC"
        if ndim == 2:
            return "HW"
        raise ValueError(f"input of shape {tuple(shape)}: pass --layout (NCHW, CHW, HWC or HW)")
    if layout not in _ORDER:
        raise ValueError(f"--layout must be NCHW, CHW, HWC or HW, got {layout!r}")
    if len(shape) != 4 - _ORDER[layout].count(None):
        raise ValueError(f"input of shape {tuple(shape)} is not {layout}")
    return layout


class ImageSource:
    """A stored image (a zarr array in NCHW, CHW, HWC or HW) seen as an (N, C, H, W) array of the network's
    dtype, read region by region: ``source[n0:n1, :, h0:h1, w0:w1]`` reads only that region of the store
    and converts it (integers times ``scale``, default 1/255), the arithmetic the whole image would get.
    Picklable (a zarr array pickles as its store and path), so a task can read its own tile."""

    def __init__(self, array, layout: str, dtype, scale: Optional[float] = None) -> None:
        self.array, self.layout = array, layout
        self.dtype = np.dtype(dtype)
        src = np.dtype(array.dtype)
        self.factor = (1 / 255 if scale is None else scale) if src.kind in "iu" else scale
        order = _ORDER[layout]
        self.shape = tuple(1 if a is None else int(array.shape[a]) for a in order)
        self.ndim = 4

    def read_bytes(self, shape) -> int:
        """At most what reading a region of ``shape`` (N, C, H, W) holds beside the converted tile: the
        region in the stored dtype and the stored chunks it overlaps, decoded (zarr decodes them at once)."""
        order = _ORDER[self.layout]
        item = np.dtype(self.array.dtype).itemsize
        chunks = getattr(self.array, "chunks", None) or self.array.shape
        count, chunk = 1, item
        for a, c in enumerate(chunks):
            chunk *= int(c)
            axis = order.index(a)
            if axis >= 2:  # H or W: a region of length L overlaps at most ceil((L - 1) / c) + 1 chunks
                count *= min(-(-int(self.array.shape[a]) // int(c)), -(-(int(shape[axis]) - 1) // int(c)) + 1)
        return int(np.prod(shape)) * item + count * chunk

    def __getitem__(self, index) -> np.ndarray:
        index = tuple(index) + (slice(None),) * (4 - len(tuple(index)))
        order = _ORDER[self.layout]
        src = [slice(None)] * len(self.array.shape)
        for i, a in enumerate(order):
            if a is not None:
                src[a] = index[i]
            elif index[i] != slice(None) and range(self.shape[i])[index[i]] != range(1):
                raise IndexError(f"ImageSource of layout {self.layout}: axis {i} has one element, got {index[i]}")
        block = np.asarray(self.array[tuple(src)]).transpose([a for a in order if a is not None])
        for i, a in enumerate(order):
            if a is None:
                block = np.expand_dims(block, i)
        x = block.astype(self.dtype, order="C")  # (a transposed HWC block: C order, the tile's)
        if self.factor is not None:
            np.multiply(x, self.dtype.type(self.factor), out=x)
        return x


def class_map(y: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """``np.argmax(y, axis=1).astype(dtype)`` for an (N, C, H, W) block, in C passes over the planes:
    the first maximum wins ties, and the first NaN wins over any number (as ``np.argmax``). NumPy's own
    argmax over a non-last axis moves the axis to the end and reduces rows of C values one by one, and
    dask's ``argmax`` adds its chunk/aggregate steps: ~56 ms of thread CPU per 2 x 1024^2 block (BasicUNet's
    chunk) against ~4 ms here, on every task of ``fastpoint segment``. (A masked store, ``idx[take] = c``,
    alone took 5.8 ms: the update is arithmetic instead, ``idx += take * (c - idx)`` in ``dtype``'s
    wrapping integers, which is ``c`` where taken and ``idx`` elsewhere.)"""
    dtype = np.dtype(dtype)
    idx = np.zeros(y.shape[:1] + y.shape[2:], dtype=dtype)
    best = y[:, 0]  # a view until a third plane needs the running maximum (fresh pages cost here: ~0.5 ms/MiB)
    nan = np.isnan(best) if y.dtype.kind in "fc" else None
    step, take, vn = np.empty_like(idx), np.empty(idx.shape, bool), np.empty(idx.shape, bool)
    for c in range(1, y.shape[1]):
        v = y[:, c]
        np.greater(v, best, out=take)
        if nan is not None:
            np.isnan(v, out=vn)
            take |= vn > nan  # v is NaN and best is not
            nan |= vn
        np.subtract(dtype.type(c), idx, out=step)
        np.multiply(step, take, out=step, casting="unsafe")
        idx += step
        if c + 1 < y.shape[1]:  # NaN stays NaN: no later plane takes over from it
            best = np.maximum(best, v, out=None if c == 1 else best)
    return idx


#: dask settings of the LocalCluster ``fastpoint segment`` starts: no statistical profiler (it samples the
#: task thread's stack every 10 ms from the worker's event loop for the dashboard, which this cluster does
#: not start) and the event loop's health tick at 200 ms instead of 20 (it only warns when the loop was
#: blocked for seconds); measured on the loaded box as the worker's main thread 3.8 % -> 2.2 % of a core
#: per wall second while tasks run. The memory monitor (pause, spill, the nanny's restart) is untouched.
CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "200ms"}

#: the share of a worker's memory limit kept free below dask's pause threshold, for what the model misses
SAFETY = 0.1
#: a chunk whose predicted work is within this share of the least is as good: the smallest such one wins
#: (its tiles' feature maps stay closer to the core: on BasicUNet a cropped 1248^2 tile ran 1 % faster per
#: output pixel than a 1760^2 one whose work is 4 % less, and uses half the memory)
WORK_TOLERANCE = 0.05
#: a chunk taller than wide (``k`` times the chosen square's height, rows as wide) wins when its predicted
#: work is at least this share below the best so far. Its rows are as long as the square tile's, so each
#: layer's rows stay as close to the core (the per-flop rate falls with the row width, not with the
#: height: on BasicUNet, interior cropped tasks, thread CPU, alternating, loaded box, per output pixel at
#: chunk 1024 x 1024 / 2048 x 1024 / 1024 x 2048: 1.142 / 1.118 / 1.244 us, work 1.00 / 0.967 / 0.967), and
#: the halo rows are recomputed once per ``k`` square chunks instead of once per chunk
TALL_GAIN = 0.01
#: a taller chunk is taken only while every task slot still gets at least this many tasks: a worker's
#: first task pays for its arena's fresh pages (about 1 GiB for BasicUNet's 2048 x 1024 tiles), and with
#: one task a slot nothing amortises it (2-vCPU Zen 5, BasicUNet 2048^2, 2 workers: 2048 x 1024 chunks,
#: one task each, 4.1 s against 2.6 s with four 1024^2 chunks; at 8192^2, 16 tasks a slot, 38.7 s vs 43.2)
TALL_TASKS_PER_SLOT = 2


def parse_chunk(chunk):
    """``--chunk``'s value: None / "auto" / "tune" as they are, an int (square), or (H, W) from a pair or
    an ``"HxW"`` string."""
    if chunk is None or chunk in ("auto", "tune"):
        return chunk
    if isinstance(chunk, str):
        parts = chunk.lower().split("x")
        if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"--chunk must be auto, tune, N or HxW (pixels), got {chunk!r}")
        chunk = [int(p) for p in parts]
        chunk = chunk[0] if len(chunk) == 1 else tuple(chunk)
    if isinstance(chunk, (int, np.integer)):
        return int(chunk)
    h, w = (int(v) for v in chunk)
    return (h, w)


def _grid(c: int, n: int) -> Tuple[int, ...]:
    return tuple(min(c, n - i) for i in range(0, n, c))


def choose_chunk(net, shape, dtype, memory_limit: int, worker_base: int, mem, tasks_per_worker: int = 1,
                 tune: bool = False, crop: bool = False, read_bytes=None, workers: int = 1) -> dict:
    """The output chunk with the highest predicted throughput whose tasks fit a worker's memory: first the
    square chunk, then taller ones as wide (``chunks_hw``, (H, W)).

    Memory: a worker runs ``tasks_per_worker`` tasks at once (its threads), each holding one tile's plan
    arena (exact, from the plan) and what :func:`fastpoint.network.tiled.task_memory` measured beside it
    (resident bytes, in fresh processes) and, given ``read_bytes`` (tile shape -> bytes), what reading
    the tile from its store takes (:meth:`ImageSource.read_bytes`), on top of ``worker_base`` (the
    worker's resident memory with what a task imports, measured on the workers). Tasks read their
    tiles from the store, so a worker
    holds no input blocks and the need does not grow with the image. It must stay ``SAFETY`` of the
    limit below dask's pause threshold (``distributed.worker.memory.pause``, 80 % by default): a paused
    worker keeps its arena and never resumes. Throughput: the output pixels per unit of arithmetic,
    :func:`fastpoint.network.tiled.tile_work` (the tiles' recomputed halo, ragged ends included; with
    ``crop``, the cropped plans' work). Candidates are multiples of the tile alignment (at least 128
    px); the smallest fit whose work is within ``WORK_TOLERANCE`` of the least fitting work wins (``chunk``).
    Then chunks ``k`` times as tall as wide (k = 2, 3, ...; rows as wide as the square's) while they fit,
    leave every one of ``workers * tasks_per_worker`` task slots ``TALL_TASKS_PER_SLOT`` tasks, and cut the
    predicted work by ``TALL_GAIN`` against the best so far (``chunks_hw``: the (H, W) chunk to run).

    ``tune``: a network's rate per pixel may fall as its feature maps outgrow the caches, so a smaller
    tile can win despite more recomputation. Then the fitting multiples of 256 (and the predicted best)
    are timed here: a middle tile's task (cropped as ``crop`` says), one fresh Network per tile shape at
    1 thread (thread CPU seconds of a second call, robust to other processes); the chunk with the most
    output pixels per second wins."""
    import dask

    from .tiled import tile_work, tiling

    pause = dask.config.get("distributed.worker.memory.pause", 0.8) or 1.0
    budget = (float(pause) - SAFETY) * memory_limit if memory_limit else float("inf")
    n, h, w = shape[0], shape[2], shape[3]
    p = tiling(net, shape, ((1,) * n, (shape[1],), (h,), (w,)), dtype).alignment
    step = p * -(-128 // p)
    best = None
    fits = []
    for c in range(step, max(h, w) + step, step):
        chunks = ((1,) * n, (shape[1],), _grid(c, h), _grid(c, w))
        t = tiling(net, shape, chunks, dtype)
        task = max(mem.bytes(net, s, dtype) + (read_bytes(s) if read_bytes else 0) for s in t.tile_shapes)
        need = worker_base + tasks_per_worker * task
        if need > budget:
            if fits and c > 2 * fits[-1]["chunk"]:
                break  # tiles only grow from here
            continue
        work = tile_work(net, t, shape, chunks, dtype, crop)
        entry = {"chunk": c, "halo_overhead": t.overhead, "work": work, "task_bytes": task, "worker_bytes": need,
                 "budget_bytes": budget, "tiling": t}
        fits.append(entry)
        if len(t.tiles[0]) == 1 and len(t.tiles[1]) == 1:
            break  # one tile holds the image: larger chunks change nothing
    if fits:
        least = min(e["work"] for e in fits)
        best = next(e for e in fits if e["work"] <= least * (1 + WORK_TOLERANCE))
    if best is not None and tune:
        timed = [e for e in fits if e["chunk"] % 256 == 0 or e is best]
        for e in timed:
            e["mpixel_per_cpu_s"] = _task_rate(net, e["tiling"], dtype, crop)
        best = dict(max(timed, key=lambda e: e["mpixel_per_cpu_s"]))
        best["timed"] = [{k: e[k] for k in ("chunk", "halo_overhead", "work", "mpixel_per_cpu_s")} for e in timed]
    if best is not None:
        best = _taller(net, shape, dtype, dict(best), budget, worker_base, mem, tasks_per_worker, crop, read_bytes,
                       workers)
        best = {k: v for k, v in best.items() if k != "tiling"}
    if best is None:
        raise MemoryError(f"no chunk fits: the smallest tile ({step} px + halo) needs more than {budget / 2**20:.0f} "
                          f"MiB per worker (memory_limit {memory_limit / 2**20:.0f} MiB, worker base "
                          f"{worker_base / 2**20:.0f} MiB); raise --memory-limit")
    return best


def _taller(net, shape, dtype, best: dict, budget: float, worker_base: int, mem, tasks_per_worker: int,
            crop: bool, read_bytes, workers: int) -> dict:
    """``best`` (a square chunk's entry) with ``chunks_hw``: the tallest chunk of its width that fits the
    budget, gives every task slot ``TALL_TASKS_PER_SLOT`` tasks and cuts the work by ``TALL_GAIN`` per step
    (:func:`choose_chunk`)."""
    from .tiled import tile_work, tiling

    n, h, w = shape[0], shape[2], shape[3]
    c = int(best["chunk"])
    best["chunks_hw"] = (c, c)
    slots = max(1, int(workers)) * max(1, int(tasks_per_worker))
    for k in range(2, -(-h // c) + 1):
        ch = min(k * c, h)
        chunks = ((1,) * n, (shape[1],), _grid(ch, h), _grid(c, w))
        if n * len(chunks[2]) * len(chunks[3]) < TALL_TASKS_PER_SLOT * slots:
            break  # a worker's arena would be made for too few tasks (or it would have nothing to do)
        t = tiling(net, shape, chunks, dtype)
        task = max(mem.bytes(net, s, dtype) + (read_bytes(s) if read_bytes else 0) for s in t.tile_shapes)
        need = worker_base + tasks_per_worker * task
        if need > budget:
            break  # tiles only grow from here
        work = tile_work(net, t, shape, chunks, dtype, crop)
        if work > best["work"] * (1 - TALL_GAIN):
            continue  # (a taller one may still gain: ragged ends change the work unevenly)
        best.update({"chunks_hw": (ch, c), "halo_overhead": t.overhead, "work": work, "task_bytes": task,
                     "worker_bytes": need, "tiling": t})
    return best


def _task_rate(net, t, dtype, crop: bool) -> float:
    """Output Mpixel per thread-CPU second of the task of a middle chunk of tiling ``t`` (its second call,
    a fresh Network, 1 thread)."""
    import copy

    from ..core.threads import thread_limit
    from .network import Network
    from .tiled import crop_plan

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
    runner = crop_plan(plan, fresh.outputs[0].name, tuple(box), t.alignment) if crop else None
    call = (lambda: runner(x)) if runner is not None else (lambda: fresh(x))
    with thread_limit(1):
        call()
        c0 = time.thread_time()
        call()
        sec = time.thread_time() - c0
    return t.out_chunks[0][bi] * t.out_chunks[1][bj] / max(sec, 1e-9) / 1e6


def segment(model: str, inp: str, out: str, *, workers: int = 2, chunk=None, scheduler: Optional[str] = None,
            argmax: bool = True, layout: str = "auto", scale: Optional[float] = None, memory_limit: str = "2GiB",
            num_threads: int = 1, progress: bool = True, component: Optional[str] = None, crop: bool = True,
            predict_memory: bool = False) -> dict:
    """The command's work, callable from Python (examples/segment_large_image.py, tools/dask_scaling.py).

    ``chunk`` None (or "auto"): :func:`choose_chunk` picks it from the workers' memory limit; "tune": the
    same, timing the candidate tiles here first; an int (square) or (H, W) (or "HxW"): that chunk."""
    import dask
    import dask.array as da
    import distributed
    import zarr

    import fastpoint as fp

    from .tiled import _source_chunks, run, task_arenas, task_memory, task_stats, tile_work, tiling

    net = fp.load_onnx(model)
    dtype = np.dtype(net.inputs[0].dtype or np.float32)
    channels = net.inputs[0].shape[1] if net.inputs[0].shape and isinstance(net.inputs[0].shape[1], int) else None
    store = zarr.open_array(inp, mode="r", path=component) if component else zarr.open_array(inp, mode="r")
    layout = _layout_of(store.shape, channels, layout)
    x = ImageSource(store, layout, dtype, scale)  # each task reads its own tile (halo included) from the store
    if scheduler:
        client = distributed.Client(scheduler)
        cluster = None
    else:
        with dask.config.set(CLUSTER_CONFIG):  # the nannies hand the config to their workers
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                                               dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        choice = predicted = None
        chunk = parse_chunk(chunk)
        auto = chunk in (None, "auto", "tune")
        if auto or predict_memory:
            infos = client.scheduler_info()["workers"].values()
            limit = min((int(i.get("memory_limit") or 0) for i in infos), default=0)
            base = max(client.run(_worker_base, x).values())
            slots = max((int(i.get("nthreads") or 1) for i in infos), default=1)
            mem = task_memory(net, dtype, channels, crop=crop)
        if auto:
            choice = choose_chunk(net, x.shape, dtype, limit, base, mem, slots, tune=chunk == "tune", crop=crop,
                                  read_bytes=x.read_bytes, workers=len(infos))
            chunk = choice["chunks_hw"]
        chunk = chunk if isinstance(chunk, int) else tuple(chunk)
        chunks = _source_chunks(x, chunk)
        t = tiling(net, x.shape, chunks, dtype)
        work = tile_work(net, t, x.shape, chunks, dtype, crop)
        if auto or predict_memory:
            arenas = task_arenas(net, t, x.shape, chunks, dtype, crop)
            predicted = base + slots * max(mem.bytes(net, s, dtype, arenas.get(tuple(s))) + x.read_bytes(s)
                                           for s in t.tile_shapes)
        y = run(net, x, num_threads=num_threads, crop=crop, chunks=chunk)
        if argmax:
            cls = np.dtype(np.uint8 if y.shape[1] <= 256 else np.int32)
            y = y.map_blocks(class_map, cls, drop_axis=1, dtype=cls)
        if layout != "NCHW":
            y = y[0]
        cpu0 = client.run(_cpu_seconds)  # the workers' start-up (imports) is not the job's
        client.run(task_stats, True)
        start = time.perf_counter()
        job = da.to_zarr(y, out, overwrite=True, compute=False)
        future = client.compute(job)
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
    report = {"model": model, "input_shape": list(store.shape), "output_shape": list(y.shape),
              "chunk": chunk if isinstance(chunk, int) else list(chunk),
              "crop": crop, "chunk_choice": choice, "workers": len(rss), "seconds": seconds,
              "mpixel_per_s": pixels / seconds / 1e6,
              "worker_cpu_seconds": sum(cpu[w] - cpu0.get(w, 0.0) for w in cpu),
              "peak_rss_mib": sorted(v / 2**20 for v in rss.values()),
              "halo": [list(h) for h in t.halo], "alignment": t.alignment,
              "tile_shapes": [list(s) for s in t.tile_shapes],
              "task_peak_activation_mib": t.peak_bytes / 2**20, "halo_overhead": t.overhead, "work": work,
              "predicted_worker_mib": predicted / 2**20 if predicted else None,
              "tasks": {k: sum(v[k] for v in stats.values()) for k in next(iter(stats.values()), {})}}
    return report


def _worker_base(source=None) -> int:
    """A worker's resident memory with what a tile task imports loaded and, given the ``source``, one
    small region read from it (zarr's decoding threads, event loop and buffers come up with the first
    read and stay), before any tile task ran."""
    import zarr  # noqa: F401

    import fastpoint  # noqa: F401

    from .tiled import _status_bytes, run  # noqa: F401

    if source is not None:
        shape = source.shape
        source[0:1, :, 0:min(256, shape[2]), 0:min(256, shape[3])]
    return _status_bytes("VmRSS")


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
    chunk = parse_chunk(args.chunk)
    report = segment(args.model, args.input, args.output, workers=args.workers, chunk=chunk,
                     scheduler=args.scheduler, argmax=not args.raw, layout=args.layout, scale=args.scale,
                     memory_limit=args.memory_limit, num_threads=args.fp_threads, progress=not args.no_progress,
                     component=args.component, crop=args.crop)
    print(f"\n{report['output_shape']} written to {args.output} in {report['seconds']:.1f} s "
          f"({report['mpixel_per_s']:.2f} Mpixel/s); halo {report['halo']}, tile starts every "
          f"{report['alignment']} px, {100 * (report['work'] - 1):.0f}% recomputed, "
          f"{report['task_peak_activation_mib']:.0f} MiB activations per task")
    pred = report["predicted_worker_mib"]
    print("peak RSS per worker (MiB): " + ", ".join(f"{v:.0f}" for v in report["peak_rss_mib"])
          + (f" (predicted {pred:.0f})" if pred else ""))
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
                   help="output chunk size in pixels, N or HxW (the halo comes on top); 'auto' (default): the "
                        "least recomputation that fits --memory-limit (taller than wide where that recomputes "
                        "less); 'tune': the fitting chunk whose tiles run fastest, timed first")
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
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=True,
                   help="each step computes only what the chunk needs of it (exact; default on; --no-crop: "
                        "every step on the whole tile)")
    p.add_argument("--json", default=None, help="write the run's figures (time, RSS, halo) to this file")
    p.set_defaults(func=cmd_segment)
