"""The dask issue's scaling measurement: ``fastpoint segment`` on a LocalCluster against the in-memory network.

One command makes every figure of the target ("a 16384^2 RGB zarr image through a 2-worker LocalCluster,
1 thread each, memory_limit 2 GiB: peak RSS per worker < 2 GiB, throughput per core >= 0.8x the in-memory
network's on a 2048^2 image, halo recompute included, time linear in pixels, 2k/4k/8k/16k measured"):

1. ``--exact``: fastpoint.dask.run against the in-memory result on a 2048^2 image with 600 x 700 chunks
   (multiples neither of each other nor of the strides);
2. the in-memory network on a 2048^2 image at 1 thread (median of ``--repeat`` runs), before the cluster
   runs and again after them: the per-core reference, and how much the machine drifted meanwhile;
3. for each size, a synthetic RGB zarr image (H, W, 3) uint8, segmented by
   ``fastpoint.network.segment.segment`` on a fresh LocalCluster of ``--workers`` x 1 thread with
   ``--memory-limit`` each, chunk ``--chunk`` (default auto: the least recomputation that fits the limit);
   its seconds, throughput per core against (2), peak RSS of every worker (VmHWM, read in the workers),
   the tasks' network time, and seconds per Mpixel against the smallest size (linearity).

Prints a table and the targets met or not, writes bench/results/dask_scaling-<UTC time>.json.
The model is exported first when the file is missing (MONAI BasicUNet, free N, H and W; needs torch and
monai). Expected duration on a quiet 2-core Zen 5 box: ``--sizes 2048,4096,8192,16384`` ~10-15 minutes
(the 16k run alone ~5-8; it is 64x the pixels of 2k), printed again once the in-memory rate is known.

    python tools/dask_scaling.py --model /tmp/dask_basicunet_free.onnx --sizes 2048,4096,8192,16384 --exact
    python tools/dask_scaling.py --model /tmp/dask_basicunet_free.onnx --ab 5     # whole vs tiled, one process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import types

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
    """The whole network on one size x size image at 1 thread: median wall and thread-CPU seconds."""
    import fastpoint as fp

    net = fp.load_onnx(model)
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    fp.set_num_threads(1)
    net(x)  # plan, pack, fault in the arena
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        net(x)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    sec, cpu_sec = float(np.median(times)), float(np.median(cpu))
    return {"size": size, "seconds": sec, "cpu_seconds": cpu_sec, "mpixel_per_s": size * size / sec / 1e6,
            "mpixel_per_cpu_s": size * size / cpu_sec / 1e6, "samples_s": times, "samples_cpu_s": cpu,
            "loadavg": os.getloadavg()}


def ab_in_process(model: str, size: int, chunk, rounds: int) -> dict:
    """The whole image against fastpoint.dask.run with and without crops on one thread (``scheduler="sync"``),
    alternating in this process: the cost of the halo and of dask's tasks without a cluster. Medians of
    wall and thread-CPU seconds."""
    import dask.array as da

    import fastpoint as fp
    import fastpoint.dask as fpd

    net = fp.load_onnx(model)
    x = np.random.default_rng(2).random((1, 3, size, size), dtype=np.float32)
    fp.set_num_threads(1)
    ch, cw = (chunk, chunk) if isinstance(chunk, int) else chunk
    xd = da.from_array(x, chunks=(1, 3, ch, cw))
    tiled = {"tiled": fpd.run(net, xd, crop=False), "tiled_crop": fpd.run(net, xd, crop=True)}
    runs = {"whole": (lambda: net(x))}
    runs.update({k: (lambda y=y: y.compute(scheduler="sync")) for k, y in tiled.items()})
    for f in runs.values():
        f()  # plans, packing, arenas
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, f in runs.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            f()
            times[k].append((time.perf_counter() - t0, time.thread_time() - c0))
    out = {"size": size, "chunk": [ch, cw], "rounds": rounds}
    for k, v in times.items():
        out[f"{k}_s"] = float(np.median([t for t, _ in v]))
        out[f"{k}_cpu_s"] = float(np.median([c for _, c in v]))
    for k in tiled:
        out[f"{k}_over_whole_cpu"] = out[f"{k}_cpu_s"] / out["whole_cpu_s"]
    return out


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


def _git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def estimate_seconds(model: str, sizes, workers: int, memory_limit: str, chunk, rate: float, crop: bool) -> dict:
    """Each size's expected seconds: its tiles' work (halo included) at the in-memory rate, per worker."""
    import dask.utils

    import fastpoint as fp
    from fastpoint.network.segment import choose_chunk
    from fastpoint.network.tiled import _source_chunks, task_memory, tile_work, tiling

    net = fp.load_onnx(model)
    mem = task_memory(net, crop=crop)
    out = {}
    for size in sizes:
        shape = (1, 3, size, size)
        c = chunk or choose_chunk(net, shape, np.float32, dask.utils.parse_bytes(memory_limit), 250 << 20,
                                  mem, crop=crop, workers=workers)["chunks_hw"]
        chunks = _source_chunks(types.SimpleNamespace(shape=shape), c)
        t = tiling(net, shape, chunks)
        out[size] = size * size * tile_work(net, t, shape, chunks, crop=crop) / 1e6 / rate / workers
    return out


def tune_chunk(model: str, size: int, workers: int, memory_limit: str, crop: bool) -> dict:
    """``fastpoint segment --chunk tune``'s choice for a size x size RGB image on this cluster shape."""
    import distributed

    import fastpoint as fp
    from fastpoint.network.segment import _worker_base, choose_chunk
    from fastpoint.network.tiled import task_memory

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        base = max(client.run(_worker_base).values())
        limit = min(int(i["memory_limit"]) for i in client.scheduler_info()["workers"].values())
    net = fp.load_onnx(model)
    choice = choose_chunk(net, (1, 3, size, size), np.float32, limit, base, task_memory(net, crop=crop), tune=True,
                          crop=crop, workers=workers)
    choice.pop("tile_shapes", None)
    return choice


