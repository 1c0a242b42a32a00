"""Scaling of ``fastpoint segment`` (fastpoint.dask.run on a LocalCluster) against the in-memory network.

For each image size (default 2048, 4096, 8192; add 16384 on a quiet machine) a synthetic RGB zarr image
(H, W, 3) uint8 is written, segmented by ``fastpoint.network.segment.segment`` on a LocalCluster of
``--workers`` processes x 1 thread (``--memory-limit`` each) and timed; the in-memory network on a
2048^2 image at 1 thread is the per-core reference. Prints a table and writes the figures to
bench/results/dask_scaling-<UTC time>.json. ``--exact`` first checks fastpoint.dask.run against the
in-memory result on a 2048^2 image with chunk sizes that are multiples neither of each other nor of
the strides.

    python tools/dask_scaling.py --export /tmp/basicunet_free.onnx        # MONAI BasicUNet, free H and W
    nice -n 10 python tools/dask_scaling.py --model /tmp/basicunet_free.onnx --sizes 2048,4096,8192 --exact
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def export_free(path: str, size: int = 256) -> str:
    """tools/export_models.py's BasicUNet (same seed and BatchNorm statistics), with free N, H and W."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from export_models import build

    model = build("basicunet")
    x = torch.randn(1, 3, size, size)
    axes = {0: "N", 2: "H", 3: "W"}
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": axes, "output": axes}, dynamo=False, do_constant_folding=False)
    return path


def write_result(out_dir: str, prefix: str, result: dict) -> str:
    """The figures as bench/results/<prefix>-<UTC time>.json; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path


def synthetic_zarr(path: str, size: int, chunk: int = 1024) -> None:
    """A smooth random RGB image (H, W, 3) uint8, written chunk by chunk (never whole in memory)."""
    import dask.array as da

    rng = da.random.default_rng(size)
    img = rng.integers(0, 256, (size, size, 3), chunks=(chunk, chunk, 3), dtype=np.uint8)
    da.to_zarr(img, path, overwrite=True)


def in_memory_rate(model: str, size: int, repeat: int) -> dict:
    """Mpixel/s of the whole network on one size x size image at 1 thread (median of ``repeat`` runs)."""
    import fastpoint as fp

    net = fp.load_onnx(model)
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    fp.set_num_threads(1)
    net(x)  # plan, pack, fault in the arena
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        net(x)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    sec, cpu_sec = float(np.median(times)), float(np.median(cpu))
    return {"size": size, "seconds": sec, "cpu_seconds": cpu_sec, "mpixel_per_s": size * size / sec / 1e6,
            "mpixel_per_cpu_s": size * size / cpu_sec / 1e6}


def ab_in_process(model: str, size: int, chunk: int, rounds: int) -> dict:
    """The whole image against fastpoint.dask.run on one thread (``scheduler="sync"``), alternating in this
    process: the cost of the halo and of dask's tasks without a cluster. Medians of wall and CPU seconds."""
    import dask.array as da

    import fastpoint as fp
    import fastpoint.dask as fpd

    net = fp.load_onnx(model)
    x = np.random.default_rng(2).random((1, 3, size, size), dtype=np.float32)
    fp.set_num_threads(1)
    y = fpd.run(net, da.from_array(x, chunks=(1, 3, chunk, chunk)))
    runs = {"whole": (lambda: net(x)), "tiled": (lambda: y.compute(scheduler="sync"))}
    for f in runs.values():
        f()  # plans, packing, arenas
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, f in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            times[k].append((time.perf_counter() - t0, time.process_time() - c0))
    med = {k: (float(np.median([t for t, _ in v])), float(np.median([c for _, c in v]))) for k, v in times.items()}
    return {"size": size, "chunk": chunk, "rounds": rounds, "whole_s": med["whole"][0], "whole_cpu_s": med["whole"][1],
            "tiled_s": med["tiled"][0], "tiled_cpu_s": med["tiled"][1],
            "tiled_over_whole_cpu": med["tiled"][1] / med["whole"][1]}


