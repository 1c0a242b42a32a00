"""Summarise a pool trace (csrc/pool.c built with -DFP_POOL_TRACE, file named by FP_POOL_TRACE_FILE):
per sample of back-to-back calls (samples are split at gaps > 50 ms), the call time, the helper's share
of the chunks, how often the helper ran on the caller's CPU, and the slow calls (> 100 us).

    python tools/pool_trace.py /tmp/trace.txt
"""
import sys

import numpy as np


def main(path: str) -> None:
    with open(path) as f:
        cols = f.readline().split()
    d = np.loadtxt(path, skiprows=1, ndmin=2)
    c = {name: d[:, i] for i, name in enumerate(cols)}
    n = len(d)
    starts = np.r_[0, np.where(np.diff(c["t0"]) > 50e6)[0] + 1]
    print(f"{n} pooled calls, {len(starts)} samples")
    for s, e in zip(starts, list(starts[1:]) + [n]):
        sl = slice(s, e)
        end, hc, cc = c["end"][sl], c["helper_chunks"][sl], c["caller_chunks"][sl]
        same = (c["helper_cpu"][sl] == c["caller_cpu"][sl]) & (hc > 0)
        wait = end - c["caller_done"][sl]
        slow = end > 100e3
        print(f"  {e - s} calls: median {np.median(end) / 1e3:.1f} us, total {end.sum() / 1e6:.1f} ms, "
              f"helper share {hc.sum() / max(hc.sum() + cc.sum(), 1):.2f}, helper on caller's CPU {same.mean():.2f}, "
              f"caller's wait median {np.median(wait) / 1e3:.1f} max {wait.max() / 1e3:.0f} us; first call "
              f"{end[0] / 1e3:.0f} us (posted at {c['posted'][s] / 1e3:.1f}); slow calls {slow.sum()}, "
              f"{end[slow].sum() / 1e6:.1f} ms, median {np.median(end[slow]) / 1e3 if slow.any() else 0:.0f} us, "
              f"on one CPU {same[slow].mean() if slow.any() else 0:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
