"""A scientist's blocking request, made visible: waiting for the owner, then how it ended.

A request a handler decides comes back at once and nothing is shown. One still unanswered after
``QUIET_SECS`` is waiting for a person: a countdown line says so, with the time left (rewritten
in place in a terminal, a plain line now and then elsewhere, as ``join_duet``'s countdown), and
when it ends one line says how: accepted, denied (with the owner's reason), timed out, or the
session closed. Lines go to stderr (``PointerClient.wait_stream`` to send them elsewhere).
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..display import Countdown, shown
from ..errors import ConnectionLost, DuetTimeout
from ..protocol.messages import Reply

if TYPE_CHECKING:
    from .client import PointerClient

QUIET_SECS = 1.0  # a reply within this is a handler's (or a grant's): nothing to show
GRACE_SECS = 5.0  # after the request's own timeout, how long its "timed out" reply may take


def wait_for_decision(
    client: PointerClient,
    future: concurrent.futures.Future[tuple[Reply, list[memoryview]]],
    *,
    label: str,
    owner_secs: float | None,
    wait_secs: float | None = None,
) -> tuple[Reply, list[memoryview]]:
    """The owner's reply to a request (``future``), showing the wait as the module says.
    ``owner_secs``: the request's timeout (the owner times it out then, and the reply saying so
    is waited for a little longer); ``wait_secs``: how long to wait instead (default: the
    request's timeout, else the client's default wait). Raises DuetTimeout (no reply in time)
    or ConnectionLost (the session closed first)."""
    if wait_secs is not None:
        limit, grace = wait_secs, 0.0
    elif owner_secs is not None:
        limit, grace = owner_secs, GRACE_SECS
    else:
        limit, grace = client.default_timeout_secs, 0.0
    started = time.monotonic()
    try:  # (the future's own wait: a handler's answer, the common case, costs no more)
        return future.result(timeout=min(QUIET_SECS, limit))
    except TimeoutError:  # concurrent.futures.TimeoutError is TimeoutError
        if future.done():  # the request itself failed with one
            raise
    stream: TextIO = client.wait_stream or sys.stderr
    countdown = Countdown(
        f"request {label} is waiting for the owner to decide",
        max(0.0, limit - (time.monotonic() - started)),
        stream=stream,
    )

    def ready(secs: float) -> bool:
        finished, _ = concurrent.futures.wait([future], timeout=secs)
        return bool(finished)

    try:
        arrived = countdown.wait_for(ready)
        if not arrived and grace:  # the owner's "timed out" is on its way
            arrived = ready(grace)
    finally:
        countdown.done()
    if not arrived:
        _end(stream, label, f"no answer from the owner within {limit:g} s")
        raise DuetTimeout(f"request {label}: no reply from the owner within {limit:g} s")
    try:
        reply, buffers = future.result()
    except ConnectionLost as exc:
        _end(stream, label, f"the session closed before the owner decided ({exc})")
        raise
    _end(stream, label, ending(reply))
    return reply, buffers


def ending(reply: Reply) -> str:
    """How a request ended, as the scientist is told (what the owner wrote, shown as data: it
    cannot move the cursor or fake a line of the scientist's screen)."""
    note = f" ({shown(reply.note, 500)})" if reply.note else ""
    if reply.status in ("accepted", "ok"):
        return "accepted"
    if reply.status == "denied":
        return f"denied{note}"
    if reply.status == "timeout":
        return f"timed out: the owner did not decide in time{note}"
    if reply.error is not None:
        return f"refused: {shown(reply.error.message, 500)}"
    return reply.status


def _end(stream: TextIO, label: str, how: str) -> None:
    stream.write(f"♫♫♫ > request {label}: {how}\n")
    stream.flush()


__all__ = ["QUIET_SECS", "ending", "wait_for_decision"]
