#!/usr/bin/env bash
# Build the C extension with clang in a copy of the tree (build/clang/, so the normal build is
# untouched) and run the C kernel tests on it: every kernel-table row forced (test_kernels), the GEMM,
# direct and depthwise edge cases, the guard tests, and the sweep at each lower ISA.
#
#   tools/clang_check.sh                  # the selection above
#   tools/clang_check.sh tests/test_x.py  # other pytest arguments instead
#
# Fails on any compiler warning: clang ignores `#pragma GCC target`, and an ignored target pragma
# (an "unknown pragma" warning) would leave a kernel file without its ISA.  Needs clang
# (apt-get install -y clang).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${FASTPOINT_CLANG_DIR:-$ROOT/build/clang}"
PY="${PYTHON:-python3}"
CLANG="${CLANG:-clang}"
command -v "$CLANG" >/dev/null || { echo "clang_check: no $CLANG (apt-get install -y clang)" >&2; exit 1; }

source "$ROOT/tools/_copy_build.sh"
copy_build "$WORK" CC="$CLANG" LDSHARED="$CLANG -shared"

if grep -E "warning:|error:" build.log; then
    echo "clang_check: the clang build warns (above)" >&2
    exit 1
fi
SO="$(ls fastpoint/_cconv*.so)"
COMMENT="$(readelf -p .comment "$SO")"  # (no pipe into grep -q: with pipefail, SIGPIPE would fail it)
[[ "$COMMENT" == *clang* ]] || { echo "clang_check: $SO was not compiled by clang" >&2; exit 1; }
# the ISA kernels really hold their instructions (an ignored target pragma would not even compile them)
DISASM="$(objdump -d "$SO")"
case "$(uname -m)" in x86_64) [[ "$DISASM" == *zmm* && "$DISASM" == *ymm* ]] \
    || { echo "clang_check: no AVX-512 / AVX2 code in $SO" >&2; exit 1; } ;; esac

export FASTPOINT_TEST_BACKENDS=c PYTHONDONTWRITEBYTECODE=1
run() { "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "$@"; }
echo "clang_check: $("$CLANG" --version | head -1), in $WORK"
if [ $# -gt 0 ]; then
    run "$@"
    exit
fi
run tests/test_kernels.py tests/test_gemm.py tests/test_direct.py tests/test_dwconv.py tests/test_guards.py \
    tests/test_sweep.py
for isa in avx2 scalar; do
    echo "clang_check: FASTPOINT_ISA=$isa"
    FASTPOINT_ISA=$isa run tests/test_sweep.py
done
