"""Admission: the door's verdict on one scientist, and strangers' confirmations.

An owner (owner.py: ``OwnerSession.screen``, ``admit``, ``decide``) asks the door about a
scientist that proved its ID; a ``Verdict`` says refused, let in, or ``ask``: a confirmation
must decide (its ID typed at the keyboard, the owner's function, a given ID: ``confirm_id``),
each on a thread of its own (``Confirmations``), never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..display.prompt import Read, ask_client_id

if TYPE_CHECKING:
    from .owner import OwnerSession

#: how many strangers' confirmations may be under way at once (each holds a thread until the
#: person or the owner's function answers); more are refused at once
MAX_CONFIRMATIONS = 16
Confirm = bool | str | Callable[[str], bool]
#: how a stranger's confirmation is asked: (confirm, client ID, seconds) -> the verdict, on the
#: loop (``Confirmations.ask``: a thread each; launch_duet's: on the caller's thread)
Ask = Callable[[Confirm, str, float], Awaitable["Verdict"]]


@dataclass(frozen=True)
class Verdict:
    """The door's answer for one scientist: ``refusal`` (why not), or let in; ``confirmed``:
    let in on the owner's word (a rule naming it, a confirmation now or before), so its
    identity knows it from now on; ``ask``: nothing decides it yet, a confirmation must."""

    refusal: str | None = None
    confirmed: bool = False
    ask: bool = False


def mismatch(given: str) -> Verdict:
    return Verdict(
        refusal=f"client ID {given!r} does not match the scientist's identity; refusing it (it "
        "may be someone else, or the ID was mistyped)"
    )


class Confirmations:
    """Strangers' confirmations, each on a thread of its own: a person typing, or the owner's
    function, may take any time, and must hold up nothing else (not the loop, not a thread
    pool anything else waits on). At most ``node.max_confirmations`` are under way at once
    (a thread each, until it returns); prompts at the keyboard are asked one at a time."""

    def __init__(self, node: OwnerSession):
        self._node = node
        self._lock = threading.Lock()
        self._running = 0
        self._keyboard = threading.Lock()

    async def ask(self, confirm: Confirm, client_id: str, timeout_secs: float) -> Verdict:
        """(On the loop) the verdict of ``confirm`` on ``client_id``, or a refusal once
        ``timeout_secs`` have passed without one (its thread is left to finish on its own)."""
        with self._lock:
            if self._running >= self._node.max_confirmations:
                return Verdict(
                    refusal=f"{self._running} confirmations of other scientists are under way "
                    "and the owner has not answered them yet; try again later"
                )
            self._running += 1
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, bool]] = loop.create_future()
        deadline = time.monotonic() + timeout_secs

        def settle(result: tuple[str, bool] | BaseException) -> None:
            if answer.done():  # given up on: the join has been refused already
                return
            if isinstance(result, BaseException):
                answer.set_exception(result)
            else:
                answer.set_result(result)

        def confirm_off_loop() -> None:
            result: tuple[str, bool] | BaseException
            try:
                result = self._confirm(confirm, client_id, deadline)
            except BaseException as exc:  # told to the join, which refuses the scientist
                result = exc
            finally:
                with self._lock:
                    self._running -= 1
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(settle, result)

        name = f"duet-confirm-{client_id}"
        threading.Thread(target=confirm_off_loop, name=name, daemon=True).start()
        try:
            given, ok = await asyncio.wait_for(answer, timeout_secs)
        except TimeoutError:
            return Verdict(refusal=f"it was not confirmed within {timeout_secs:g} s")
        except Exception as exc:
            return Verdict(refusal=f"its confirmation failed: {exc}")
        return Verdict(confirmed=True) if ok else mismatch(given)

    def _confirm(self, confirm: Confirm, client_id: str, deadline: float) -> tuple[str, bool]:
        if confirm is not True:
            return confirm_id(confirm, client_id)
        if not self._keyboard.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return "(no time left to ask)", False
        try:
            return confirm_id(True, client_id)
        finally:
            self._keyboard.release()


def confirm_id(confirm: Confirm, client_id: str, *, read: Read | None = None) -> tuple[str, bool]:
    """Check a scientist's ID as ``launch_duet``'s ``confirm`` says: True asks the person at the
    keyboard (through ``read``, default ``input``: display/prompt.py), a string is the expected
    ID, a function decides. Returns (what was given, ok)."""
    from ..identity import normalize

    if callable(confirm):
        return "(checked by your function)", bool(confirm(client_id))
    if confirm is True:
        given = ask_client_id(read=read)
    else:
        given = str(confirm)
    return given, normalize(given) == normalize(client_id)


__all__ = [
    "MAX_CONFIRMATIONS",
    "Ask",
    "Confirm",
    "Confirmations",
    "Verdict",
    "confirm_id",
    "mismatch",
]
