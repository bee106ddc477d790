"""What a serving node prints: one line per event of its audit log, as it happens."""

from __future__ import annotations

import datetime
import time

from rich.console import Console
from rich.markup import escape

from ..display import quoted, shown

STYLES = {"connect": "green", "leave": "cyan", "refused": "red", "request": "yellow",
          "decision": "bold", "release": "magenta", "node": "blue", "waiting": "bold yellow",
          "expiring": "bold red"}  # fmt: skip
STATUS_STYLES = {"accepted": "green", "denied": "red", "timed_out": "red"}


def who(event: dict[str, object]) -> str:
    scientist, name = shown(event.get("scientist", "")), shown(event.get("name", ""))
    return f"{name} ({scientist})" if name and scientist else scientist or name


def describe(event: dict[str, object]) -> str:
    """One event of the audit log as one line for a person. Whatever a scientist chose (its
    claimed name, a request's name and reason, a reason it gave for leaving) is shown as data:
    quoted, control characters escaped, markup escaped (display.shown)."""
    kind = event["kind"]
    scientist = escape(who(event))
    if kind == "connect":
        return f"{scientist} connected"
    if kind == "leave":
        return f"{scientist} left ({escape(shown(event.get('reason', '')))})"
    if kind == "refused":
        return f"refused {scientist}: {escape(shown(event.get('reason', '')))}"
    if kind == "request":
        name = escape(quoted(event.get("request_name") or event.get("reason") or ""))
        size = event.get("elements")
        what = f" ({size} elements)" if size is not None else ""
        return (
            f"{scientist} asks for {name}{what} [dim]{escape(shown(event.get('request', '')))}[/]"
        )
    if kind == "decision":
        status = shown(event.get("status", ""))
        style = STATUS_STYLES.get(status, "")
        name = escape(quoted(event.get("request_name", "")))
        by = escape(shown(event.get("decided_by", "")))
        return (
            f"[{style}]{status}[/] {name} for {scientist} by {by}"
            if style
            else (f"{status} {name} for {scientist} by {by}")
        )
    if kind == "release":
        nbytes = event.get("nbytes") or 0
        what = (
            f"{nbytes} bytes" if nbytes else f"a {escape(shown(event.get('value_kind', 'value')))}"
        )
        digest = shown(event.get("digest", ""))[:16]
        return f"released {what} to {scientist} [dim]sha256 {digest}[/]"
    if kind == "node":
        return escape(shown(event.get("state", "")))
    return escape(f"{shown(kind)} {who(event)}")


class EventLog:
    """An audit listener printing each event on ``console``."""

    def __init__(self, console: Console):
        self.console = console

    def __call__(self, event: dict[str, object]) -> None:
        when, kind = event["time"], event["kind"]  # the audit log writes both
        if not isinstance(when, int | float) or not isinstance(kind, str):
            raise TypeError(f"an audit event has a time and a kind, not {when!r}, {kind!r}")
        self._line(when, kind, describe(event))

    def notice(self, kind: str, text: str) -> None:
        """A notice about a request waiting for the owner (notices.RequestNotices' ``say``):
        ``text`` is plain (what the scientist chose in it shown as data); markup is escaped."""
        self._line(time.time(), kind, escape(text))

    def _line(self, when: float, kind: str, text: str) -> None:
        stamp = datetime.datetime.fromtimestamp(when).strftime("%H:%M:%S")
        style = STYLES.get(kind, "")
        label = f"[{style}]{kind:<8}[/]" if style else f"{kind:<8}"
        self.console.print(f"[dim]{stamp}[/] {label} {text}", highlight=False)
