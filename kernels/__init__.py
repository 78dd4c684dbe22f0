"""Compiled kernels, installed as ``fastkbn.kernels``: Cython sources and Numba modules.

Users never import these modules directly; the backends in ``fastkbn.backends`` wrap them and
validate every input first.
"""