def check_exact(model: str, size: int, chunks=(600, 700)) -> dict:
    import dask.array as da

    import fastpoint as fp
    import fastpoint.dask as fpd

    net = fp.load_onnx(model)
    x = np.random.default_rng(1).random((1, 3, size, size), dtype=np.float32)
    fp.set_num_threads(1)
    ref = net(x)
    y = fpd.run(net, da.from_array(x, chunks=(1, 3) + tuple(chunks))).compute(scheduler="threads", num_workers=2)
    diff = float(np.abs(y - ref).max())
    return {"size": size, "chunks": list(chunks), "max_abs_diff": diff, "max_abs_ref": float(np.abs(ref).max()),
            "bit_equal": bool(np.array_equal(y, ref))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/tmp/basicunet_free.onnx")
    p.add_argument("--export", default=None, help="export BasicUNet with free H and W to this path and exit")
    p.add_argument("--sizes", default="2048,4096,8192")
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--repeat", type=int, default=3, help="in-memory runs (median)")
    p.add_argument("--exact", action="store_true", help="check exactness on a 2048^2 image first")
    p.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                   help="only the in-process A/B: whole 2048^2 image against fastpoint.dask.run, 1 thread")
    p.add_argument("--workdir", default=None, help="where the zarr images go (default: a temporary directory)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "bench", "results"))
    args = p.parse_args(argv)
    if args.export:
        print(export_free(args.export))
        return 0
    from fastpoint.network.segment import segment

    result = {"model": args.model, "chunk": args.chunk, "workers": args.workers, "memory_limit": args.memory_limit,
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": []}
    if args.ab:
        result["ab"] = ab_in_process(args.model, 2048, args.chunk, args.ab)
        print(json.dumps(result["ab"]))
        print(f"written {write_result(args.out, 'dask_ab', result)}")
        return 0
    if args.exact:
        result["exact"] = check_exact(args.model, 2048)
        print(f"exactness 2048^2, chunks {result['exact']['chunks']}: max |diff| {result['exact']['max_abs_diff']:.3g}"
              f" (max |ref| {result['exact']['max_abs_ref']:.3g}), bit equal: {result['exact']['bit_equal']}")
    result["in_memory"] = in_memory_rate(args.model, 2048, args.repeat)
    base = result["in_memory"]["mpixel_per_s"]
    mem = result["in_memory"]
    print(f"in memory 2048^2, 1 thread: {mem['seconds']:.2f} s ({mem['cpu_seconds']:.2f} CPU s), {base:.3f} Mpixel/s")
    work = args.workdir or tempfile.mkdtemp(prefix="fp-dask-scaling-")
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            src, dst = os.path.join(work, f"img{size}.zarr"), os.path.join(work, f"out{size}.zarr")
            synthetic_zarr(src, size)
            r = segment(args.model, src, dst, workers=args.workers, chunk=args.chunk, memory_limit=args.memory_limit,
                        progress=False)
            r["size"] = size
            r["per_core_vs_in_memory"] = r["mpixel_per_s"] / args.workers / base
            r["per_cpu_second_vs_in_memory"] = (size * size / 1e6 / r["worker_cpu_seconds"]
                                                / result["in_memory"]["mpixel_per_cpu_s"])
            result["runs"].append(r)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.rmtree(src, ignore_errors=True)
            print(f"{size:6d}^2: {r['seconds']:8.1f} s  {r['mpixel_per_s']:6.3f} Mpixel/s  per core "
                  f"{r['per_core_vs_in_memory']:.2f}x in-memory (per CPU s {r['per_cpu_second_vs_in_memory']:.2f}x)  "
                  f"peak RSS/worker {max(r['peak_rss_mib']):.0f} MiB  halo {r['halo']}  "
                  f"recompute {100 * r['halo_overhead']:.0f}%", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| size | seconds | Mpixel/s | s per Mpixel | per core vs in-memory | per CPU s vs in-memory | "
          "peak RSS/worker MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in result["runs"]:
        print(f"| {r['size']} | {r['seconds']:.1f} | {r['mpixel_per_s']:.3f} | {1 / r['mpixel_per_s']:.2f} | "
              f"{r['per_core_vs_in_memory']:.2f} | {r['per_cpu_second_vs_in_memory']:.2f} | "
              f"{max(r['peak_rss_mib']):.0f} |")
    print(f"\nwritten {write_result(args.out, 'dask_scaling', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
