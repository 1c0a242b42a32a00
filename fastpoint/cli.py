"""The ``fastpoint`` command: ``info``, ``check`` and ``bench``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from . import __version__
from .core.threads import get_num_threads, set_num_threads


def cmd_info(args: argparse.Namespace) -> int:
    from .backends import all_backends
    from .core import machine

    if getattr(args, "kernels", False):
        from .backends.kernel_table import print_kernels

        print_kernels()
        return 0
    print(f"fastpoint {__version__}")
    print(f"CPU:      {machine.cpu_model()}")
    isa = machine.isa()
    print(f"ISA:      {isa['in_use']} (best supported: {isa['supported']}, from the {isa['source']}; "
          "override with FASTPOINT_ISA)")
    caches = ", ".join(f"L{k} {v // 1024} KiB" for k, v in machine.cache_sizes().items())
    print(f"caches:   {caches}")
    print(f"threads:  {get_num_threads()} (fp.set_num_threads / FASTPOINT_NUM_THREADS)")
    if not getattr(args, "no_measure", False):
        from .bench.measure import print_measured

        print_measured(sorted({1, get_num_threads()}))
    print("backends:")
    for name, backend in all_backends().items():
        status = "available" if backend.available() else f"unavailable: {backend.why_unavailable()}"
        print(f"  {name:6s} {status}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .backends import backends
    from .core.check import full_cases, quick_cases, run_case
    from .core.check_ops import op_cases, run_op_case

    names = [b for b in backends() if b != "numpy"] if not args.backends else args.backends.split(",")
    cases = [(c, run_case) for c in (full_cases() if args.full else quick_cases())]
    cases += [(c, run_op_case) for c in op_cases()]  # conv1d and transposed convolution
    failures = 0
    start = time.perf_counter()
    for backend in names:
        for case, run in cases:
            try:
                ok, diff = run(case, backend)
                detail = "" if ok else f"  max |diff| = {diff:g}"
            except Exception as exc:  # noqa: BLE001 - report and go on with the sweep
                ok, detail = False, f"  {type(exc).__name__}: {exc}"
            failures += not ok
            if args.verbose or not ok:
                print(f"{'PASS' if ok else 'FAIL'}  {backend:6s} {case.name}{detail}")
        print(f"{backend}: {len(cases)} cases checked against the numpy reference")
    took = time.perf_counter() - start
    print(f"{len(names) * len(cases) - failures} passed, {failures} failed ({took:.1f} s)")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastpoint", description="fast CPU convolutions for NumPy")
    parser.add_argument("--version", action="version", version=f"fastpoint {__version__}")
    parser.add_argument("--threads", type=int, default=None, help="threads per call (default: all CPUs)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="version, backends, CPU, ISA, caches, threads, measured peak and bandwidth")
    p.add_argument("--no-measure", action="store_true", help="skip the FMA-peak and bandwidth measurement")
    p.add_argument("--kernels", action="store_true", help="list the kernel tables (fastpoint.kernels()) instead")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("check", help="check every backend against the NumPy reference on this machine")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="the short sweep (default)")
    group.add_argument("--full", action="store_true", help="the exhaustive sweep (minutes)")
    p.add_argument("--backends", default="", help="comma-separated backends (default: all but numpy)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every case, not only failures")
    p.set_defaults(func=cmd_check)

    from .bench.cli import add_parser as add_bench_parser

    add_bench_parser(sub)

    from .network.cli import add_parser as add_run_parser

    add_run_parser(sub)

    from .network.segment import add_parser as add_segment_parser

    add_segment_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from .bench.cli import maybe_reexec

        maybe_reexec(argv)
        args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.threads is not None:
        set_num_threads(args.threads)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
