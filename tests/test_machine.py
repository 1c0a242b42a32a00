"""fastpoint.core.machine: one answer for ISA and cache sizes, with or without the C extension."""

import os
import subprocess
import sys

import pytest

from fastpoint.core import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("flags, want", [
    (set(), "scalar"),
    ({"sse2", "avx"}, "scalar"),
    ({"avx2"}, "scalar"),  # AVX2 without FMA: csrc/cpu.c runs the portable C
    ({"avx2", "fma"}, "avx2"),
    ({"avx2", "fma", "avx512f"}, "avx2"),  # AVX-512 needs F, VL, BW and DQ
    ({"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"}, "avx512"),
])
def test_isa_from_cpu_flags(flags, want):
    assert machine.detected_isa(frozenset(flags)) == want


def test_python_detection_agrees_with_the_c_extension():
    from fastpoint.backends.c import lib

    if lib is None or not os.path.exists("/proc/cpuinfo"):
        pytest.skip("needs the C extension and /proc/cpuinfo")
    assert machine.isa()["supported"] == machine.detected_isa()
    sizes = machine.cache_sizes()
    assert set(sizes) == {1, 2, 3} and all(v > 0 for v in sizes.values())


def _without_c(code: str, **env) -> str:
    full = {k: v for k, v in os.environ.items() if k != "FASTPOINT_ISA"}
    res = subprocess.run([sys.executable, "-c", "import sys; sys.modules['fastpoint._cconv'] = None\n" + code],
                         capture_output=True, text=True, cwd=ROOT, env={**full, **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_without_the_c_extension_the_answer_comes_from_python():
    out = _without_c("from fastpoint.core import machine\n"
                     "i = machine.isa(); s = machine.cache_sizes()\n"
                     "assert i['in_use'] == i['supported'] == machine.detected_isa(), i\n"
                     "assert i['source'] != 'C extension', i\n"
                     "assert set(s) == {1, 2, 3} and all(v > 0 for v in s.values()), s\n"
                     "print('ok')")
    assert out == "ok"


def test_fastpoint_isa_lowers_the_python_answer_as_it_lowers_the_c_one():
    out = _without_c("from fastpoint.core import machine\nprint(machine.isa()['in_use'])", FASTPOINT_ISA="scalar")
    assert out == "scalar"
