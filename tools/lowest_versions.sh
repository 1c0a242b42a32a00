#!/usr/bin/env bash
# Test fastpoint with the lowest versions pyproject.toml declares (the ">=" bounds of numpy, numba
# and cffi, installed exactly), in a fresh virtual environment and a copy of the sources
# (build/lowest/), so that neither the normal venv nor the in-place build is touched.  Slow (a few
# minutes of installs, then the tests), so not part of .ci/run; run it when a bound or a use of a
# newer API changes:
#
#   tools/lowest_versions.sh                  # the whole test suite
#   tools/lowest_versions.sh tests/test_x.py  # other pytest arguments
#
# Wheels of the lowest versions must exist for this Python (the bounds were chosen for 3.11).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${FASTPOINT_LOWEST_DIR:-$ROOT/build/lowest}"
PY="${PYTHON:-python3}"

rm -rf "$WORK"
mkdir -p "$WORK"
tar -C "$ROOT" --exclude='*.so' --exclude='__pycache__' --exclude='_cconv.c' \
    -cf - csrc fastpoint tests setup.py pyproject.toml | tar -C "$WORK" -xf -
cd "$WORK"
"$PY" -m venv venv
# shellcheck disable=SC1091
source venv/bin/activate
python -m pip install -q --upgrade pip
# the runtime dependencies with ">=" read as "==" (from pyproject.toml, so the bounds live in one place)
PINS="$(python - <<'PYEOF'
import re
text = open("pyproject.toml").read()
deps = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S).group(1)
print(" ".join(d.replace(">=", "==") for d in re.findall(r'"([^"]+)"', deps)))
PYEOF
)"
echo "lowest_versions: $PINS"
# shellcheck disable=SC2086
pip install -q $PINS "setuptools>=64" wheel pytest pytest-benchmark hypothesis
python setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
python -c "import numpy, numba, cffi, fastpoint; print('numpy', numpy.__version__, 'numba', numba.__version__, \
'cffi', cffi.__version__, 'backends', fastpoint.backends())"
FASTPOINT_REQUIRE_BACKENDS=c,numba python -m pytest -q -p no:cacheprovider "${@:-tests}"
