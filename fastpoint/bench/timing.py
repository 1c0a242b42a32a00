"""Timing on a shared, noisy machine: contenders alternate round by round, and medians are compared.

A speed claim is a ratio measured in one run: every round times each contender once (in a rotating
order), so slow phases of the machine hit all of them alike.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List


def _per_call(fn: Callable[[], object], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def alternate(contenders: Dict[str, Callable[[], object]], rounds: int = 7, sample_s: float = 0.05,
              max_total_s: float = 20.0, gap_s: float = 0.0) -> Dict[str, List[float]]:
    """Seconds per call of each contender: ``rounds`` samples each, alternating contenders.

    Each sample repeats the call enough times to last about ``sample_s``.  The first call of each
    contender (compilation, packing, page faults) is made before timing starts and not counted.
    ``gap_s`` sleeps between samples, so that the thread pool of one contender (which spins for a
    while after its work) has gone idle before the next contender's sample starts.
    """
    reps: Dict[str, int] = {}
    budget = 0.0
    for name, fn in contenders.items():
        first = _per_call(fn, 1)
        second = _per_call(fn, 1)
        per_call = max(min(first, second), 1e-7)
        reps[name] = max(1, int(sample_s / per_call))
        budget += reps[name] * per_call * rounds
    if budget > max_total_s:  # keep big layers from running for minutes
        rounds = max(3, int(rounds * max_total_s / budget))
    samples: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if gap_s > 0:
                time.sleep(gap_s)
            samples[name].append(_per_call(contenders[name], reps[name]))
    return samples


def median(samples: List[float]) -> float:
    return statistics.median(samples)
