"""Load plus first inference of an ONNX model, as a user's fresh process sees it, with a breakdown.

    python tools/load_time.py MODEL.onnx [THREADS] [--warm] [--algorithm A] [--repeat N [--trees DIR,DIR...]]

Prints one JSON line: load and first-inference wall times, the main thread's CPU time over both, the
median of 5 steady inferences after them (wall and CPU), the ratio of the two, the process's page
faults, and per phase (read + protobuf, parse, BatchNorm fold, epilogue fusion, the plan made at load,
weight packing, the non-finite-weight check) ``[wall ms, CPU ms, faults]``. onnx and fastpoint are
imported before the clock starts; ``--warm`` first loads the model once, untimed, as
``fastpoint bench --model`` does; ``--algorithm`` is ``load_onnx``'s (``winograd``: docs/winograd.md);
``maxrss_mib`` is the process's peak resident memory. Run it in a new process per measurement: a second load in one
process reuses the memory the first freed, which is not what a user's first load gets.

``--repeat N`` does that: N fresh processes of this script, then one JSON line of the medians (and
minima) of the load + first and steady times and their ratios. With ``--trees A,B`` (source trees,
each with its built extension) the processes alternate between the trees, ``PYTHONPATH`` set to
each: an A/B of two versions in one run, as the developers' guide asks on a loaded machine.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def _faults() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt + r.ru_majflt


def _option(argv, name: str):
    """The value after ``name`` in ``argv`` (removed from it with the name), or None."""
    if name not in argv:
        return None
    i = argv.index(name)
    value = argv[i + 1]
    del argv[i:i + 2]
    return value


def repeat(argv, runs: int, trees) -> None:
    """``runs`` fresh processes of this script per tree (alternating), then the medians and minima."""
    keys = ("total_ms", "cpu_ms", "steady_ms", "steady_cpu_ms", "x_steady", "x_steady_cpu", "maxrss_mib")
    rows = {t: [] for t in trees}
    for i in range(runs):
        for tree in (trees if i % 2 == 0 else trees[::-1]):
            env = dict(os.environ, **({"PYTHONPATH": tree} if tree else {}))
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *argv], env=env, check=True,
                                 capture_output=True, text=True).stdout
            rows[tree].append(json.loads(out.strip().splitlines()[-1]))
    for tree, got in rows.items():
        summary = {"tree": tree or "(installed)", "runs": len(got), "warm": "--warm" in argv}
        summary.update({f"median_{k}": round(statistics.median(r[k] for r in got), 2) for k in keys})
        summary.update({f"min_{k}": round(min(r[k] for r in got), 2) for k in keys})
        print(json.dumps(summary))


def main(argv) -> None:
    argv = list(argv)
    runs, trees = _option(argv, "--repeat"), _option(argv, "--trees")
    if runs is not None:
        repeat(argv, int(runs), trees.split(",") if trees else [""])
        return
    algorithm = _option(argv, "--algorithm") or "auto"
    args = [a for a in argv if not a.startswith("--")]
    path, threads = args[0], int(args[1]) if len(args) > 1 else 1
    import onnx  # noqa: F401  (imports are not part of the load)

    import fastpoint as fp
    from fastpoint import api
    from fastpoint import network as netmod
    from fastpoint.backends import c as cbackend
    from fastpoint.bench.model import input_feeds

    fp.set_num_threads(threads)
    parts = {}

    def timed(owner, name, key):
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            w0, c0, f0 = time.perf_counter(), time.thread_time(), _faults()
            try:
                return fn(*a, **k)
            finally:
                p = parts.setdefault(key, [0.0, 0.0, 0])
                p[0] += (time.perf_counter() - w0) * 1e3
                p[1] += (time.thread_time() - c0) * 1e3
                p[2] += _faults() - f0

        setattr(owner, name, wrapper)

    for owner, name, key in [(netmod, "read", "read+protobuf"), (netmod, "parse", "parse"),
                             (netmod, "fold_batch_norm", "fold"), (netmod, "fuse_epilogues", "fuse"),
                             (netmod, "Network", "plan at load"), (cbackend.CBackend, "prepack", "pack"),
                             (api, "nonfinite_taps", "nonfinite")]:
        timed(owner, name, key)
    feeds = None
    if "--warm" in argv:
        feeds = input_feeds(fp.load_onnx(path, algorithm=algorithm))
    parts.clear()
    w0, c0, f0 = time.perf_counter(), time.thread_time(), _faults()
    net = fp.load_onnx(path, algorithm=algorithm)
    w1, c1, f1 = time.perf_counter(), time.thread_time(), _faults()
    feeds = feeds or input_feeds(net)  # (not timed)
    w1b, c1b = time.perf_counter(), time.thread_time()
    net.run(feeds)
    w2, c2, f2 = time.perf_counter(), time.thread_time(), _faults()
    w2, c2 = w2 - (w1b - w1), c2 - (c1b - c1)
    walls, cpus = [], []
    for _ in range(5):
        s, sc = time.perf_counter(), time.thread_time()
        net.run(feeds)
        walls.append(time.perf_counter() - s)
        cpus.append(time.thread_time() - sc)
    steady, steady_cpu = float(np.median(walls)), float(np.median(cpus))
    print(json.dumps({"model": path, "threads": threads, "warm": "--warm" in argv, "algorithm": algorithm,
                      "load_ms": (w1 - w0) * 1e3, "first_ms": (w2 - w1) * 1e3, "total_ms": (w2 - w0) * 1e3,
                      "cpu_ms": (c2 - c0) * 1e3, "steady_ms": steady * 1e3, "steady_cpu_ms": steady_cpu * 1e3,
                      "x_steady": (w2 - w0) / steady, "x_steady_cpu": (c2 - c0) / steady_cpu,
                      "faults_load": f1 - f0, "faults_first": f2 - f1,
                      "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "parts_wall_cpu_faults": {k: [round(v[0], 1), round(v[1], 1), v[2]] for k, v in parts.items()}}))


if __name__ == "__main__":
    main(sys.argv[1:])
