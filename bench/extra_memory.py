"""Dev script: extra memory of one fastpoint call against the im2col buffer the call avoids.

Runs each layer in a fresh subprocess: input, weights (packed) and a pre-touched output exist
before the measured call, so the growth of the peak RSS during the first call is what the call
itself allocates (per-thread strips, partial-sum buffers, OpenMP thread stacks).

    python bench/extra_memory.py --threads 2 [--one-shot]

``--one-shot``: the same for one-shot calls (``fp.conv2d(x, w, b, out=out)``, in a fresh subprocess too):
the resident set's growth over the first call (what the call keeps: the per-thread scratch, which holds
the packed weights where the call packs them first, and the kernels' strips) and over the 20 calls after it
(none: the scratch is reused).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["unet_3x3_64_256", "r50_3x3_64_56", "r50_stem_7x7s2", "unet_3x3_512_32", "mb2_dw_144_56",
          "r50_1x1_2048_512_7", "r50_3x3_512_7"]


def child(name: str, threads: int) -> None:
    sys.path.insert(0, ROOT)
    import numpy as np

    import fastpoint as fp
    from fastpoint.bench import suites

    fp.set_num_threads(threads)
    la = suites.layer(name)
    x, w, b = la.arrays()
    conv = fp.Conv2d(w, b, activation="relu", backend="c", **la.kwargs())
    out = np.full((la.n, la.cout, la.oh, la.ow), 1.0, np.float32)
    from fastpoint.backends import get_backend

    packed = conv._prepared(get_backend("c"), np.dtype(np.float32))[1].buffer.nbytes  # pack outside the measurement
    tiny = np.ones((1, la.cin, 8, 8), np.float32)
    fp.conv2d(tiny, w, b, padding=la.padding, groups=la.groups, backend="c")  # start the thread team first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conv(x, out=out)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    im2col = 4 * (la.cin // la.groups) * la.k * la.k * la.oh * la.ow * la.n
    print(f"| {name} | {la.shape} | {threads} | {(after - before) / 1024:.2f} | {packed / 2**20:.2f} | "
          f"{im2col / 2**20:.1f} |")


def _rss_kib() -> int:
    """The resident set now (what the process keeps, scratch included), in KiB; Linux, else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_one_shot(name: str, threads: int) -> None:
    sys.path.insert(0, ROOT)
    import numpy as np

    import fastpoint as fp
    from fastpoint.bench import suites

    fp.set_num_threads(threads)
    la = suites.layer(name)
    x, w, b = la.arrays()
    out = np.full((la.n, la.cout, la.oh, la.ow), 1.0, np.float32)
    tiny = np.ones((1, 1, 8, 8), np.float32)
    fp.conv2d(tiny, np.ones((1, 1, 1, 1), np.float32), backend="c")  # start the thread team first
    kw = dict(la.kwargs(), activation="relu", backend="c", out=out)
    before = _rss_kib()
    fp.conv2d(x, w, b, **kw)
    first = _rss_kib()
    for _ in range(20):
        fp.conv2d(x, w, b, **kw)
    later = _rss_kib()
    print(f"| {name} | {la.shape} | {threads} | {(first - before) / 1024:.2f} | {(later - first) / 1024:.2f} | "
          f"{w.nbytes / 2**20:.2f} | {out.nbytes / 2**20:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", default="")
    ap.add_argument("--one-shot", action="store_true", help="one-shot calls fp.conv2d(x, w, b, out=out)")
    args = ap.parse_args()
    if args.child:
        (child_one_shot if args.one_shot else child)(args.child, args.threads)
        return
    if args.one_shot:
        print("| layer | shape | threads | RSS kept after the first one-shot call (MiB) | "
              "growth over 20 more calls (MiB) | weights (MiB) | output (MiB, preallocated) |")
        print("|---|---|---|---|---|---|---|")
    else:
        print("| layer | shape | threads | RSS growth, first call (MiB) | packed weights (MiB) | im2col buffer (MiB) |")
        print("|---|---|---|---|---|---|")
    for name in LAYERS:
        subprocess.run([sys.executable, __file__, "--child", name, "--threads", str(args.threads)]
                       + (["--one-shot"] if args.one_shot else []), check=True)


if __name__ == "__main__":
    main()
