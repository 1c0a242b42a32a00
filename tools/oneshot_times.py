"""One-shot calls against prepacked layers, as users make them, at 1 and 2 threads.

For each layer: ``fp.conv2d(x, w, b, ...)`` (the one-shot call: weights checked, packed and used once),
``fp.Conv2d(w, b, ...)(x)`` (the prepacked layer, built before timing) and torch's ``F.conv2d(x, w, b)``
(also one-shot; torch prepacks nothing), none with ``out=``: each allocates its result, as users call them.

    PYTHONPATH=$PWD nice -n 10 python tools/oneshot_times.py [layer,...] [NCHW|NHWC] [backend]

Rounds alternate the contenders (call, layer, torch, ...; the order rotated each round, with a 50 ms
pause between contenders at 2 threads) in one process; each figure is the median
over the rounds of the mean of a batch of calls (batches sized to about 20 ms), and in brackets the best
round (on a box shared with other work, the best rounds are the ones nothing else disturbed).  Read
ratios, not absolute times.  Default layers: the issue's list plus large-map ones and the tiny
16->16 3x3 @8x8 layer.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Dict, List

import numpy as np

import fastpoint as fp
from fastpoint.bench.suites import Layer
from fastpoint.bench.suites import layer as suite_layer

DEFAULT = ["r50_1x1_2048_512_7", "r50_1x1_512_2048_7", "r50_1x1_1024_256_14", "r50_1x1_256_64_56",
           "mb2_pw_960_320_7", "r50_3x3_512_7", "r50_3x3_128_28", "mb2_dw_960_7", "mb2_dw_384_14",
           "mb2_dw_144_56", "tiny_16_3x3_8"]
TINY = Layer("tiny_16_3x3_8", "tiny", 1, 16, 16, 8, 8, 3, 1, 1)
ROUNDS = 15


def _batch(f: Callable[[], object]) -> int:
    """Calls per batch for about 20 ms, from the slowest of 3 calls (a peer's first calls can be its fastest)."""
    dt = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        dt = max(dt, time.perf_counter() - t0)
    return max(1, min(2000, int(0.02 / max(dt, 1e-7))))


def _time(f: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


def contenders(lay: Layer, layout: str, backend: str) -> Dict[str, Callable[[], object]]:
    x, w, b = lay.arrays("NCHW")
    kw = lay.kwargs()
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    layer = fp.Conv2d(w, b, layout=layout, backend=backend, **kw)
    runs: Dict[str, Callable[[], object]] = {
        "call": lambda: fp.conv2d(xl, w, b, layout=layout, backend=backend, **kw),
        "layer": lambda: layer(xl),
    }
    try:
        import torch
        import torch.nn.functional as F

        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

        def torch_call():
            with torch.inference_mode():
                return F.conv2d(tx, tw, tb, **kw)

        runs["torch"] = torch_call
    except ImportError:
        pass
    # same results (integer-valued data would be bit-equal; here: close), before timing
    ref = runs["layer"]()
    np.testing.assert_allclose(runs["call"](), ref, rtol=1e-4, atol=1e-4)
    return runs


def main(names: str = "", layout: str = "NCHW", backend: str = "c") -> None:
    layers = [TINY if n == TINY.name else suite_layer(n) for n in (names.split(",") if names else DEFAULT)]
    print(f"# {layout}, backend {backend}, medians of {ROUNDS} alternating rounds; us per call")
    print("| layer | threads | one-shot us | prepacked us | torch us | one-shot/prepacked (best) | "
          "one-shot/torch (best) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ratios: Dict[int, List[float]] = {1: [], 2: []}
    bests: Dict[int, List[float]] = {1: [], 2: []}
    for lay in layers:
        for threads in (1, 2):
            fp.set_num_threads(threads)
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:
                pass
            runs = contenders(lay, layout, backend)
            sizes = {k: _batch(f) for k, f in runs.items()}
            times: Dict[str, List[float]] = {k: [] for k in runs}
            names = list(runs)
            for r in range(ROUNDS):
                # rotated each round, and a pause between contenders at 2 threads: torch's OpenMP workers
                # spin for a while after its calls and would slow whichever contender ran next
                for k in names[r % len(names):] + names[:r % len(names)]:
                    if threads > 1:
                        time.sleep(0.05)
                    times[k].append(_time(f=runs[k], n=sizes[k]))
            med = {k: float(np.median(v)) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}
            r, rb = med["call"] / med["layer"], best["call"] / best["layer"]
            ratios[threads].append(r)
            bests[threads].append(rb)
            t, tb = med.get("torch", math.nan), best.get("torch", math.nan)
            print(f"| {lay.name} | {threads} | {med['call']:.1f} | {med['layer']:.1f} | {t:.1f} | {r:.3f} ({rb:.3f}) | "
                  f"{med['call'] / t:.3f} ({best['call'] / tb:.3f}) |", flush=True)
    for threads, rs in ratios.items():
        print(f"# {threads} thread(s): one-shot/prepacked geomean {math.exp(np.mean(np.log(rs))):.3f}, "
              f"max {max(rs):.3f}; best rounds: geomean {math.exp(np.mean(np.log(bests[threads]))):.3f}, "
              f"max {max(bests[threads]):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
