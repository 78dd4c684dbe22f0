"""Build script for fastkbn's compiled Cython kernels.

All package metadata lives in pyproject.toml; this file only declares the extension modules.
Cython and NumPy are imported here, so they must be installed first: pyproject.toml lists them
as build requirements, which pip installs in an isolated build environment.
"""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# -O3 without -ffast-math or -march=native. The kernels must keep IEEE semantics, because NaN
# and inf must reach the training loop's divergence check. The built package must also run on
# CPUs other than the one that built it.
COMPILE_ARGS = ["-O3"]

extensions = [
    Extension(
        "fastkbn.kernels._cykernels",
        sources=["kernels/_cykernels.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=COMPILE_ARGS,
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
