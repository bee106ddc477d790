"""The owner's files a node publishes: tensors from .pt, .npy and .csv, image folders.

These are the owner's own files, read once at start; still, nothing here runs code from a file:
``.pt`` is read with ``weights_only=True`` (tensors and plain containers only), ``.npy`` without
pickles (numbers only), CSV through pandas into numbers (a column that is not numeric is an
error naming it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import ConfigError
from .config import PublishConfig

FORMATS = {".pt": "pt", ".pth": "pt", ".npy": "npy", ".csv": "csv"}
# what a node publishes from a file: a tensor, or a dataset (of rows, of images)
Publication = torch.Tensor | Dataset[object]


def load_publication(entry: PublishConfig, base: Path) -> Publication:
    """The value ``entry`` describes; ``base``: the config file's folder (relative paths)."""
    path = Path(entry.path).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise ConfigError(f"no such file or folder: {path}")
    kind = entry.format or ("imagefolder" if path.is_dir() else FORMATS.get(path.suffix.lower()))
    if kind is None:
        raise ConfigError(
            f"cannot tell how to read {path.name}: give format = one of pt, npy, csv, imagefolder"
        )
    if entry.target is not None and kind != "csv":
        raise ConfigError("target names a CSV column; it means nothing for a " + kind)
    readers: dict[str, Callable[[Path, PublishConfig], Publication]]
    readers = {"pt": _pt, "npy": _npy, "csv": _csv, "imagefolder": _images}
    return readers[kind](path, entry)


def _pt(path: Path, entry: PublishConfig) -> torch.Tensor | TensorDataset:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read {path.name} as tensors: {exc}") from None
    if isinstance(value, torch.Tensor):
        return value
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(t, torch.Tensor) for t in value)
    ):
        return TensorDataset(*value)  # (features, labels, ...)
    raise ConfigError(
        f"{path.name} holds a {type(value).__name__}; publish a tensor or a tuple of tensors "
        "(a dataset of their rows)"
    )


def _npy(path: Path, entry: PublishConfig) -> torch.Tensor:
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f"cannot read {path.name} as a numeric array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise ConfigError(f"{path.name} holds {array.dtype} values; only numbers are published")
    return torch.from_numpy(array.copy())


def _csv(path: Path, entry: PublishConfig) -> torch.Tensor | TensorDataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise ConfigError(f"cannot read {path.name} as CSV: {exc}") from None
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ConfigError(f"column {column!r} of {path.name} is not numeric")
    if entry.target is None:
        return torch.tensor(frame.to_numpy(dtype="float32"))
    if entry.target not in frame.columns:
        raise ConfigError(f"{path.name} has no column {entry.target!r} (target)")
    labels = frame.pop(entry.target)
    features = torch.tensor(frame.to_numpy(dtype="float32"))
    if pd.api.types.is_integer_dtype(labels):
        target = torch.tensor(labels.to_numpy(dtype="int64"))
    else:
        target = torch.tensor(labels.to_numpy(dtype="float32"))
    return TensorDataset(features, target)


def _images(path: Path, entry: PublishConfig) -> Dataset[object]:
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise ConfigError(
            "publishing an image folder needs torchvision: pip install 'duet[vision]'"
        ) from None
    steps: list[Callable[..., object]] = []  # torchvision's transforms
    if entry.grayscale:
        steps.append(transforms.Grayscale())
    if entry.image_size is not None:
        if len(entry.image_size) != 2:
            raise ConfigError("image_size is [height, width]")
        steps.append(transforms.Resize(tuple(entry.image_size)))
    steps.append(transforms.ToTensor())
    try:
        return datasets.ImageFolder(str(path), transform=transforms.Compose(steps))
    except Exception as exc:  # no class folders, no images
        raise ConfigError(f"cannot read {path} as an image folder: {exc}") from None
