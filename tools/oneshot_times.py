"""One-shot calls against prepacked layers, as users make them, and where a one-shot call's time goes.

For each layer and thread count, alternated round by round in one process:

* ``call``: ``fp.conv2d(x, w, b, ...)`` (the one-shot call, a new array: what a NumPy user writes);
* ``call-out``: the same with ``out=`` (what ``fastpoint bench``'s ``c-call`` times);
* ``layer``: ``fp.Conv2d(w, b, ...)(x)`` (prepacked, built before timing), and ``layer-out`` with ``out=``;
* ``runner``: the one-shot plan's backend part alone, on arrays the call would pass it (C: ``CallPlan.fast``,
  the call's out check, cffi views and checked C entry; Numba: ``CallPlan.run``, the launcher);
* ``kernel`` (C only): ``fp_conv_once_f32`` called with ready cffi pointers: the C time of a call;
* ``torch``: ``F.conv2d(x, w, b)`` (one-shot too; torch prepacks nothing), when torch is installed; at 1
  thread only unless ``--torch-all`` (at 2 its OpenMP workers spin after each call, and on a box shared
  with other jobs that slowed every other contender 2-4x and torch itself to 40-120 ms a call).

With ``--wake``, each layer at more than one thread also gets ``pool``: the process's CPU time over the
calling thread's across a batch of ``call-out`` and of ``layer-out`` calls (1.0: the pool's helpers never
woke; they spin about 0.3 ms after each job they are woken for, so a split call shows as 1.3-2).

``python = call-out - kernel`` is what the Python path adds to the C call (parse-cache key and look-up,
the argument checks on cached facts, the views), ``out = call - call-out`` the result's allocation.

    PYTHONPATH=$PWD nice -n 10 python tools/oneshot_times.py [--layers a,b] [--layout NCHW|NHWC]
        [--backend c|numba] [--threads 1,2] [--rounds 15] [--torch-all] [--wake]

At 1 thread each figure is the calling thread's CPU time (``time.thread_time``: on a box shared with
other jobs it leaves out the slices they take; the developers' guide), at 2 threads wall time (the
helpers' CPU time is not the caller's).  Each figure is the median over the rounds of the mean of a
batch of calls (batches of about 20 ms); ratios are of medians.  Default layers: the issue's list, two
large-map ones and the tiny 16->16 3x3 @8x8 layer.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable, Dict, List

import numpy as np

import fastpoint as fp
from fastpoint import api
from fastpoint.bench.suites import Layer
from fastpoint.bench.suites import layer as suite_layer

DEFAULT = ["r50_1x1_2048_512_7", "r50_1x1_512_2048_7", "r50_1x1_1024_256_14", "r50_1x1_256_64_56",
           "mb2_pw_960_320_7", "r50_3x3_512_7", "r50_3x3_128_28", "mb2_dw_960_7", "mb2_dw_384_14",
           "mb2_dw_144_56", "tiny_16_3x3_8"]
TINY = Layer("tiny_16_3x3_8", "tiny", 1, 16, 16, 8, 8, 3, 1, 1)


def _c_kernel(plan, x4: np.ndarray, w: np.ndarray, b: np.ndarray, out4: np.ndarray) -> Callable[[], object]:
    """``fp_conv_once_f32`` on ready pointers: the C part of a one-shot call."""
    from fastpoint.backends.c import _ffi, _lib, _problem_for

    p = _problem_for(plan.spec)
    args = (p, _ffi.from_buffer("float[]", x4), _ffi.from_buffer("float[]", w), _ffi.from_buffer("float[]", b),
            _ffi.from_buffer("float[]", out4), int(plan.padded))
    conv = _lib.fp_conv_once_f32
    return lambda: conv(*args)


def contenders(lay: Layer, layout: str, backend: str, with_torch: bool) -> Dict[str, Callable[[], object]]:
    x, w, b = lay.arrays("NCHW")
    kw = lay.kwargs()
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    layer = fp.Conv2d(w, b, layout=layout, backend=backend, **kw)
    out = layer(xl)
    out2 = np.empty_like(out)
    runs: Dict[str, Callable[[], object]] = {
        "call": lambda: fp.conv2d(xl, w, b, layout=layout, backend=backend, **kw),
        "call-out": lambda: fp.conv2d(xl, w, b, layout=layout, backend=backend, out=out2, **kw),
        "layer": lambda: layer(xl),
        "layer-out": lambda: layer(xl, out=out2),
    }
    plan = api._parse_one_shot(xl, w, b, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                               kw.get("groups", 1), None, layout, backend)
    fast = getattr(plan, "fast", None)  # the C backend's whole call (checks in C), else the backend runner
    runs["runner"] = (lambda: fast(xl, w, b, out2)) if fast is not None else (lambda: plan.run(xl, w, b, out2))
    if backend == "c":
        runs["kernel"] = _c_kernel(plan, xl, w, b, out2)
    try:
        if not with_torch:
            raise ImportError
        import torch
        import torch.nn.functional as F

        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

        def torch_call():
            with torch.inference_mode():
                return F.conv2d(tx, tw, tb, **kw)

        runs["torch"] = torch_call
    except ImportError:
        pass
    # the same results before timing (float data: close; tests/test_one_shot.py checks bit equality)
    np.testing.assert_allclose(runs["call"](), out, rtol=1e-4, atol=1e-4)
    runs["runner"]()
    np.testing.assert_allclose(out2, out, rtol=1e-4, atol=1e-4)
    return runs


def _batch(f: Callable[[], object]) -> int:
    """Calls per batch for about 20 ms, from the slowest of 3 calls."""
    dt = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        dt = max(dt, time.perf_counter() - t0)
    return max(1, min(2000, int(0.02 / max(dt, 1e-7))))


def _time(f: Callable[[], object], n: int, clock: Callable[[], float]) -> float:
    t0 = clock()
    for _ in range(n):
        f()
    return (clock() - t0) / n * 1e6


def _pool_cpu(f: Callable[[], object], n: int) -> float:
    """Process CPU time over the calling thread's across ``n`` calls (the pool's helpers' share, plus one)."""
    p0, t0 = time.process_time(), time.thread_time()
    for _ in range(n):
        f()
    return (time.process_time() - p0) / max(time.thread_time() - t0, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default=",".join(DEFAULT))
    ap.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"])
    ap.add_argument("--backend", default="c", choices=["c", "numba"])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--torch-all", action="store_true", help="time torch at every thread count")
    ap.add_argument("--wake", action="store_true", help="at 2+ threads: process / caller CPU time (pool wakes)")
    args = ap.parse_args()
    layers = [TINY if n == TINY.name else suite_layer(n) for n in args.layers.split(",")]
    print(f"# {args.layout}, backend {args.backend}, medians of {args.rounds} alternating rounds; us per call "
          "(1 thread: thread CPU time; 2: wall)")
    print("| layer | threads | call | call-out | layer | layer-out | runner | kernel | python | torch | "
          "call/layer | call-out/layer-out |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios: Dict[int, List[float]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        fp.set_num_threads(threads)
        clock = time.thread_time if threads == 1 else time.perf_counter
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
        for lay in layers:
            runs = contenders(lay, args.layout, args.backend, threads == 1 or args.torch_all)
            sizes = {k: _batch(f) for k, f in runs.items()}
            times: Dict[str, List[float]] = {k: [] for k in runs}
            names = list(runs)
            for r in range(args.rounds):
                # rotated each round, and a pause between contenders at 2 threads: torch's OpenMP workers
                # spin for a while after its calls and would slow whichever contender ran next
                for k in names[r % len(names):] + names[:r % len(names)]:
                    if threads > 1:
                        time.sleep(0.05)
                    times[k].append(_time(runs[k], sizes[k], clock))
            med = {k: float(np.median(v)) for k, v in times.items()}
            kernel = med.get("kernel", math.nan)
            ratio = med["call-out"] / med["layer-out"]
            ratios.setdefault(threads, []).append(ratio)
            print(f"| {lay.name} | {threads} | {med['call']:.1f} | {med['call-out']:.1f} | {med['layer']:.1f} | "
                  f"{med['layer-out']:.1f} | {med['runner']:.1f} | {kernel:.1f} | {med['call-out'] - kernel:.1f} | "
                  f"{med.get('torch', math.nan):.1f} | {med['call'] / med['layer']:.3f} | {ratio:.3f} |", flush=True)
            if args.wake and threads > 1:
                pool = {k: _pool_cpu(runs[k], max(sizes[k], 200)) for k in ("call-out", "layer-out")}
                print(f"# {lay.name} at {threads} threads, pool: process/caller CPU call-out {pool['call-out']:.2f}, "
                      f"layer-out {pool['layer-out']:.2f}", flush=True)
    for threads, rs in ratios.items():
        print(f"# {threads} thread(s): call-out/layer-out geomean {math.exp(np.mean(np.log(rs))):.3f}, "
              f"max {max(rs):.3f}")


if __name__ == "__main__":
    main()
