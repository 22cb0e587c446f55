"""Builds fleche's optional C extension; everything else is in pyproject.toml.

``fleche._transpose`` (the tiled transposing copy of Fortran-order arrays) is
optional: where it cannot be compiled, fleche installs without it and digests
such arrays with numpy, to the same digests, more slowly.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("fleche._transpose", ["fleche/_transpose.c"], optional=True)])
