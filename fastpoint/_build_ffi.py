"""cffi out-of-line API-mode builder for the C kernels (``fastpoint._cconv``).

Used by ``setup.py`` (``cffi_modules``) at install time.  Build switches, read from the environment:

* ``FASTPOINT_SANITIZE=1``  compile with AddressSanitizer + UndefinedBehaviorSanitizer (testing only);
* ``FASTPOINT_PORTABLE=1``  leave out the x86 ISA kernels (portable C only);
* ``FASTPOINT_THREADS=0``   build without the pthread pool (single-threaded kernels, ``FP_NO_PTHREADS``).

The package is never compiled with ``-march=native``: each ISA kernel file enables its own
instruction set with a target pragma (``#pragma GCC target`` for GCC, ``#pragma clang attribute push``
for clang, which ignores the former), and the one to run is chosen at run time from what the CPU
reports, so a wheel built here runs on any x86-64 CPU (and the portable path on any other).  Unknown
pragmas are not silenced: a target pragma a compiler ignores shows as a warning (tools/clang_check.sh
fails on any).  ``CC=clang`` builds with clang.
"""

from __future__ import annotations

import os
import re
import sys
from glob import glob

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "", "no", "false", "off")


def _cdef() -> str:
    with open(os.path.join(CSRC, "fastpoint.h")) as f:
        text = f.read()
    match = re.search(r"/\* cdef-begin \*/(.*)/\* cdef-end \*/", text, re.S)
    if not match:
        raise RuntimeError("csrc/fastpoint.h lacks the cdef-begin/cdef-end markers")
    return match.group(1)


def _sources() -> list:
    # Relative paths: setuptools wants them relative to the project root, the build's cwd.
    files = sorted(glob(os.path.join(CSRC, "**", "*.c"), recursive=True))
    return [os.path.relpath(f, os.getcwd()) for f in files]


def _flags():
    compile_args = ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-Wall"]
    link_args = []
    macros = []
    if not _flag("FASTPOINT_THREADS", "1"):
        macros.append(("FP_NO_PTHREADS", "1"))
    elif sys.platform.startswith("linux"):
        compile_args.append("-pthread")
        link_args.append("-pthread")
    if _flag("FASTPOINT_SANITIZE", "0"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
        compile_args = [a for a in compile_args if a != "-O3"] + ["-O1", "-g"] + san
        link_args += san
    if _flag("FASTPOINT_PORTABLE", "0"):
        macros.append(("FP_PORTABLE_ONLY", "1"))
    return compile_args, link_args, macros


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
_compile, _link, _macros = _flags()
ffibuilder.set_source(
    "fastpoint._cconv",
    '#include "fastpoint.h"',
    sources=_sources(),
    include_dirs=[CSRC],
    extra_compile_args=_compile,
    extra_link_args=_link,
    define_macros=_macros,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
