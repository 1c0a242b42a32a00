# Sourced by tools/sanitize.sh and tools/clang_check.sh: build the C extension in a copy of the tree, so
# that the normal in-place build is untouched, and check that Python imports that copy.
#   copy_build DIR [VAR=value ...]   copy csrc/, fastpoint/, tests/ and the build files to DIR, cd there and
#                                    build in place with the given environment (build log: DIR/build.log)
copy_build() {
    local work="$1"
    shift
    rm -rf "$work"
    mkdir -p "$work"
    # the sources only: no compiled extension, caches or build outputs of the main tree
    tar -C "$ROOT" --exclude='*.so' --exclude='__pycache__' --exclude='_cconv.c' \
        -cf - csrc fastpoint tests setup.py pyproject.toml | tar -C "$work" -xf -
    cd "$work"
    env "$@" "$PY" setup.py -q build_ext --inplace --force >build.log 2>&1 || { cat build.log; exit 1; }
    # the copy must be what the tests import (not an installed or editable fastpoint)
    "$PY" -c "import importlib.util as u, os, sys; o = os.path.realpath(u.find_spec('fastpoint').origin); \
sys.exit(not o.startswith(os.path.realpath('$work') + os.sep))" \
        || { echo "$(basename "$0"): python imports another fastpoint than $work" >&2; exit 1; }
}
