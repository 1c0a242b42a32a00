"""Check a `fastpoint bench --json` file against the issues' speed targets (ratio vs the best peer).

    python tools/targets.py bench/results/2026-11-25-sapphire-rapids-nchw.json

Per layer and thread count: time of the fastest of the named peers / time of the c backend (median
samples of the same alternating run); geomean and minimum over each suite; numba / c likewise.  Where
the run has the one-shot contender ``c-call`` (issue 14): one-shot / prepacked time (targets: geomean
<= 1.03, every layer <= 1.05) and the best peer's time / the one-shot time (geomean >= 1.10, no layer
below 0.9).
"""

from __future__ import annotations

import json
import math
import sys
from statistics import median

from fastpoint.bench.suites import POINTWISE, SPATIAL


def main(path: str) -> None:
    d = json.load(open(path))
    have = [c["name"] for c in d["contenders"]]
    # the peers each issue names: NCHW 1x1 (#3) torch, ONNX Runtime, NumPy GEMM; NCHW KxK (#4) torch,
    # ONNX Runtime; NHWC (both) XNNPACK and torch channels_last
    if d["layout"] == "NHWC":
        wanted = {"pointwise": ("xnnpack", "torch-cl"), "spatial": ("xnnpack", "torch-cl")}
    else:
        wanted = {"pointwise": ("torch", "onnxruntime", "numpy-gemm"), "spatial": ("torch", "onnxruntime")}
    suites = {"pointwise": {la.name for la in POINTWISE}, "spatial": {la.name for la in SPATIAL}}
    for threads in d["threads"]:
        rows = [r for r in d["results"] if r["threads"] == threads]
        for suite, names in suites.items():
            peers = [p for p in wanted[suite] if p in have]
            ratios, numba, once, once_peer = [], [], [], []
            for r in rows:
                if r["layer"] not in names or "c" not in r["samples"]:
                    continue
                c = median(r["samples"]["c"])
                best = min((median(r["samples"][p]) for p in peers if r["samples"].get(p)), default=None)
                if best:
                    ratios.append((best / c, r["layer"]))
                if r["samples"].get("numba"):
                    numba.append((c / median(r["samples"]["numba"]), r["layer"]))
                if r["samples"].get("c-call"):
                    call = median(r["samples"]["c-call"])
                    once.append((call / c, r["layer"]))
                    if best:
                        once_peer.append((best / call, r["layer"]))
            if not ratios and not numba and not once:
                continue
            parts = []
            if ratios:  # a run without peers (--peers none) still gives numba / c
                lo = min(ratios)
                parts.append(f"vs best of {'/'.join(peers)}: geomean {_gmean(ratios):.2f}x, min {lo[0]:.2f}x ({lo[1]})")
            if numba:
                lo = min(numba)
                parts.append(f"numba/c geomean {_gmean(numba):.2f}x, min {lo[0]:.2f}x ({lo[1]})")
            if once:
                hi = max(once)
                parts.append(f"c-call/c geomean {_gmean(once):.3f}, max {hi[0]:.3f} ({hi[1]})")
            if once_peer:
                lo = min(once_peer)
                parts.append(f"c-call vs best peer geomean {_gmean(once_peer):.2f}x, min {lo[0]:.2f}x ({lo[1]})")
            print(f"{threads}T {suite:9s} " + "; ".join(parts))


def _gmean(pairs) -> float:
    return math.exp(sum(math.log(x) for x, _ in pairs) / len(pairs))


if __name__ == "__main__":
    main(sys.argv[1])
