"""``sy.lib``: the part of PySyft's ``syft.lib`` that duet keeps, ``sy.lib.python``; and
``sy.load``, which PySyft's notebooks call before using a library remotely."""

from ..errors import UsageError
from . import python

#: what ``sy.load(name)`` accepts: libraries every duet session has by that name already
#: (``duet.pydp`` maps onto ``duet.privacy``; ``duet.opacus`` refuses, naming its DP job)
BUILT_IN = ("opacus", "pydp", "torchvision")


def load(name: str) -> None:
    """PySyft's ``sy.load("pydp")``: nothing to do in duet, whose sessions have ``pydp``,
    ``opacus`` and ``torchvision`` from the start. Raises UsageError for a library duet does
    not expose (so a notebook stops there, not later on a missing attribute)."""
    if name not in BUILT_IN:
        raise UsageError(
            f"duet has no library {name!r} to load: its sessions expose torch, torchvision, "
            "python, pydp (mapped onto duet.privacy) and opacus (refused, naming "
            "duet.privacy.train); sy.load is needed for none of them"
        )


__all__ = ["BUILT_IN", "load", "python"]
