"""Dev script: extra memory of one fastpoint call against the im2col buffer the call avoids.

Runs each layer in a fresh subprocess: input, weights (packed) and a pre-touched output exist
before the measured call, so the growth of the peak RSS during the first call is what the call
itself allocates (per-thread strips, partial-sum buffers, OpenMP thread stacks).

    python bench/extra_memory.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["unet_3x3_64_256", "r50_3x3_64_56", "r50_stem_7x7s2", "unet_3x3_512_32", "mb2_dw_144_56"]


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", default="")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    print("| layer | shape | threads | RSS growth, first call (MiB) | packed weights (MiB) | im2col buffer (MiB) |")
    print("|---|---|---|---|---|---|")
    for name in LAYERS:
        subprocess.run([sys.executable, __file__, "--child", name, "--threads", str(args.threads)], check=True)


if __name__ == "__main__":
    main()