def _cluster_run(args, src: str, dst: str, size: int, chunk, crop: bool, before: dict) -> dict:
    """One ``fastpoint segment`` run of the zarr image ``src`` on a fresh LocalCluster, with its figures."""
    from fastpoint.network.segment import segment

    t0 = time.perf_counter()
    r = segment(args.model, src, dst, workers=args.workers, chunk=chunk, memory_limit=args.memory_limit,
                progress=False, crop=crop, predict_memory=True)
    r["seconds_with_cluster_start"] = time.perf_counter() - t0
    r["size"] = size
    r["loadavg"] = os.getloadavg()
    r["seconds_per_mpixel"] = r["seconds"] / (size * size / 1e6)
    r["per_core_vs_in_memory"] = r["mpixel_per_s"] / args.workers / before["mpixel_per_s"]
    r["per_cpu_second_vs_in_memory"] = size * size / 1e6 / r["worker_cpu_seconds"] / before["mpixel_per_cpu_s"]
    r["network_cpu_per_output_mpixel"] = r["tasks"]["network_cpu_s"] / (size * size / 1e6)
    # the workers' CPU outside the tasks' network: reads, the class map, zarr writes, dask's own threads
    r["beside_network_cpu_per_output_mpixel"] = (r["worker_cpu_seconds"] - r["tasks"]["network_cpu_s"]) / (
        size * size / 1e6)
    shutil.rmtree(dst, ignore_errors=True)
    print(f"{size:6d}^2 {'crop ' if crop else 'whole'}: {r['seconds']:8.1f} s  {r['mpixel_per_s']:6.3f} Mpixel/s  "
          f"per core {r['per_core_vs_in_memory']:.2f}x in-memory (per CPU s {r['per_cpu_second_vs_in_memory']:.2f}x, "
          f"network {r['network_cpu_per_output_mpixel']:.2f}, beside it "
          f"{r['beside_network_cpu_per_output_mpixel']:.2f} CPU s/Mpixel)  peak RSS/worker "
          f"{max(r['peak_rss_mib']):.0f} MiB  chunk {r['chunk']}  load {r['loadavg'][0]:.1f}", flush=True)
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/tmp/dask_basicunet_free.onnx", help="exported first when missing")
    p.add_argument("--export", default=None, help="export BasicUNet with free H and W to this path and exit")
    p.add_argument("--sizes", default="2048,4096,8192,16384")
    p.add_argument("--chunk", default="auto", help="output chunk in pixels (N or HxW), auto (fastpoint segment's "
                                                   "default) or tune (timed once for the largest size, used for all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--repeat", type=int, default=3, help="in-memory runs (median), before and after the cluster")
    p.add_argument("--exact", action="store_true", help="check exactness on a 2048^2 image first")
    p.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                   help="only the in-process A/B: whole 2048^2 image against fastpoint.dask.run, 1 thread")
    p.add_argument("--crop", choices=("on", "off", "both"), default="on",
                   help="cropped plans (fastpoint segment's default), whole tiles, or both: each size runs both, "
                        "alternating which goes first, --rounds times (an A/B on the cluster)")
    p.add_argument("--rounds", type=int, default=1, help="cluster runs per size and variant (with --crop both)")
    p.add_argument("--workdir", default=None, help="where the zarr images go (default: a temporary directory)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "bench", "results"))
    args = p.parse_args(argv)
    if args.export:
        print(export_free(args.export))
        return 0
    if not os.path.exists(args.model):
        print(f"exporting BasicUNet with free H and W to {export_free(args.model)}", flush=True)
    import dask.utils

    from fastpoint.network.segment import parse_chunk

    chunk = None if args.chunk == "auto" else parse_chunk(args.chunk)
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {"model": args.model, "chunk": args.chunk, "workers": args.workers, "memory_limit": args.memory_limit,
              "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]), "commit": _git_commit(),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg(),
              "runs": []}
    if args.ab:
        chunk_ab = chunk or 1024
        result["ab"] = ab_in_process(args.model, 2048, chunk_ab, args.ab)
        print(json.dumps(result["ab"]))
        print(f"written {write_result(args.out, 'dask_ab', result)}")
        return 0
    if args.exact:
        result["exact"] = check_exact(args.model, 2048)
        print(f"exactness 2048^2, chunks {result['exact']['chunks']}: max |diff| {result['exact']['max_abs_diff']:.3g}"
              f" (max |ref| {result['exact']['max_abs_ref']:.3g}), bit equal: {result['exact']['bit_equal']}",
              flush=True)
    before = in_memory_rate(args.model, 2048, args.repeat)
    print(f"in memory 2048^2, 1 thread: {before['seconds']:.2f} s ({before['cpu_seconds']:.2f} CPU s), "
          f"{before['mpixel_per_s']:.3f} Mpixel/s", flush=True)
    if chunk == "tune":  # timed once, for the largest image; every size then runs with that chunk
        result["chunk_choice"] = tune_chunk(args.model, max(sizes), args.workers, args.memory_limit,
                                            args.crop != "off")
        chunk = tuple(result["chunk_choice"]["chunks_hw"])
        print(f"tuned chunk {chunk}: " + ", ".join(f"{e['chunk']}: {e['mpixel_per_cpu_s']:.3f} Mpx/CPU s on the tile, "
                                                  f"work {e['work']:.3f}x the image's"
                                                  for e in result["chunk_choice"]["timed"]), flush=True)
    est = estimate_seconds(args.model, sizes, args.workers, args.memory_limit, chunk, before["mpixel_per_s"],
                           args.crop != "off")
    result["estimated_seconds"] = est
    print("expected (tile pixels at the in-memory rate): " + ", ".join(f"{s}^2 {v:.0f} s" for s, v in est.items())
          + f"; total ~{sum(est.values()) / 60:.0f} min", flush=True)
    work = args.workdir or tempfile.mkdtemp(prefix="fp-dask-scaling-")
    try:
        for size in sizes:
            src, dst = os.path.join(work, f"img{size}.zarr"), os.path.join(work, f"out{size}.zarr")
            synthetic_zarr(src, size)
            variants = [True] if args.crop == "on" else [False] if args.crop == "off" else [True, False]
            for k in range(args.rounds):
                for crop in variants[::-1] if k % 2 else variants:
                    r = _cluster_run(args, src, dst, size, chunk, crop, before)
                    result["runs"].append(r)
                    with open(os.path.join(work, "partial.json"), "w") as f:
                        json.dump(result, f, indent=1)
            shutil.rmtree(src, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    after = in_memory_rate(args.model, 2048, args.repeat)
    result["in_memory"] = {"before": before, "after": after}
    ref = max(before["mpixel_per_s"], after["mpixel_per_s"])  # the faster: the ratio is not flattered by drift
    first = {}  # per variant (crop or not): its smallest size's run, the base of the linearity figures
    for r in result["runs"]:
        first.setdefault(r["crop"], r)
        b = first[r["crop"]]
        r["per_core_vs_in_memory_best"] = r["mpixel_per_s"] / args.workers / ref
        r["linearity"] = r["seconds_per_mpixel"] / b["seconds_per_mpixel"]  # s per image pixel, x the smallest's
        r["linearity_work"] = (r["seconds_per_mpixel"] / r["work"]) / (b["seconds_per_mpixel"] / b["work"])  # per
        # unit of arithmetic, the recomputation counted
    limit = dask.utils.parse_bytes(args.memory_limit)
    runs = result["runs"]
    result["targets"] = {
        "peak_rss_below_limit": bool(runs) and all(max(r["peak_rss_mib"]) * 2**20 < limit for r in runs),
        "per_core_at_least_0.8x": bool(runs) and runs[-1]["per_core_vs_in_memory_best"] >= 0.8,
        "time_linear_within_15pct": bool(runs) and all(abs(r["linearity"] - 1) <= 0.15 for r in runs),
        "time_linear_in_work_within_15pct": bool(runs) and all(abs(r["linearity_work"] - 1) <= 0.15 for r in runs),
    }
    result["loadavg_end"] = os.getloadavg()
    print(f"in memory 2048^2 after: {after['seconds']:.2f} s ({after['mpixel_per_s']:.3f} Mpixel/s; before "
          f"{before['mpixel_per_s']:.3f})")
    print("\n| size | crop | chunk | recomputed | seconds | s per Mpixel (x smallest) | per work (x smallest) | "
          "per core vs in-memory | peak RSS/worker MiB (predicted) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        pred = f"{r['predicted_worker_mib']:.0f}" if r.get("predicted_worker_mib") else "-"
        print(f"| {r['size']} | {'on' if r['crop'] else 'off'} | {r['chunk']} | {100 * (r['work'] - 1):.0f} % | "
              f"{r['seconds']:.1f} | {r['seconds_per_mpixel']:.2f} ({r['linearity']:.2f}) | "
              f"{r['linearity_work']:.2f} | {r['per_core_vs_in_memory_best']:.2f} | {max(r['peak_rss_mib']):.0f} "
              f"({pred}) |")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in result["targets"].items()))
    print(f"\nwritten {write_result(args.out, 'dask_scaling', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
