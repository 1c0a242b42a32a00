"""The benchmark runner behind ``fastpoint bench`` and ``bench/``: contenders, timing, raw results.

A *contender* is a fastpoint backend or a peer library (:mod:`fastpoint.peers`) set up for one layer
at one thread count.  For each layer and thread count every contender is built, run once and its
output checked against the first fastpoint backend, then all are timed together, alternating round
by round (:func:`fastpoint.bench.timing.alternate`); the raw samples are kept for the JSON file.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .. import __version__
from ..backends.c import _aligned_bytes
from ..core.threads import get_num_threads, set_num_threads
from . import peers
from .peers import Prepared

# a backend's name with these suffixes times its one-shot call: fp.conv2d(..., out=out) / y = fp.conv2d(...)
from .report import CALL, CALL_NEW
from .suites import SUITES, Layer
from .timing import alternate, median

#: relative error (of the largest output) above which a contender's output is flagged as wrong
CHECK_TOL = 1e-3


@dataclass(frozen=True)
class Settings:
    rounds: int = 7
    sample_s: float = 0.05
    max_layer_s: float = 6.0  # per layer and thread count, all contenders together
    # Pause between samples when several threads run: thread pools (onnxruntime's above all) spin for
    # milliseconds after their work, and on a small machine that spinning would be timed as part of
    # the next contender's sample (measured: torch at 2 threads lost ~40% next to onnxruntime with a
    # 2-20 ms pause, nothing with 50 ms), and OpenBLAS's idle threads (the numpy-gemm peer) spin for
    # longer still: with 50 ms, fastpoint's 2-thread samples after a numpy-gemm sample ran at 1-thread
    # speed (163 against 277 GFLOP/s on r50_1x1_256_64_56), with 150 ms they did not.  One thread has
    # no pool, so no pause.
    gap_s: float = 0.15


QUICK_SETTINGS = Settings(rounds=5, sample_s=0.03, max_layer_s=2.5)


def select_layers(suite: str, patterns: str = "") -> List[Layer]:
    """The layers of ``suite`` whose name contains, or matches the glob of, one of the patterns."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    layers = SUITES[suite]
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    if pats:
        layers = [la for la in layers if any(p in la.name or fnmatch.fnmatch(la.name, p) for p in pats)]
    return layers




def _aligned_empty(shape) -> np.ndarray:
    """An uninitialised float32 array whose data starts on a 64-byte boundary (the packing buffers' helper)."""
    return _aligned_bytes(4 * int(np.prod(shape))).view(np.float32).reshape(shape)


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    out = _aligned_empty(a.shape)
    out[...] = a
    return out


def prepare_backend(backend: str, layer: Layer, threads: int, layout: str) -> Prepared:
    """A fastpoint backend on ``layer``: the prepacked layer (``c``, output preallocated: ``out=``), or the
    one-shot call as NumPy users make it, weights checked and packed on every call: ``c-call`` with
    ``out=``, ``c-call-new`` returning a new array (``y = fp.conv2d(x, w, b, ...)``).  Each may name an
    algorithm, ``"c:winograd"`` (``fastpoint bench --algorithm``)."""
    import fastpoint as fp

    backend, _, algorithm = backend.partition(":")
    algorithm = algorithm or "auto"

    x, w, b = layer.arrays("NCHW")
    # Input and output on 64-byte boundaries for every fastpoint contender, not wherever malloc puts them: the
    # kernels shift their channel grids to the arrays' lines and stream aligned stores (depthwise NHWC, the
    # GEMM's streamed output), so two contenders of one kernel drew different times from their arrays'
    # offsets (NHWC mb2_dw_144_56, 1 thread, loaded box: 54-119 us over x and y offsets of 0-48 bytes mod 64;
    # c-call/c 1.47 in the 2026-12-02c run, where one-shot and prepacked run the same kernel).
    x = _aligned_copy(x.transpose(0, 2, 3, 1) if layout == "NHWC" else x)
    shape = (layer.n, layer.cout, layer.oh, layer.ow) if layout == "NCHW" else (layer.n, layer.oh, layer.ow, layer.cout)
    out = _aligned_empty(shape)
    set_num_threads(threads)
    got = {"y": out}
    if backend.endswith(CALL_NEW):
        name, kw = backend[:-len(CALL_NEW)], layer.kwargs()

        def run():
            got["y"] = fp.conv2d(x, w, b, **kw, layout=layout, backend=name, algorithm=algorithm)
    elif backend.endswith(CALL):
        name, kw = backend[:-len(CALL)], layer.kwargs()

        def run():
            fp.conv2d(x, w, b, **kw, layout=layout, backend=name, algorithm=algorithm, out=out)
    else:
        conv = fp.Conv2d(w, b, **layer.kwargs(), layout=layout, backend=backend, algorithm=algorithm)

        def run():
            conv(x, out=out)

    def result():
        y = got["y"]
        return y if layout == "NCHW" else np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    note = "one-shot fp.conv2d, out=" if backend.endswith(CALL) else \
        "one-shot fp.conv2d, a new array" if backend.endswith(CALL_NEW) else ""
    return Prepared(run, result, layout, note)


