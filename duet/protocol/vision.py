"""torchvision on the owner's side: the transforms and datasets a scientist may build there.

``duet.torchvision.transforms.Compose([ToTensor(), Normalize(...)])`` builds the transforms on the
owner's side (the scientist holds pointers to them); ``duet.torchvision.datasets.MNIST(root,
train=..., transform=...)`` opens a dataset under the data root the owner configured
(``OwnerSession(data_root=...)``). The scientist picks a folder inside that root, never a path
outside it, and never a download.

These entries are registered whether or not torchvision is installed, because both sides must
hold the same allowlist; torchvision is imported only when an entry runs on the owner's side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from ..errors import NotAllowed, UsageError

if TYPE_CHECKING:
    from types import ModuleType

    from .allowlist import Op

MISSING = "torchvision is not installed on the owner's side; pip install 'duet[vision]'"
TRANSFORMS = ("Compose", "ToTensor", "Normalize")
DATASETS = ("MNIST", "FashionMNIST")
DATASET_KWARGS = frozenset({"root", "train", "transform", "target_transform", "download"})


def _torchvision() -> ModuleType:
    try:
        import torchvision
    except ImportError as exc:
        raise UsageError(MISSING) from exc
    return torchvision


def _transform_classes() -> tuple[type, ...]:
    transforms = _torchvision().transforms
    return tuple(getattr(transforms, name) for name in TRANSFORMS)


def _check_transform(value: Any, what: str) -> None:
    if value is not None and not isinstance(value, _transform_classes()):
        raise NotAllowed(
            f"{what} must be one of duet.torchvision.transforms ({', '.join(TRANSFORMS)}), "
            f"not {type(value).__name__}"
        )


def _compose(transforms: Any) -> Any:
    if not isinstance(transforms, list | tuple):
        raise NotAllowed("Compose takes a list of transforms")
    for transform in transforms:
        _check_transform(transform, "each transform of a Compose")
    return _torchvision().transforms.Compose(list(transforms))


def _to_tensor() -> Any:
    return _torchvision().transforms.ToTensor()


def _normalize(mean: Any, std: Any, inplace: bool = False) -> Any:
    if inplace:
        # it would write into whatever tensor it is applied to, the owner's data included
        raise NotAllowed("Normalize(inplace=True) is not allowed; leave inplace=False")
    for name, value in (("mean", mean), ("std", std)):
        values = value if isinstance(value, list | tuple) else [value]
        if not values or not all(isinstance(v, int | float) for v in values):
            raise NotAllowed(f"Normalize's {name} must be a number or a list of numbers")
    return _torchvision().transforms.Normalize(mean, std)


def dataset_root(root: Any) -> Path:
    """The folder ``root`` names under the owner's data root; NotAllowed anywhere else."""
    from ..owner.context import current

    data_root = current().data_root
    if data_root is None:
        raise NotAllowed(
            "the owner has not configured a data root (OwnerSession(data_root=...)), so no "
            "dataset can be opened"
        )
    if not isinstance(root, str):
        raise NotAllowed(
            f"a dataset root is a folder name under the owner's data root, not {root!r}"
        )
    if PurePath(root).is_absolute():
        raise NotAllowed(
            f"dataset root {root!r} is an absolute path; name a folder under the owner's data root"
        )
    base = data_root.resolve()
    try:
        path = (base / root).resolve()
    except (OSError, ValueError) as exc:
        raise NotAllowed(f"dataset root {root!r} is not a valid folder name") from exc
    if not path.is_relative_to(base):
        raise NotAllowed(f"dataset root {root!r} is outside the owner's data root")
    return path


def _dataset(name: str) -> Callable[..., Any]:
    def open_dataset(
        root: Any = ".",
        train: Any = True,
        transform: Any = None,
        target_transform: Any = None,
        download: Any = False,
    ) -> Any:
        if download:
            raise NotAllowed(
                f"{name}(download=True) is refused: the owner's side opens no network connections; "
                "the owner places the files under its data root"
            )
        if not isinstance(train, bool):
            raise NotAllowed(f"{name}'s train must be True or False")
        path = dataset_root(root)
        _check_transform(transform, "transform")
        _check_transform(target_transform, "target_transform")
        cls = getattr(_torchvision().datasets, name)  # `name` is a fixed entry of DATASETS
        try:
            return cls(
                str(path), train=train, transform=transform, target_transform=target_transform
            )
        except RuntimeError as exc:  # torchvision's "Dataset not found"
            raise UsageError(
                f"the {name} files are not in the owner's data root under {root!r} (the owner "
                f"places them in {name}/raw/ there)"
            ) from exc

    return open_dataset


def _call_transform(transform: Any, *args: Any) -> Any:
    return transform(*args)


def _dataset_kind(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    return "Dataset", {"fields": 2}  # (image, target) pairs


def register_vision(functions: dict[str, Op], tables: dict[str, dict[str, Op]]) -> None:
    """Add the torchvision entries to the allowlist tables (the same with or without torchvision)."""
    from .allowlist import Op

    prefix = "torchvision.transforms."
    functions[prefix + "Compose"] = Op(
        prefix + "Compose", "function", "Transform", impl=_compose, kwargs=frozenset({"transforms"})
    )
    functions[prefix + "ToTensor"] = Op(
        prefix + "ToTensor", "function", "Transform", impl=_to_tensor, kwargs=frozenset()
    )
    functions[prefix + "Normalize"] = Op(
        prefix + "Normalize",
        "function",
        "Transform",
        impl=_normalize,
        kwargs=frozenset({"mean", "std", "inplace"}),
    )
    for name in DATASETS:
        path = f"torchvision.datasets.{name}"
        functions[path] = Op(
            path,
            "function",
            _dataset_kind,
            impl=_dataset(name),
            kwargs=DATASET_KWARGS,
            owner_data=True,  # read from the owner's files: private, however it was asked for
        )
    tables["Transform"] = {
        "__call__": Op("Transform.__call__", "method", "Tensor", False, _call_transform),
    }
