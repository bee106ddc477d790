"""Owner settings that allowlisted operations may read while they run (e.g. the data root).

The PeerService sets them on its worker thread; operations read them through ``current()``.
They come from the owner's configuration, never from the scientist.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True)
class OwnerSettings:
    data_root: Path | None = None


_local = threading.local()


def set_current(settings: OwnerSettings) -> None:
    _local.settings = settings


def current() -> OwnerSettings:
    settings = getattr(_local, "settings", None)
    if settings is None:
        raise UsageError("owner settings are only available while the owner runs an action")
    return settings