def prepare(name: str, kind: str, layer: Layer, threads: int, layout: str,
            conversions: bool = False) -> Union[Prepared, str]:
    if hasattr(layer, "prepare"):  # an op of its own (conv1d, transposed: ops_suites.py) sets up its contenders
        return layer.prepare(name, kind, threads, layout)
    if kind == "backend":
        return prepare_backend(name, layer, threads, layout)
    return peers.prepare(name, layer, threads, layout, conversions)


def _check(ref: Optional[np.ndarray], got: Optional[np.ndarray]) -> Optional[float]:
    if ref is None or got is None or ref.shape != got.shape:
        return None
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - ref).max() / scale)


def _versions(peer_names: Sequence[str]) -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("numba", "torch", "onnxruntime", "ai-edge-litert"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine_info(thread_counts: Sequence[int]) -> Dict[str, object]:
    from ..core import machine
    from . import measure

    isa = machine.isa()
    return {"cpu": machine.cpu_model(), "machine": platform.machine(), "system": platform.system(),
            "isa": isa["in_use"], "caches": {f"L{k}": v for k, v in machine.cache_sizes().items()},
            "cpus": os.cpu_count(), **measure.machine_limits(thread_counts),
            "triad_bytes": measure.TRIAD_BYTES}


class Progress:
    """One status line on a terminal (rewritten in place), or one line per step elsewhere."""

    def __init__(self, total: int, stream=sys.stderr, enabled: bool = True) -> None:
        self.total, self.done, self.stream, self.enabled = total, 0, stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()

    def step(self, text: str) -> None:
        if not self.enabled:
            return
        self.done += 1
        line = f"[{self.done}/{self.total} {time.perf_counter() - self.start:5.1f}s] {text}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:150])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_bench(layers: Sequence[Layer], backends: Sequence[str], peer_names: Sequence[str],
              thread_counts: Sequence[int], layout: str = "NCHW", settings: Settings = Settings(),
              progress: bool = True, command: str = "", conversions: bool = False,
              on_result: Optional[Callable[[dict], None]] = None) -> Dict[str, object]:
    """Time every contender on every layer at every thread count; returns the JSON-able record."""
    contenders = [(b, "backend") for b in backends] + [(p, "peer") for p in peer_names]
    saved_threads = get_num_threads()
    started = datetime.datetime.now(datetime.timezone.utc)
    record: Dict[str, object] = {
        "format": "fastpoint-bench/1", "fastpoint": __version__, "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"), "layout": layout, "conversions": conversions,
        "threads": list(thread_counts),
        "settings": settings.__dict__, "versions": _versions(peer_names),
        "contenders": [{"name": n, "kind": k} for n, k in contenders],
        "machine": machine_info(thread_counts), "results": []}
    record["machine"]["loadavg_before"] = _loadavg()
    bar = Progress(len(layers) * len(thread_counts), enabled=progress)
    try:
        for layer in layers:
            for threads in thread_counts:
                bar.step(f"{layer.name} x {threads} thread{'s' if threads > 1 else ''}")
                entry = _run_layer(layer, contenders, threads, layout, settings, conversions)
                record["results"].append(entry)
                if on_result:
                    on_result(entry)
    finally:
        bar.close()
        set_num_threads(saved_threads)
    record["machine"]["loadavg_after"] = _loadavg()
    from . import measure  # measured once more after the run: other processes only lower them

    record["machine"]["fma_peak_gflops"] = {str(t): measure.fma_peak(t, again=True) for t in thread_counts}
    record["machine"]["triad_gbs"] = {str(t): measure.triad(t, again=True)[0] for t in thread_counts}
    return record


def _loadavg() -> Optional[float]:
    """1-minute load average: other processes' demand for the CPUs (this run's own adds ~threads)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _run_layer(layer: Layer, contenders, threads: int, layout: str, settings: Settings,
               conversions: bool = False) -> Dict[str, object]:
    entry: Dict[str, object] = {
        "layer": layer.name, "group": layer.group, "shape": layer.shape, "flops": layer.flops,
        "bytes": layer.min_bytes, "memory_bound": layer.memory_bound, "threads": threads,
        "samples": {}, "na": {}, "notes": {}, "check": {}}
    ready: Dict[str, Prepared] = {}
    ref = None
    blas = peers.blas_threads(threads)  # NumPy's BLAS (the numpy backend, numpy-gemm) gets the same count
    blas.__enter__()
    try:
        for name, kind in contenders:
            try:
                prep = prepare(name, kind, layer, threads, layout, conversions)
            except Exception as exc:  # noqa: BLE001 - a peer failing must not stop the run
                prep = f"error: {type(exc).__name__}: {exc}"
            if isinstance(prep, str):
                entry["na"][name] = prep
                continue
            prep.run()
            got = prep.result()
            if ref is None and got is not None:
                ref = np.array(got, dtype=np.float64)
            elif got is not None:
                entry["check"][name] = _check(ref, got)
            if prep.note:
                entry["notes"][name] = prep.note
            ready[name] = prep
        set_num_threads(threads)
        samples = alternate({n: p.run for n, p in ready.items()}, rounds=settings.rounds,
                            sample_s=settings.sample_s, max_total_s=settings.max_layer_s,
                            gap_s=settings.gap_s if threads > 1 else 0.0)
        entry["samples"] = samples
        entry["median_s"] = {n: median(s) for n, s in samples.items()}
    finally:
        for prep in ready.values():
            prep.close()
        blas.__exit__(None, None, None)
    return entry
