"""``fastpoint bench``: time fastpoint's backends against peer libraries on the public layer suites.

Defaults: every available backend, every importable peer but ``torch-cl`` (it duplicates ``torch``
on this axis of the chart and costs a minute on ``--suite all``), all CPUs as one thread count.
``--suite quick`` uses shorter samples so that it finishes in well under a minute.

OpenBLAS tuning variables (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) would make the numpy-gemm
peer run a kernel other than the one OpenBLAS picks for this CPU.  OpenBLAS reads them when NumPy
is first imported, which has already happened by the time this code runs, so the ``fastpoint``
command re-executes itself once without them (and says so); when ``main()`` is called from Python it
can only warn.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import List, Optional

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REEXEC_MARK = "FASTPOINT_BENCH_REEXEC"


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(sub) -> None:
    from .peers import PEERS
    from .suites import SUITES

    p = sub.add_parser("bench", help="time the backends against peer libraries on the layer suites",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="quick", choices=list(SUITES), help="layer suite (default: quick)")
    p.add_argument("--layers", default="", help="comma-separated substrings or globs of layer names")
    p.add_argument("--backends", default="",
                   help="comma-separated fastpoint backends: a name times the prepacked fp.Conv2d, name-call the "
                        "one-shot fp.conv2d (default: every available one, with c-call and numba-call)")
    p.add_argument("--peers", default=None,
                   help=f"comma-separated peers from {','.join(PEERS)}, each optionally with '+conv' (layout "
                        "conversions timed, e.g. xnnpack,xnnpack+conv), or 'none' (default: every importable "
                        "one but torch-cl)")
    p.add_argument("--algorithm", default="auto",
                   help="comma-separated algorithms of the fastpoint backends from auto, direct, winograd: each "
                        "backend runs once per algorithm, named BACKEND for auto and BACKEND:ALGORITHM otherwise "
                        "('vs' columns compare the first; winograd is n/a on layers it does not apply to), "
                        "e.g. --backends c --algorithm winograd,auto (default: auto)")
    p.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"],
                   help="layout of the fastpoint backends' data (and of numpy-gemm's operands)")
    p.add_argument("--conversions", action="store_true",
                   help="peers whose native layout differs start from --layout data and return --layout "
                        "results, and the conversions are timed (default: each peer gets its native layout, "
                        "conversions untimed)")
    p.add_argument("--threads", dest="bench_threads", default="",
                   help="comma-separated thread counts, e.g. 1,2 (default: all CPUs)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per layer (default 7, quick 5)")
    p.add_argument("--sample-ms", type=float, default=None, help="length of one sample (default 50, quick 30)")
    p.add_argument("--json", default="", help="write every raw sample and the machine info to this file "
                   "(with --model: every pass's medians and samples)")
    p.add_argument("--compare", nargs="+", default=None, metavar="JSON",
                   help="print the table of saved run(s) instead of running (several are merged)")
    p.add_argument("--plot", default="", help="bar chart of GFLOP/s per layer and contender (needs matplotlib)")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--list", action="store_true", help="list the suites, backends and peers (and why any is missing)")
    p.add_argument("--model", default="", metavar="MODEL.onnx",
                   help="time a whole ONNX model end to end against onnxruntime and openvino (the --peers, "
                        "--algorithm, --threads, --rounds and first --backends options apply; see "
                        "fastpoint/bench/model.py)")
    p.add_argument("--input-shape", default="", help="with --model: the input's shape, e.g. 1,3,512,512 "
                   "(default: the declared one, free dims 1 for N and 256 for the others)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="with --model: N passes one after another (contenders alternating, their order rotated "
                        "per pass); the table gives medians over the passes and the median of the per-pass "
                        "ratios, --json keeps every pass (default 1)")
    p.add_argument("--profile", action="store_true", help="with --model: also print fastpoint's per-op breakdown")
    p.add_argument("--memory", action="store_true", help="with --model: peak RSS of fastpoint and each peer, each "
                   "in a fresh process, beside fastpoint's planned peak activations")
    p.set_defaults(func=cmd_bench)


def _this_command() -> List[str]:
    """The command line of this process, to run it again.

    The ``fastpoint`` script is run again as itself: ``python -m fastpoint.cli`` would import a
    ``fastpoint`` folder in the current directory first (the source tree, when run in a clone), not
    the installed package.  Only a process started as ``python -m fastpoint.cli`` restarts that way.
    """
    script = sys.argv[0]
    if os.path.isfile(script) and not script.endswith((".py", ".exe")):
        return [sys.executable, script, *sys.argv[1:]]
    return [sys.executable, "-m", "fastpoint.cli", *sys.argv[1:]]


def maybe_reexec(argv: Optional[List[str]]) -> None:
    """Re-run the ``fastpoint bench`` process without OpenBLAS tuning variables (see the module doc)."""
    found = [v for v in OPENBLAS_VARS if v in os.environ]
    if not found:
        return
    if argv is None and not os.environ.get(_REEXEC_MARK):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
        env[_REEXEC_MARK] = "1"
        print(f"fastpoint bench: restarting without {', '.join(found)} so OpenBLAS picks its own kernels",
              file=sys.stderr)
        sys.stderr.flush()
        os.execve(sys.executable, _this_command(), env)
    print(f"warning: {', '.join(found)} set: the numpy-gemm peer runs OpenBLAS with them; unset them for a "
          "fair figure", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..backends import backends as available_backends
    from ..core.spec import ALGORITHMS
    from ..core.threads import get_num_threads
    from . import report
    from .peers import available_peers, why_unavailable
    from .report import backend_of
    from .runner import CALL, QUICK_SETTINGS, Settings, run_bench, select_layers

    if args.list:
        return _list()
    if args.model:
        from .model import cmd_bench_model

        return cmd_bench_model(args)
    if args.compare:
        record = report.load(args.compare)
    else:
        layers = select_layers(args.suite, args.layers)
        if not layers:
            print(f"no layer of suite {args.suite!r} matches {args.layers!r}", file=sys.stderr)
            return 2
        # default: each compiled backend's prepacked layer and its one-shot call (c, c-call, ...)
        backends = _csv(args.backends) or [n for b in available_backends()
                                           for n in ((b, b + CALL) if b != "numpy" else (b,))]
        missing = [b for b in backends if backend_of(b) not in available_backends()]
        if missing:
            print(f"backend(s) not available here: {', '.join(missing)}", file=sys.stderr)
            return 2
        algorithms = _csv(args.algorithm) or ["auto"]
        bad = [a for a in algorithms if a not in ALGORITHMS]
        if bad:
            print(f"unknown --algorithm {', '.join(bad)}: choose from {', '.join(ALGORITHMS)}", file=sys.stderr)
            return 2
        backends = [b if a == "auto" else f"{b}:{a}" for a in algorithms for b in backends]
        if args.peers is None:
            peer_names = [p for p in available_peers() if p != "torch-cl"]
        else:
            peer_names = [] if args.peers.strip() == "none" else _csv(args.peers)
        for p in list(peer_names):
            reason = why_unavailable(p)
            if reason:
                print(f"skipping peer {p}: {reason}", file=sys.stderr)
                peer_names.remove(p)
        threads = [int(t) for t in _csv(args.bench_threads)] or [get_num_threads()]
        if any(t < 1 for t in threads):
            print("--threads needs positive counts", file=sys.stderr)
            return 2
        base = QUICK_SETTINGS if args.suite == "quick" else Settings()
        settings = Settings(rounds=args.rounds or base.rounds,
                            sample_s=(args.sample_ms / 1e3) if args.sample_ms else base.sample_s,
                            max_layer_s=base.max_layer_s)
        command = "fastpoint " + " ".join(shlex.quote(a) for a in getattr(args, "argv", ["bench"]))
        record = run_bench(layers, backends, peer_names, threads, args.layout, settings,
                           progress=not args.quiet, command=command, conversions=args.conversions)
        if args.json:
            report.save(record, args.json)
    print(report.report(record, markdown=args.markdown))
    if args.json and not args.compare:
        print(f"\nraw samples and machine info written to {args.json}")
    elif args.json:
        report.save(record, args.json)
    if args.plot:
        try:
            report.plot(record, args.plot)
        except ImportError:
            print("--plot needs matplotlib: pip install 'fastpoint[bench]'", file=sys.stderr)
            return 1
        print(f"chart written to {args.plot}")
    return 0


def _list() -> int:
    from ..backends import all_backends
    from .peers import PEERS, why_unavailable
    from .suites import SUITES

    print("suites:")
    for name, layers in SUITES.items():
        print(f"  {name:12s} {len(layers):3d} layers: {', '.join(la.name for la in layers[:4])}"
              + (", ..." if len(layers) > 4 else ""))
    print("backends:")
    for name, backend in all_backends().items():
        print(f"  {name:12s} " + ("available" if backend.available() else f"unavailable: {backend.why_unavailable()}"))
    print("peers (add +conv to a name to time its layout conversions too):")
    for name in PEERS:
        reason = why_unavailable(name)
        print(f"  {name:12s} " + ("available" if reason is None else f"unavailable: {reason}"))
    return 0
