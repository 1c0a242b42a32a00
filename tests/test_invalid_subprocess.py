"""Every class of bad argument raises ValueError/TypeError naming it, on every backend, through
``conv2d`` and through ``Conv2d`` (construction or call) - run in child processes, so that a crash
(segfault, abort) is a test failure naming the case rather than the end of the test run.

The cases live in tests/invalid_cases.py.  One child runs them all; if it dies, the case it had
announced is recorded as a crash and a new child resumes with the next case.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from . import invalid_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_children() -> dict:
    results: dict = {}
    start = 0
    while start < len(invalid_cases.CASES):
        proc = subprocess.run([sys.executable, "-X", "faulthandler", "-m", "tests.invalid_cases", str(start)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        last_start = None
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            if "start" in rec:
                last_start = rec
            else:
                results.setdefault(rec["index"], []).append(rec)
                last_start = None
        if proc.returncode == 0:
            break
        if last_start is None:  # died outside a case (import error): report it on every remaining case
            for index in range(start, len(invalid_cases.CASES)):
                results.setdefault(index, []).append(
                    {"ok": False, "backend": "-", "entry": "-",
                     "why": f"child exited {proc.returncode}: {proc.stderr[-2000:]}"})
            break
        index = last_start["start"]
        results.setdefault(index, []).append(
            {"ok": False, "backend": last_start["backend"], "entry": last_start["entry"],
             "why": f"CRASH: child process exited with {proc.returncode}: {proc.stderr[-2000:]}"})
        start = index + 1
    return results


@pytest.fixture(scope="module")
def results():
    return _run_children()


@pytest.mark.parametrize("index", range(len(invalid_cases.CASES)), ids=invalid_cases.NAMES)
def test_bad_argument_raises_naming_it(results, index):
    recs = results.get(index)
    assert recs, "case did not run"
    failures = [f"{r['backend']}/{r['entry']}: {r['why']}" for r in recs if not r["ok"]]
    assert not failures, "\n".join(failures)
    import fastpoint as fp

    assert len(recs) == len(fp.backends()) * len(invalid_cases.ENTRIES)


LAYER_ARGS = [("stride", dict(stride=0)), ("padding", dict(padding="full")), ("dilation", dict(dilation=-1)),
              ("groups", dict(groups=0)), ("activation", dict(activation="gelu")), ("layout", dict(layout="nhwc")),
              ("backend", dict(backend="gpu")), ("weight", dict(weight="w")), ("bias", dict(bias=[1.0, 2.0]))]


@pytest.mark.parametrize("name,kwargs", LAYER_ARGS, ids=[a[0] for a in LAYER_ARGS])
def test_conv2d_layer_rejects_at_construction(name, kwargs):
    """What does not depend on the input is checked when the layer is built, not at its first call."""
    import numpy as np

    import fastpoint as fp

    args = dict(weight=np.zeros((6, 4, 3, 3), np.float32), bias=None)
    args.update(kwargs)
    weight, bias = args.pop("weight"), args.pop("bias")
    with pytest.raises((ValueError, TypeError), match=name):
        fp.Conv2d(weight, bias, **args)
