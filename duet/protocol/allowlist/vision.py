"""torchvision on the owner's side: the transforms and datasets a scientist may build there.

``duet.torchvision.transforms.Compose([ToTensor(), Normalize(...)])`` builds the transforms on the
owner's side (the scientist holds pointers to them); ``duet.torchvision.datasets.MNIST(root,
train=..., transform=...)`` opens a dataset under the owner's data root. This module describes
the entries; opening the owner's files is bound on the owner's side (duet/owner/datasets.py).

These entries are registered whether or not torchvision is installed, because both sides must
hold the same allowlist; torchvision is imported only when an entry runs on the owner's side.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import cast

from ...errors import NotAllowed, UsageError
from .facts import Alias, Meta, Op

MISSING = "torchvision is not installed on the owner's side; pip install 'duet[vision]'"
TRANSFORMS = ("Compose", "ToTensor", "Normalize", "Resize", "CenterCrop")
MAX_IMAGE_SIDE = 512  # Resize / CenterCrop: a batch of such images stays a few hundred MB
DATASETS = ("MNIST", "FashionMNIST")
DATASET_KWARGS = frozenset({"root", "train", "transform", "target_transform", "download"})


def torchvision_module() -> ModuleType:
    try:
        import torchvision
    except ImportError as exc:
        raise UsageError(MISSING) from exc
    return torchvision


def _transform_classes() -> tuple[type, ...]:
    transforms = torchvision_module().transforms
    return tuple(getattr(transforms, name) for name in TRANSFORMS)


def check_transform(value: object, what: str) -> None:
    if value is not None and not isinstance(value, _transform_classes()):
        raise NotAllowed(
            f"{what} must be one of duet.torchvision.transforms ({', '.join(TRANSFORMS)}), "
            f"not {type(value).__name__}"
        )


def _compose(transforms: object) -> object:
    if not isinstance(transforms, list | tuple):
        raise NotAllowed("Compose takes a list of transforms")
    for transform in transforms:
        check_transform(transform, "each transform of a Compose")
    return torchvision_module().transforms.Compose(list(transforms))


def _to_tensor() -> object:
    return torchvision_module().transforms.ToTensor()


def _normalize(mean: object, std: object, inplace: bool = False) -> object:
    if inplace:
        # it would write into whatever tensor it is applied to, the owner's data included
        raise NotAllowed("Normalize(inplace=True) is not allowed; leave inplace=False")
    for name, value in (("mean", mean), ("std", std)):
        values = value if isinstance(value, list | tuple) else [value]
        if not values or not all(isinstance(v, int | float) for v in values):
            raise NotAllowed(f"Normalize's {name} must be a number or a list of numbers")
    return torchvision_module().transforms.Normalize(mean, std)


def _image_size(name: str, size: object) -> list[int]:
    sides: list[object] = list(size) if isinstance(size, list | tuple) else [size]
    if not 1 <= len(sides) <= 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in sides
    ):
        raise NotAllowed(
            f"{name}'s size must be a whole number of pixels from 1 to {MAX_IMAGE_SIDE}, or a "
            f"pair of them (height, width), not {size!r}"
        )
    return cast("list[int]", sides)  # each checked above: a whole number of pixels


def _resize(size: object) -> object:
    return torchvision_module().transforms.Resize(_image_size("Resize", size))


def _center_crop(size: object) -> object:
    return torchvision_module().transforms.CenterCrop(_image_size("CenterCrop", size))


def _owner_side(*args: object, **kwargs: object) -> object:
    """Stands for an op the owner binds to its implementation (duet/owner/datasets.py)."""
    raise NotAllowed("this operation runs only on the owner's side")


def _call_transform(transform: Callable[..., object], *args: object) -> object:
    return transform(*args)


def _dataset_kind(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return "Dataset", {"fields": 2}  # (image, target) pairs


_TRANSFORMS = "torchvision.transforms."


def _transform(
    name: str, impl: Callable[..., object], kwargs: frozenset[str], *, aliases: Alias | None = None
) -> Op:
    return Op(_TRANSFORMS + name, "function", "Transform", impl=impl, kwargs=kwargs,
              size="nothing", aliases=aliases)  # fmt: skip


# the same with or without torchvision: both sides hold the same allowlist
FUNCTIONS: dict[str, Op] = {
    # a Compose holds the transforms it was given
    _TRANSFORMS + "Compose": _transform("Compose", _compose, frozenset({"transforms"}),
                                        aliases="args"),
    _TRANSFORMS + "ToTensor": _transform("ToTensor", _to_tensor, frozenset()),
    _TRANSFORMS + "Normalize": _transform("Normalize", _normalize,
                                          frozenset({"mean", "std", "inplace"})),
    _TRANSFORMS + "Resize": _transform("Resize", _resize, frozenset({"size"})),
    _TRANSFORMS + "CenterCrop": _transform("CenterCrop", _center_crop, frozenset({"size"})),
    **{
        f"torchvision.datasets.{name}": Op(
            f"torchvision.datasets.{name}",
            "function",
            _dataset_kind,
            impl=_owner_side,  # the owner binds it: opening its files is the owner's concern
            kwargs=DATASET_KWARGS,
            owner_data=True,  # read from the owner's files: private, however it was asked for
            aliases="args",  # it holds its transforms
            size="nothing",
        )
        for name in DATASETS
    },
}  # fmt: skip
# a transform's result is bounded by MAX_IMAGE_SIDE, and charged once made
TRANSFORM: dict[str, Op] = {
    "__call__": Op("Transform.__call__", "method", "Tensor", False, _call_transform,
                   aliases="args", size="nothing"),
}  # fmt: skip
