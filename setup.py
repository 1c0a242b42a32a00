"""Only the cffi build lives here; the metadata is in pyproject.toml."""
from setuptools import setup

setup(cffi_modules=["fastpoint/_build_ffi.py:ffibuilder"])
