"""``fastpoint run model.onnx --input x.npy --output y.npy``: run an ONNX model on .npy files."""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run an ONNX model on .npy inputs",
                       description="Run an ONNX model with fastpoint on NumPy .npy files.")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--input", "-i", action="append", required=True, metavar="[NAME=]FILE.npy",
                   help="an input array; NAME= may be left out for a single-input model (repeat for several)")
    p.add_argument("--output", "-o", action="append", default=[], metavar="[NAME=]FILE.npy",
                   help="where to write an output; NAME= may be left out for a single-output model "
                        "(default: print each output's shape and range)")
    p.add_argument("--backend", default="auto", help="fastpoint backend (auto, c, numba, numpy)")
    p.add_argument("--summary", action="store_true", help="print the layer table (op, shapes, FLOPs, kernel)")
    p.set_defaults(func=cmd_run)


def _named(items, names, what):
    """``[NAME=]FILE`` arguments -> {name: file}; a bare FILE is the only name when there is one."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(names) != 1 or len(items) != 1:
                raise SystemExit(f"fastpoint run: the model has {what}s {names}: write {what} NAME=FILE.npy")
            name, path = names[0], item
        if name not in names:
            raise SystemExit(f"fastpoint run: no {what} named {name!r}; the model's {what}s are {names}")
        out[name] = path
    return out


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    import fastpoint as fp

    t0 = time.perf_counter()
    net = fp.load_onnx(args.model, backend=args.backend)
    inputs = _named(args.input, [i.name for i in net.inputs], "input")
    outputs = _named(args.output, [o.name for o in net.outputs], "output")
    feeds = {name: np.load(path) for name, path in inputs.items()}
    t1 = time.perf_counter()
    result = net.run(feeds)
    t2 = time.perf_counter()
    for name, value in result.items():
        if name in outputs:
            np.save(outputs[name], value)
            print(f"{name}: {value.shape} {value.dtype} -> {outputs[name]}")
        else:
            finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
            rng = f"min {finite.min():.6g} max {finite.max():.6g}" if finite.size else "no finite values"
            print(f"{name}: {value.shape} {value.dtype} ({rng})")
    if args.summary:
        print(net)
    print(f"load {1e3 * (t1 - t0):.0f} ms, inference {1e3 * (t2 - t1):.0f} ms", file=sys.stderr)
    return 0
