"""PySyft's one call, ``sy.duet()``: launch a duet as the owner (launch.py) or join one as the
scientist (join.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError
from .join import join_duet
from .launch import launch_duet
from .pairing import loopback as loopback_pairing
from .sessions.owner import OwnerSession
from .sessions.scientist import ScientistSession


def loopback_file() -> Path:
    """Where an owner started with ``loopback=True`` leaves its address for a local scientist."""
    return loopback_pairing.loopback_file()


def duet(
    target_id: str | None = None,
    logging: bool = True,
    network_url: str | None = None,
    loopback: bool = False,
    db_path: str | Path | None = None,
    **options: Any,  # Any: passed on to launch_duet or join_duet, which check each
) -> OwnerSession | ScientistSession:
    """PySyft's one call: with no ID, launch a duet as the owner; with one, join it.

    ``sy.duet()`` is ``launch_duet()``, ``sy.duet(loopback=True)`` is
    ``launch_duet(loopback=True)``, ``sy.duet("<session id>")`` is ``join_duet("<session id>")``
    (the scientist on this machine joins a loopback owner with ``sy.join_duet(loopback=True)``,
    as in PySyft). ``network_url`` is the signaling server's URL; ``logging`` and ``db_path``
    mean what they mean to ``launch_duet``; other keyword arguments go to the call made.

    Raises what ``launch_duet`` or ``join_duet`` raise; UsageError for ``db_path`` when
    joining (it is the owner's).
    """
    if target_id is None:
        return launch_duet(
            network_url=network_url, loopback=loopback, logging=logging, db_path=db_path, **options
        )
    if db_path is not None:
        raise UsageError("db_path is for launching a duet (the owner's); joining takes none")
    return join_duet(target_id, network_url=network_url, loopback=loopback, **options)


__all__ = ["duet", "join_duet", "launch_duet", "loopback_file"]
