"""Build script for fastkbn's compiled Cython kernels.

All package metadata lives in pyproject.toml; this file only declares the extension modules.
"""
from setuptools import setup

setup()
