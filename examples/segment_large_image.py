"""Segment an image larger than memory with a U-Net-shaped FCN on a dask.distributed LocalCluster.

The network (fastpoint kernels only): per level two 3x3 convolutions + ReLU, 2x2 max pooling down,
upsampling (nearest or bilinear) up, concatenation with the skip connection, two 3x3 convolutions +
ReLU, and a 1x1 classifier head; the class map is the per-pixel argmax of the head's logits.

Quick start (small synthetic image, random weights)::

    pip install 'fastpoint[dask]'
    python examples/segment_large_image.py --create-synthetic 4096 --input /tmp/img.zarr \\
        --weights /tmp/unet.npz --init-weights --output /tmp/classes.zarr --n-workers 2

How it is chunked (and why it is exact): the whole network runs on each chunk of the image, extended
by a halo on every side that is not the image border (``dask.array.overlap.overlap`` with
``boundary="none"``); the class map of the chunk's own pixels is kept. A pixel's class depends on input
pixels up to the network's receptive-field radius away, and zero padding at the extended block's edge
spoils features only up to that distance, so with a halo at least that radius (computed layer by layer
in :func:`halo`) every kept pixel sees exactly the values it would see in memory. Chunk sizes and the
halo are multiples of ``2**levels`` so the pooling windows of every block line up with the in-memory
ones. The alternative, one exact dask operation per layer (:func:`forward` with ``fastpoint.dask``
ops, which the tests also check), moves every intermediate feature map through the scheduler (8-32
channels x 268 Mpixel x 4 bytes per layer for a 16k image), while the halo costs only
``((chunk + 2 * halo) / chunk)**2 - 1`` extra arithmetic (about 10% for 1024-pixel chunks, halo 24),
so the fused per-chunk network is the one this script runs.

Weights are read from a ``.npz`` whose keys are those of the PyTorch module in :func:`torch_unet`.
To use a trained PyTorch model, build that module (or any module with the same parameter names and
shapes), train it, and export::

    import numpy as np
    np.savez("unet.npz", **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})

``--init-weights`` writes random (He-initialized) weights of the given ``--levels/--width/--classes``
to ``--weights`` instead; otherwise those are read from the file's shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastpoint as fp  # noqa: E402
from fastpoint.core.threads import thread_limit  # noqa: E402

# --------------------------------------------------------------------------------------------------
# the network


def param_shapes(levels: int, width: int, classes: int, in_channels: int = 3) -> Dict[str, Tuple[int, ...]]:
    """Parameter names and shapes (the ``state_dict`` of :func:`torch_unet`)."""
    shapes: Dict[str, Tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int = 3) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    for level in range(levels + 1):  # encoder levels; the last one is the bottleneck
        cin = in_channels if level == 0 else width << (level - 1)
        conv(f"enc{level}.0", cin, width << level)
        conv(f"enc{level}.2", width << level, width << level)
    for level in range(levels - 1, -1, -1):
        conv(f"dec{level}.0", (width << (level + 1)) + (width << level), width << level)
        conv(f"dec{level}.2", width << level, width << level)
    conv("head", width, classes, k=1)
    return shapes


def random_params(levels: int, width: int, classes: int, seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(levels, width, classes).items():
        if name.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            params[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            params[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return params


def load_params(path: str) -> Tuple[Dict[str, np.ndarray], int, int, int]:
    """Read a ``.npz`` of parameters; return them with the (levels, width, classes) their shapes imply."""
    with np.load(path) as f:
        params = {k: np.asarray(f[k], dtype=np.float32) for k in f.files}
    levels = sum(1 for k in params if k.startswith("enc") and k.endswith(".0.weight")) - 1
    if levels < 0 or "head.weight" not in params:
        raise ValueError(f"{path} does not hold U-Net parameters (keys: {sorted(params)[:6]}...)")
    width = params["enc0.0.weight"].shape[0]
    classes = params["head.weight"].shape[0]
    expected = param_shapes(levels, width, classes, params["enc0.0.weight"].shape[1])
    for name, shape in expected.items():
        if name not in params or params[name].shape != shape:
            got = params[name].shape if name in params else "missing"
            raise ValueError(f"{path}: parameter {name} must have shape {shape}, got {got}")
    return params, levels, width, classes


class UNet:
    """The network, with every convolution a prepacked ``fp.Conv2d`` (packed on first use, per process)."""

    def __init__(self, params: Dict[str, np.ndarray], levels: int, upsample_mode: str = "nearest",
                 dtype=np.float32, scale: float = 1 / 255) -> None:
        self.params = params
        self.levels = levels
        self.upsample_mode = upsample_mode
        self.dtype = np.dtype(dtype)  # float64 with integer weights makes every sum exact (tests)
        self.scale = scale  # uint8 pixel -> network input
        self.layers = {name[:-len(".weight")]: fp.Conv2d(params[name], params[name[:-len("weight")] + "bias"],
                                                         padding=0 if name.startswith("head") else 1,
                                                         activation=None if name.startswith("head") else "relu")
                       for name in params if name.endswith(".weight")}


class InMemoryOps:
    """The operations :func:`forward` needs, on NumPy arrays."""

    def __init__(self, net: UNet) -> None:
        self.net = net

    def conv(self, name: str, x):
        return self.net.layers[name](x)

    @staticmethod
    def max_pool2d(x):
        return fp.max_pool2d(x, 2)

    def upsample(self, x):
        return fp.upsample(x, 2, self.net.upsample_mode)

    @staticmethod
    def concat(parts):
        return np.concatenate(parts, axis=1)


class DaskOps:
    """The same operations as exact per-layer ``fastpoint.dask`` operations (for comparison and tests)."""

    def __init__(self, net: UNet) -> None:
        import fastpoint.dask as fpd

        self.net, self.fpd = net, fpd

    def conv(self, name: str, x):
        p = self.net.params
        head = name == "head"
        return self.fpd.conv2d(x, p[f"{name}.weight"], p[f"{name}.bias"], padding=0 if head else 1,
                               activation=None if head else "relu")

    def max_pool2d(self, x):
        return self.fpd.max_pool2d(x, 2)

    def upsample(self, x):
        return self.fpd.upsample(x, 2, self.net.upsample_mode)

    @staticmethod
    def concat(parts):
        import dask.array as da

        return da.concatenate(parts, axis=1)


def forward(net: UNet, x, ops=None):
    """Logits ``(N, classes, H, W)`` of an NCHW float32 batch; H and W must be multiples of ``2**levels``."""
    ops = ops or InMemoryOps(net)
    skips = []
    h = x
    for level in range(net.levels):
        h = ops.conv(f"enc{level}.2", ops.conv(f"enc{level}.0", h))
        skips.append(h)
        h = ops.max_pool2d(h)
    h = ops.conv(f"enc{net.levels}.2", ops.conv(f"enc{net.levels}.0", h))
    for level in range(net.levels - 1, -1, -1):
        h = ops.concat([ops.upsample(h), skips[level]])
        h = ops.conv(f"dec{level}.2", ops.conv(f"dec{level}.0", h))
    return ops.conv("head", h)


def halo(levels: int, upsample_mode: str = "nearest") -> int:
    """Receptive-field radius of the network in input pixels, rounded up to a multiple of ``2**levels``.

    ``e`` tracks how far (in input pixels) wrong values reach into a block from an edge where the
    block's zero padding replaced real neighbours: a 3x3 convolution at scale ``f`` (one feature pixel
    per ``f`` input pixels) adds ``f``; pooling rounds up to whole pooled pixels; nearest upsampling
    keeps ``e`` and bilinear adds one coarse pixel; concatenation takes the larger of its inputs.
    """
    e, f, skips = 0, 1, []
    for _ in range(levels):
        e += 2 * f
        skips.append(e)
        e = -(-e // (2 * f)) * 2 * f
        f *= 2
    e += 2 * f
    for level in range(levels - 1, -1, -1):
        e += f if upsample_mode == "bilinear" else 0
        f //= 2
        e = max(e, skips[level]) + 2 * f
    step = 2 ** levels
    return -(-e // step) * step


def torch_unet(levels: int, width: int, classes: int, upsample_mode: str = "nearest", in_channels: int = 3):
    """The same network as a ``torch.nn.Module`` (its ``state_dict`` keys are this script's ``.npz`` keys)."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1),
                             nn.ReLU())

    class TorchUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for level in range(levels + 1):
                cin = in_channels if level == 0 else width << (level - 1)
                setattr(self, f"enc{level}", block(cin, width << level))
            for level in range(levels):
                setattr(self, f"dec{level}", block((width << (level + 1)) + (width << level), width << level))
            self.head = nn.Conv2d(width, classes, 1)

        def forward(self, x):
            skips = []
            for level in range(levels):
                x = getattr(self, f"enc{level}")(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = getattr(self, f"enc{levels}")(x)
            for level in range(levels - 1, -1, -1):
                x = nn.functional.interpolate(x, scale_factor=2, mode=upsample_mode)
                x = getattr(self, f"dec{level}")(torch.cat([x, skips[level]], dim=1))
            return self.head(x)

    return TorchUNet()


# --------------------------------------------------------------------------------------------------
# image <-> network, per block


def to_input(net: UNet, block: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB block as a (1, 3, H, W) batch of the network's dtype, scaled."""
    x = np.ascontiguousarray(block.transpose(2, 0, 1)[None], dtype=net.dtype)
    if net.scale != 1:
        x *= net.dtype.type(net.scale)
    return x


def classify(net: UNet, block: np.ndarray) -> np.ndarray:
    """The (H, W) uint8 class map of an (H, W, 3) uint8 image held in memory."""
    return np.argmax(forward(net, to_input(net, block))[0], axis=0).astype(np.uint8)


def _classify_block(block: np.ndarray, net: UNet, depth: int, nblocks: Tuple[int, int], threads: int,
                    block_id=None) -> np.ndarray:
    with thread_limit(threads):
        classes = classify(net, block)
    top = depth if block_id[0] > 0 else 0
    left = depth if block_id[1] > 0 else 0
    bottom = classes.shape[0] - (depth if block_id[0] < nblocks[0] - 1 else 0)
    right = classes.shape[1] - (depth if block_id[1] < nblocks[1] - 1 else 0)
    return classes[top:bottom, left:right]


def segment(image, net: UNet, threads: int = 1):
    """Lazy (H, W) uint8 class map of a dask (H, W, 3) uint8 image; exact (see the module doc)."""
    import dask
    import dask.array as da
    from dask.base import tokenize

    step = 2 ** net.levels
    bad = [c for axis in (0, 1) for c in image.chunks[axis][:-1] if c % step]
    if image.shape[0] % step or image.shape[1] % step or bad:
        raise ValueError(f"image height/width {image.shape[:2]} and chunk sizes must be multiples of "
                         f"2**levels = {step} (the U-Net's skip connections need it)")
    depth = halo(net.levels, net.upsample_mode)
    chunks = [list(image.chunks[0]), list(image.chunks[1])]
    for axis in chunks:  # a thin last chunk joins its neighbour (overlap needs chunks >= the halo)
        if len(axis) > 1 and axis[-1] < depth:
            axis[-2:] = [axis[-2] + axis[-1]]
    if min(min(chunks[0]), min(chunks[1])) < depth:
        raise ValueError(f"chunks {image.chunksize[:2]} must be at least the halo {depth}")
    image = image.rechunk((tuple(chunks[0]), tuple(chunks[1]), -1))
    nblocks = (image.numblocks[0], image.numblocks[1])
    # one graph key holds the network: the scheduler sends it to each worker once
    net_key = dask.delayed(net, name="unet-" + tokenize(net.params, net.levels, net.upsample_mode), pure=True,
                           traverse=False)
    extended = da.overlap.overlap(image, depth={0: depth, 1: depth, 2: 0}, boundary="none")
    return da.map_blocks(_classify_block, extended, net_key, depth, nblocks, threads, dtype=np.uint8,
                         chunks=image.chunks[:2], drop_axis=2, meta=np.empty((0, 0), np.uint8))


# --------------------------------------------------------------------------------------------------
# data


def _synthetic_block(block_info=None) -> np.ndarray:
    """Smooth colour blobs with a little noise, a function of the global position (deterministic)."""
    info = block_info[None]
    (r0, r1), (c0, c1), _ = info["array-location"]
    rows = np.arange(r0, r1, dtype=np.float32)[:, None]
    cols = np.arange(c0, c1, dtype=np.float32)[None, :]
    out = np.empty((r1 - r0, c1 - c0, 3), np.uint8)
    for ch, (fr, fc) in enumerate(((0.013, 0.007), (0.005, 0.011), (0.017, 0.003))):
        wave = np.sin(rows * fr + ch) * np.cos(cols * fc - ch) + 0.3 * np.sin((rows + cols) * 0.05 * (ch + 1))
        noise = np.random.default_rng(r0 * 7919 + c0 * 31 + ch).integers(0, 16, wave.shape)
        out[:, :, ch] = np.clip(wave * 90 + 128 + noise, 0, 255).astype(np.uint8)
    return out


def create_synthetic(path: str, size: int, chunk: int) -> None:
    import dask.array as da

    image = da.map_blocks(_synthetic_block, dtype=np.uint8, chunks=((chunk,) * (size // chunk) + (
        (size % chunk,) if size % chunk else ()),) * 2 + ((3,),), meta=np.empty((0, 0, 0), np.uint8))
    image.to_zarr(path, overwrite=True)


# --------------------------------------------------------------------------------------------------
# memory watching


class PeakMemory:
    """Polls the resident memory of the worker processes every ``interval`` seconds (psutil), and
    records the CPU seconds they used (a figure that other programs on a shared machine do not change)."""

    def __init__(self, pids: List[int], interval: float = 0.25) -> None:
        import psutil

        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, proc in self.procs.items():
                try:
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
                except Exception:  # noqa: BLE001 - a worker that just restarted
                    pass
            self._stop.wait(self.interval)

    def _cpu(self) -> float:
        total = 0.0
        for proc in self.procs.values():
            t = proc.cpu_times()
            total += t.user + t.system
        return total

    def __enter__(self) -> PeakMemory:
        self._cpu0 = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu_seconds = self._cpu() - self._cpu0
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="zarr array (H, W, 3) uint8 RGB")
    p.add_argument("--create-synthetic", type=int, metavar="SIZE",
                   help="first write a synthetic SIZE x SIZE RGB image to --input")
    p.add_argument("--weights", required=True, help=".npz of parameters (keys as in torch_unet's state_dict)")
    p.add_argument("--init-weights", action="store_true", help="write random weights to --weights first")
    p.add_argument("--levels", type=int, default=2, help="pooling levels (with --init-weights)")
    p.add_argument("--width", type=int, default=8, help="channels of the first level (with --init-weights)")
    p.add_argument("--classes", type=int, default=3, help="classes (with --init-weights)")
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest")
    p.add_argument("--output", required=True, help="zarr array to write the (H, W) uint8 class map to")
    p.add_argument("--chunk", type=int, default=1024, help="chunk size in pixels (a multiple of 2**levels)")
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--memory-limit", default="2GiB", help="per worker, e.g. 2GiB")
    p.add_argument("--no-processes", action="store_true", help="threads in this process instead of worker processes")
    p.add_argument("--fp-threads", type=int, default=1,
                   help="fastpoint threads per dask task (1 when dask runs a task per core)")
    p.add_argument("--in-memory", action="store_true",
                   help="also run the whole image in memory in this process, check equality and time it")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import dask.array as da
    from dask.distributed import Client, LocalCluster, progress

    if args.create_synthetic:
        t = time.perf_counter()
        create_synthetic(args.input, args.create_synthetic, args.chunk)
        print(f"wrote a synthetic {args.create_synthetic}^2 RGB image to {args.input} "
              f"in {time.perf_counter() - t:.1f} s", flush=True)
    if args.init_weights:
        np.savez(args.weights, **random_params(args.levels, args.width, args.classes))
    params, levels, width, classes = load_params(args.weights)
    net = UNet(params, levels, args.upsample)
    image = da.from_zarr(args.input)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SystemExit(f"--input must be an (H, W, 3) uint8 array, got {image.shape} {image.dtype}")
    image = image.rechunk((args.chunk, args.chunk, 3))
    h, w = image.shape[:2]
    print(f"image {h}x{w}, U-Net levels={levels} width={width} classes={classes} upsample={args.upsample}, "
          f"chunk {args.chunk}, halo {halo(levels, args.upsample)}", flush=True)

    summary = {"height": h, "width": w, "levels": levels, "net_width": width, "classes": classes,
               "chunk": args.chunk, "halo": halo(levels, args.upsample), "n_workers": args.n_workers,
               "threads_per_worker": args.threads_per_worker, "fp_threads": args.fp_threads}
    cluster = LocalCluster(n_workers=args.n_workers, threads_per_worker=args.threads_per_worker,
                           memory_limit=args.memory_limit, processes=not args.no_processes,
                           dashboard_address=":0")
    with cluster, Client(cluster) as client:
        pids = sorted(set(client.run(os.getpid).values()))
        classes_map = segment(image, net, threads=args.fp_threads)
        store = classes_map.to_zarr(args.output, overwrite=True, compute=False)
        with PeakMemory(pids) as mem:
            t = time.perf_counter()
            future = client.compute(store)
            if not args.no_progress:
                progress(future, notebook=False)
            future.result()
            seconds = time.perf_counter() - t
        summary.update(seconds=round(seconds, 3), megapixels_per_s=round(h * w / seconds / 1e6, 3),
                       peak_rss_per_worker_mib=[round(v / 2**20) for v in mem.peak.values()],
                       worker_cpu_s=round(mem.cpu_seconds, 1),
                       megapixels_per_cpu_s=round(h * w / mem.cpu_seconds / 1e6, 3) if not args.no_processes else None,
                       worker_processes=not args.no_processes)
    print(f"\nsegmented {h * w / 1e6:.1f} Mpixel in {seconds:.1f} s: {summary['megapixels_per_s']} Mpixel/s; "
          f"peak RSS per worker process (MiB): {summary['peak_rss_per_worker_mib']}", flush=True)

    if args.in_memory:
        img = image.compute()
        with thread_limit(os.cpu_count() or 1):
            classify(net, img[:64, :64])  # pack the weights outside the timing
            t, cpu = time.perf_counter(), time.process_time()
            expected = classify(net, img)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        equal = bool((da.from_zarr(args.output).compute() == expected).all())
        summary.update(in_memory_seconds=round(seconds, 3), in_memory_megapixels_per_s=round(h * w / seconds / 1e6, 3),
                       in_memory_cpu_s=round(cpu, 2), in_memory_megapixels_per_cpu_s=round(h * w / cpu / 1e6, 3),
                       equal_to_in_memory=equal)
        print(f"in memory ({os.cpu_count()} threads): {seconds:.2f} s, "
              f"{summary['in_memory_megapixels_per_s']} Mpixel/s; dask result equal: {equal}", flush=True)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
