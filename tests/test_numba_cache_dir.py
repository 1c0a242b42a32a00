"""The Numba kernels cache their machine code per user, never inside the installed package.

Files Numba writes beside the package's sources are unknown to pip: after ``pip install .`` and a
benchmark, ``pip install -e .`` left them in site-packages, where the folder holding them imported
as an empty namespace package and hid the editable install.
"""

import glob
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

import fastpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(fastpoint.__file__))

# one small layer on the Numba backend, checked against the reference
CHILD = r"""
import numpy as np, fastpoint as fp
x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4) % 7
w = (np.arange(4 * 3, dtype=np.float32).reshape(4, 3, 1, 1) % 5) - 2
np.testing.assert_array_equal(fp.conv2d(x, w, backend="numba"), fp.conv2d(x, w, backend="numpy"))
print("ok")
"""


def _numba_files(folder: str) -> set:
    return {p for ext in ("nbi", "nbc") for p in glob.glob(os.path.join(folder, "**", f"*.{ext}"), recursive=True)}


def _run(**env) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_DISABLE_JIT")}
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT,
                         env={**clean, **env}, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "ok"


def test_cache_goes_to_the_user_cache_directory_keyed_by_version(tmp_path):
    before = _numba_files(PACKAGE)
    _run(XDG_CACHE_HOME=str(tmp_path))
    assert _numba_files(PACKAGE) == before, "Numba wrote cache files into the installed package"
    assert _numba_files(str(tmp_path / "fastpoint" / "numba" / fastpoint.__version__))


def _fresh_kernel():
    """A new dispatcher of one of the kernels (no cache yet), so that the real ones stay as they are."""
    from numba import njit

    from fastpoint.backends.numba_kernels import prepare

    return njit(prepare.prepare_nchw.py_func)


def test_numba_cache_dir_is_honoured(tmp_path, monkeypatch):
    from numba import config

    from fastpoint.backends.numba_kernels import cacheload

    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "chosen"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    kernel = _fresh_kernel()
    cacheload.cache_kernels({"kernel": kernel})
    assert kernel._cache._cache_path.startswith(str(tmp_path / "chosen"))


def test_without_a_writable_cache_directory_the_kernels_compile_uncached(tmp_path, monkeypatch):
    from numba import config
    from numba.core.caching import NullCache

    from fastpoint.backends.numba_kernels import cacheload

    blocker = tmp_path / "file"  # a path below a regular file cannot be created, even by root
    blocker.write_text("")
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    kernel = _fresh_kernel()
    cacheload.cache_kernels({"kernel": kernel})
    assert type(kernel._cache) is NullCache  # as an njit without cache=True: compiled in each process
