"""The pairing arguments both calls take under two names, duet's and PySyft's (``network_url``
is ``signaling_url``, ``target_id`` is ``session_id``): read once here, so ``launch_duet`` and
``join_duet`` agree on what a URL or an alias means."""

from __future__ import annotations

from typing import TypeVar

from ..errors import UsageError
from .signaling import websocket_url

T = TypeVar("T")


def pysyft_alias(name: str, value: T | None, alias: str, alias_value: T | None) -> T | None:
    """``value``, or the same thing under PySyft's name; UsageError if both disagree."""
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise UsageError(
            f"{name}={value!r} and {alias}={alias_value!r} disagree ({alias} is PySyft's name "
            f"for {name}); pass one of them"
        )
    return alias_value


def signaling_url_argument(url: object, network_url: str | None, call: str) -> str | None:
    """The signaling server's URL from ``call``'s arguments (PySyft's ``network_url`` was
    ``http://host:port``: read as ``ws://``, as ``signaling_url`` is). UsageError for a
    positional argument that is not a URL (PySyft's other arguments, passed in its order)."""
    if url is not None and not isinstance(url, str):
        raise UsageError(
            f"{call}'s second argument is the signaling server's URL, not {url!r}; pass "
            "PySyft's other arguments by name"
            if call == "join_duet"
            else f"{call}'s first argument is the signaling server's URL, not {url!r}; pass "
            "PySyft's logging= by name"
        )
    given = None if url is None else websocket_url(url)
    alias = None if not network_url else websocket_url(network_url)
    return pysyft_alias("signaling_url", given, "network_url", alias)


__all__ = ["pysyft_alias", "signaling_url_argument"]
