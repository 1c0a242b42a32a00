"""One benchmark per layer x contender (fastpoint backends, then peer libraries), grouped by layer.

``extra_info`` carries the layer's FLOP count and bytes, and after timing its GFLOP/s and GB/s from
the median, with % of the measured FMA peak (compute-bound layers) or of the triad bandwidth
(memory-bound ones).  Peers are the same set-ups as in ``fastpoint bench`` (fastpoint/bench/peers.py).
"""

from __future__ import annotations

import os

import pytest

import fastpoint as fp
from fastpoint.bench import measure, peers
from fastpoint.bench.runner import prepare
from fastpoint.bench.suites import SUITES

SUITE = os.environ.get("FASTPOINT_BENCH_SUITE", "all")
LAYOUT = os.environ.get("FASTPOINT_BENCH_LAYOUT", "NCHW")
THREADS = int(os.environ.get("FASTPOINT_BENCH_THREADS", "0")) or fp.get_num_threads()
_PEERS = os.environ.get("FASTPOINT_BENCH_PEERS", "")
PEERS = [] if _PEERS == "none" else ([p for p in _PEERS.split(",") if p] or peers.available_peers())

CONVERSIONS = os.environ.get("FASTPOINT_BENCH_CONVERSIONS", "") not in ("", "0")
CONTENDERS = [(b, "backend") for b in fp.backends()] + [(p, "peer") for p in PEERS]


@pytest.mark.parametrize("contender", CONTENDERS, ids=[c[0] for c in CONTENDERS])
@pytest.mark.parametrize("layer", SUITES[SUITE], ids=[la.name for la in SUITES[SUITE]])
def test_layer(benchmark, layer, contender):
    name, kind = contender
    if kind == "peer" and peers.why_unavailable(name):
        pytest.skip(peers.why_unavailable(name))
    prep = prepare(name, kind, layer, THREADS, LAYOUT, CONVERSIONS)
    if isinstance(prep, str):
        pytest.skip(prep)
    benchmark.group = f"{layer.name}: {layer.shape}, {THREADS} thread{'s' if THREADS > 1 else ''}"
    benchmark.extra_info.update(layer=layer.name, contender=name, kind=kind, layout=prep.layout,
                                threads=THREADS, flops=layer.flops, bytes=layer.min_bytes,
                                memory_bound=layer.memory_bound, note=prep.note)
    try:
        prep.run()  # first call outside the timing: Numba compiles, pages fault in, pools start
        benchmark(prep.run)
    finally:
        prep.close()
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        t = stats.stats.median
        gflops, gbs = layer.flops / t * 1e-9, layer.min_bytes / t * 1e-9
        benchmark.extra_info.update(gflops=round(gflops, 2), gbs=round(gbs, 2))
        peak, bw = measure.fma_peak(THREADS), measure.triad(THREADS)[0]  # measured once per process
        if peak:
            benchmark.extra_info["pct_fma_peak"] = round(100 * gflops / peak, 1)
        if bw:
            benchmark.extra_info["pct_bandwidth"] = round(100 * gbs / bw, 1)
