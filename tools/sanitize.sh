#!/usr/bin/env bash
# Build the C extension with AddressSanitizer + UndefinedBehaviorSanitizer in a separate copy of the
# tree (build/sanitize/, so the normal in-place build is untouched) and run the C backend's
# correctness sweep and guard tests under it.  Any out-of-bounds access, use-after-free or undefined
# behaviour in a kernel aborts the run with a report and a non-zero exit status.
#
#   tools/sanitize.sh                 # sweep, guards (96 threads included), every kernel-table row
#                                     # forced (test_kernels), property, numerics, API, invalid,
#                                     # concurrency tests on the C backend; then sweep + property at
#                                     # avx2, scalar
#   tools/sanitize.sh tests/test_x.py # other pytest arguments instead of the default selection
#
# Needs gcc with the sanitizer runtimes (clang: CC=clang and ASAN_RT, see below; untested here).
# Python itself is not built with ASan, so the runtime is preloaded (LD_PRELOAD) ahead of
# everything else.  pytest captures at the
# sys level only (--capture=sys) so that a sanitizer report, written to fd 2, is not swallowed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${FASTPOINT_SANITIZE_DIR:-$ROOT/build/sanitize}"
PY="${PYTHON:-python3}"
CC="${CC:-gcc}"
export CC

source "$ROOT/tools/_copy_build.sh"
copy_build "$WORK" FASTPOINT_SANITIZE=1

# clang names its runtime differently: ASAN_RT=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
ASAN_RT="${ASAN_RT:-$("$CC" -print-file-name=libasan.so)}"
[ -f "$ASAN_RT" ] || { echo "sanitize: no libasan.so from $CC -print-file-name" >&2; exit 1; }
# The extension must really be built with the sanitizers.
LINKED="$(ldd fastpoint/_cconv*.so)"  # (not piped into grep -q: with pipefail, ldd's SIGPIPE would fail it)
if [[ "$LINKED" != *libasan* ]]; then
    echo "sanitize: fastpoint/_cconv is not linked with libasan (FASTPOINT_SANITIZE ignored?)" >&2
    exit 1
fi

# detect_leaks=0: CPython and NumPy keep allocations alive on purpose at exit.
# new/delete and malloc checks stay on; the first error aborts the process (non-zero status).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export FASTPOINT_TEST_BACKENDS=c   # Numba's LLVM code and NumPy are not under test here
export PYTHONDONTWRITEBYTECODE=1
run() {
    LD_PRELOAD="$ASAN_RT${LD_PRELOAD:+ $LD_PRELOAD}" "$PY" -m pytest -q -p no:cacheprovider --capture=sys \
        -m "not slow" "$@"
}
echo "sanitize: $(grep -oE 'lib(a|ub)san[^ ]*' <<<"$LINKED" | sort -u | tr '\n' ' ')in $WORK"
if [ $# -gt 0 ]; then
    run "$@"
    exit
fi
run tests/test_sweep.py tests/test_guards.py tests/test_kernels.py tests/test_property.py tests/test_numerics.py \
    tests/test_api.py tests/test_invalid.py tests/test_concurrency.py
# the lower ISA paths (test_guards already switches ISA in-process; this runs them via the public API)
for isa in ${FASTPOINT_SANITIZE_ISAS:-avx2 scalar}; do
    echo "sanitize: FASTPOINT_ISA=$isa"
    FASTPOINT_ISA=$isa run tests/test_sweep.py tests/test_property.py
done
