"""What the owner is told when its session opens and when a scientist joins: the lines
``launch_duet`` prints, for one scientist or for many, made from plain values (the pairing
steps around them are network.py's)."""

from __future__ import annotations

from .text import shown

MARK = "♫♫♫ > "


def owner_opened(
    *,
    session_id: str,
    owner_id: str,
    data_root: str,
    url: str,
    started_server: bool,
    loopback: bool,
    max_scientists: int | None,
) -> list[str]:
    """The lines an owner reads once its session is open. ``max_scientists``: None when the
    session takes one scientist and stops (launch_duet's default), else how many at once."""
    one = max_scientists is None
    lines = []
    if started_server:
        lines.append(f"started a signaling server for this session at {url}")
    lines += [
        f"duet session ID: {session_id}",
        f"your owner ID: {owner_id}",
        f"datasets scientists open are read from {data_root}",
    ]
    who = "the scientist runs" if one else "scientists run"
    if loopback:
        lines.append(f"on this machine, {who}: duet = sy.join_duet(loopback=True)")
    else:
        ask = "ask the scientist to run" if one else "scientists run"
        lines.append(
            f'{ask}: duet = sy.join_duet("{session_id}", signaling_url="{url}", '
            f'owner_id="{owner_id}")'
        )
    if one:
        lines.append("waiting for the scientist to join...")
    else:
        lines.append(f"serving up to {max_scientists} scientists at once until closed")
    return [MARK + line for line in lines]


def scientist_connected(scientist_id: str, name: str = "") -> str:
    """The line saying a scientist joined (``name``: the owner's name for it, or its claim)."""
    return f"{MARK}connected to scientist {scientist_id}" + (f": {shown(name)}" if name else "")
