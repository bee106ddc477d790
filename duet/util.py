"""PySyft's ``syft.util`` helpers that duet keeps: ``from duet.util import get_root_data_path``."""

from __future__ import annotations

import os
from pathlib import Path

from .identity import duet_home

DATA_ROOT_ENV = "DUET_DATA_ROOT"


def get_root_data_path() -> Path:
    """The folder datasets live in on this machine, made if missing: ``$DUET_DATA_ROOT``, or
    ``data`` in the duet home (``~/.duet/data``).

    It is the folder an owner launched here without ``data_root`` reads datasets from. A
    scientist may pass it as a remote dataset's root, as PySyft's tutorials do::

        train = duet.torchvision.datasets.MNIST(str(get_root_data_path()), train=True)

    On the owner's side any absolute path means the owner's own data root: the scientist's
    path never names a file over there.
    """
    root = Path(os.environ.get(DATA_ROOT_ENV) or duet_home() / "data")
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


__all__ = ["get_root_data_path"]
