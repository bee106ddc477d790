"""Datasets a scientist opens from the owner's files: always under the owner's data root.

The allowlist describes ``torchvision.datasets.MNIST`` and its kind; this module gives it its
implementation on the owner's side (``bind``, run when the owner's executor is imported).

Where the files are: the root a scientist names is a place inside the owner's data root,
whatever it looks like on the scientist's machine. A plain relative folder (``"mnist"``) is
that folder under the data root; an absolute path (the scientist's own ``get_root_data_path()``)
or one that climbs (``"../data"``) means the data root itself. Nothing outside the data root is
ever opened, and nothing is ever downloaded: ``download=True`` reads what the owner placed
there (and says so in the owner's log); files that are not there are a clear error naming the
owner's data root and where the files go.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path, PurePath

from ..errors import NotAllowed, UsageError
from ..protocol import allowlist
from ..protocol.allowlist import vision
from .context import current

log = logging.getLogger(__name__)


def dataset_root(root: object) -> Path:
    """The folder ``root`` names inside the owner's data root."""
    data_root = current().data_root
    if data_root is None:
        raise NotAllowed("the owner has no data root, so no dataset can be opened")
    if not isinstance(root, str):
        raise NotAllowed(f"a dataset root is a folder name, not {root!r}")
    base = data_root.resolve()
    given = PurePath(root)
    if given.is_absolute() or ".." in given.parts or root.strip() in ("", "."):
        return base  # a path on the scientist's machine means nothing here: the data root
    try:
        path = (base / given).resolve()
    except (OSError, ValueError) as exc:
        raise NotAllowed(f"dataset root {root!r} is not a valid folder name") from exc
    return path if path.is_relative_to(base) else base  # a link leading out: the root itself


def _dataset(name: str) -> Callable[..., object]:
    # what the scientist sent: checked here before anything is opened
    def open_dataset(
        root: object = ".",
        train: object = True,
        transform: object = None,
        target_transform: object = None,
        download: object = False,
    ) -> object:
        if not isinstance(train, bool):
            raise NotAllowed(f"{name}'s train must be True or False")
        path = dataset_root(root)
        vision.check_transform(transform, "transform")
        vision.check_transform(target_transform, "target_transform")
        if download:
            log.info("%s(download=True): reading the files already in %s, downloading nothing",
                     name, path)  # fmt: skip
        cls = getattr(
            vision.torchvision_module().datasets, name
        )  # `name` is a fixed entry of DATASETS
        try:
            return cls(
                str(path), train=train, transform=transform, target_transform=target_transform
            )
        except RuntimeError as exc:  # torchvision's "Dataset not found"
            raise UsageError(
                f"the {name} files are not in the owner's data root {current().data_root}: the "
                f"owner places them in {path / name / 'raw'} (the owner's side downloads nothing)"
            ) from exc

    return open_dataset


def bind() -> None:
    """Give the dataset entries of the allowlist their owner-side implementation."""
    for name in vision.DATASETS:
        path = f"torchvision.datasets.{name}"
        allowlist.FUNCTIONS[path] = dataclasses.replace(
            allowlist.FUNCTIONS[path], impl=_dataset(name)
        )


bind()
