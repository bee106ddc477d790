"""What a serving node prints: one line per event of its audit log, as it happens."""

from __future__ import annotations

import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

STYLES = {"connect": "green", "leave": "cyan", "refused": "red", "request": "yellow",
          "decision": "bold", "release": "magenta", "node": "blue"}  # fmt: skip
STATUS_STYLES = {"accepted": "green", "denied": "red", "timed_out": "red"}


def who(event: dict[str, Any]) -> str:
    scientist, name = event.get("scientist", ""), event.get("name", "")
    return f"{name} ({scientist})" if name and scientist else scientist or name


def describe(event: dict[str, Any]) -> str:
    """One event of the audit log as a line for a person (markup escaped: scientists choose
    names and request texts)."""
    kind = event["kind"]
    scientist = escape(who(event))
    if kind == "connect":
        return f"{scientist} connected"
    if kind == "leave":
        return f"{scientist} left ({escape(str(event.get('reason', '')))})"
    if kind == "refused":
        return f"refused {scientist}: {escape(str(event.get('reason', '')))}"
    if kind == "request":
        name = escape(str(event.get("request_name") or event.get("reason") or ""))
        size = event.get("elements")
        what = f" ({size} elements)" if size is not None else ""
        return f"{scientist} asks for {name!s}{what} [dim]{escape(event.get('request', ''))}[/]"
    if kind == "decision":
        status = str(event.get("status", ""))
        style = STATUS_STYLES.get(status, "")
        name = escape(str(event.get("request_name", "")))
        by = escape(str(event.get("decided_by", "")))
        return (
            f"[{style}]{status}[/] {name!r} for {scientist} by {by}"
            if style
            else (f"{status} {name!r} for {scientist} by {by}")
        )
    if kind == "release":
        nbytes = event.get("nbytes") or 0
        what = f"{nbytes} bytes" if nbytes else f"a {escape(str(event.get('value_kind', 'value')))}"
        digest = str(event.get("digest", ""))[:16]
        return f"released {what} to {scientist} [dim]sha256 {digest}[/]"
    if kind == "node":
        return escape(str(event.get("state", "")))
    return escape(f"{kind} {scientist}")


class EventLog:
    """An audit listener printing each event on ``console``."""

    def __init__(self, console: Console):
        self.console = console

    def __call__(self, event: dict[str, Any]) -> None:
        stamp = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
        style = STYLES.get(event["kind"], "")
        label = f"[{style}]{event['kind']:<8}[/]" if style else f"{event['kind']:<8}"
        self.console.print(f"[dim]{stamp}[/] {label} {describe(event)}", highlight=False)
