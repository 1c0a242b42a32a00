"""Throughput of a 3-layer convolution stack over a batch of images: dask LocalCluster vs one process.

    flock /tmp/fp-bench.lock python bench/dask_batch.py --images 1024 --size 64 --n-workers 2

The single-process contender runs the same stack (fastpoint, one thread) over the same batch in
chunks of ``--chunk`` images; the cluster contender runs ``fastpoint.dask.conv2d`` layer by layer over
the batch chunked the same way in N (whole images per chunk), with the input already in the workers'
memory (as after loading from storage on the workers) and the output kept there (``persist``). The
contenders alternate round by round and medians are compared. The figure of merit is
``(cluster images/s / cores used) / (single-process images/s on one core)``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastpoint as fp  # noqa: E402


def make_stack(channels: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = [(width, channels, 3, 3), (width, width, 3, 3), (width, width, 3, 3)]
    return [(rng.standard_normal(s).astype(np.float32) * 0.2, rng.standard_normal(s[0]).astype(np.float32) * 0.1)
            for s in shapes]


def _same(block: np.ndarray, run: int) -> np.ndarray:
    return block


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--chunk", type=int, default=64, help="images per chunk / per single-process call")
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    import dask.array as da
    from dask.distributed import Client, LocalCluster, wait

    import fastpoint.dask as fpd

    stack = make_stack(args.channels, args.width)
    layers = [fp.Conv2d(w, b, padding=1, activation="relu") for w, b in stack]
    x = np.random.default_rng(1).standard_normal((args.images, args.channels, args.size, args.size)).astype(np.float32)
    flops = sum(2 * w.size * args.size * args.size for w, _ in stack) * args.images

    def single() -> None:
        fp.set_num_threads(1)
        for i in range(0, args.images, args.chunk):
            h = x[i:i + args.chunk]
            for layer in layers:
                h = layer(h)

    cores = args.n_workers * args.threads_per_worker
    with LocalCluster(n_workers=args.n_workers, threads_per_worker=args.threads_per_worker, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        xd = da.from_array(x, chunks=(args.chunk, args.channels, args.size, args.size)).persist()
        wait(xd)

        import psutil

        workers = [psutil.Process(pid) for pid in set(client.run(os.getpid).values())]

        def worker_cpu() -> float:
            return sum(t.user + t.system for t in (p.cpu_times() for p in workers))

        runs = iter(range(10**6))

        def on_cluster() -> None:
            # a fresh (free, identity) input key per run: otherwise the scheduler could hand back the
            # results of the previous run, whose keys are still being released
            h = xd.map_blocks(_same, run=next(runs), dtype=xd.dtype)
            for w, b in stack:
                h = fpd.conv2d(h, w, b, padding=1, activation="relu")
            h = h.persist()
            wait(h)
            del h

        # check once that the cluster computes what one process computes
        h = xd
        for w, b in stack:
            h = fpd.conv2d(h, w, b, padding=1, activation="relu")
        got = h[: args.chunk].compute()
        ref = x[: args.chunk]
        for layer in layers:
            ref = layer(ref)
        equal = bool(np.array_equal(got, ref))

        times = {"single": [], "cluster": []}
        cpu = {"single": [], "cluster": []}
        single()
        on_cluster()  # warm-up: compilation, weight packing on the workers
        for r in range(args.rounds):
            for name in (("single", "cluster") if r % 2 == 0 else ("cluster", "single")):
                t, c0, w0 = time.perf_counter(), time.process_time(), worker_cpu()
                (single if name == "single" else on_cluster)()
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c0 if name == "single" else worker_cpu() - w0)
    med = {k: statistics.median(v) for k, v in times.items()}
    single_rate = args.images / med["single"]
    cluster_rate = args.images / med["cluster"]
    result = {
        "images": args.images, "shape": [args.channels, args.size, args.size], "width": args.width,
        "chunk": args.chunk, "n_workers": args.n_workers, "threads_per_worker": args.threads_per_worker,
        "single_s": [round(t, 3) for t in times["single"]], "cluster_s": [round(t, 3) for t in times["cluster"]],
        "single_images_per_s_1core": round(single_rate, 1), "cluster_images_per_s": round(cluster_rate, 1),
        "single_gflops": round(flops / med["single"] / 1e9, 2),
        "cluster_gflops": round(flops / med["cluster"] / 1e9, 2),
        "per_core_ratio": round(cluster_rate / cores / single_rate, 3), "cluster_equal_to_single": equal,
        "single_cpu_s": [round(t, 3) for t in cpu["single"]],
        "cluster_worker_cpu_s": [round(t, 3) for t in cpu["cluster"]],
        "per_cpu_second_ratio": round(statistics.median(cpu["single"]) / statistics.median(cpu["cluster"]), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
