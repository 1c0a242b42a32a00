"""pytest-benchmark suites for fastpoint: ``pytest bench/ --benchmark-only``.

pyproject.toml's ``addopts`` carry ``--benchmark-disable`` so that plain ``pytest`` (which collects
only ``tests/``) never spends time timing.  pytest-benchmark refuses ``--benchmark-only`` next to
``--benchmark-disable``, so asking for ``--benchmark-only`` here turns benchmarking back on, exactly
as ``--benchmark-enable`` would.

Environment knobs (the same layer table as ``fastpoint bench``, fastpoint/bench/suites.py):
``FASTPOINT_BENCH_SUITE`` (default ``all``), ``FASTPOINT_BENCH_THREADS`` (default: fastpoint's thread
count), ``FASTPOINT_BENCH_LAYOUT`` (``NCHW``), ``FASTPOINT_BENCH_PEERS`` (comma-separated, default:
every importable peer, ``none`` for none), ``FASTPOINT_BENCH_CONVERSIONS=1`` (peers convert from and to
the layout, timed; see ``fastpoint bench --conversions``).
"""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if config.getoption("benchmark_only", False) and config.getoption("benchmark_disable", False):
        config.option.benchmark_enable = True
