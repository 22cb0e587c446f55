"""The version of this fleche, at the bottom of the package so that every layer may name it."""

__version__ = "0.1.0"
