"""``sy.lib``: the part of PySyft's ``syft.lib`` that duet keeps, ``sy.lib.python``."""

from . import python

__all__ = ["python"]
