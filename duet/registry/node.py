"""An owner node's listing on the network: what it listed, announced on the signaling server it
launched on, renewed before it expires, announced again when it changes, withdrawn on close.

Everything runs on duet's loop: a renewal is a timer (``call_later`` at half the record's TTL,
sooner after a failure), never a polling loop; announcements are one at a time, each on a
connection of its own, so a signaling server restarted meanwhile is simply reached again. A
node that lists nothing registers nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DuetError
from ..identity import Identity
from ..runtime import get_loop, run
from .client import RegistryClient
from .records import (
    DEFAULT_TTL_SECS,
    dataset_listing,
    sign_record,
    sign_withdrawal,
)
from .records import (
    Sequence as Seq,
)

log = logging.getLogger(__name__)

#: after a failed announcement, try again this often (or at the TTL's quarter, if sooner)
RETRY_SECS = 10.0
CLOSE_TIMEOUT_SECS = 10.0


class NodeListing:
    """The registration of one owner node's listed datasets.

    ``entries()`` returns the store entries to list (called on duet's loop, each time the
    listing is announced); ``audience()`` the scientists (IDs) the node would admit, the only
    ones the registry shows the listing to, or None for anyone (called on a worker thread: it
    may read the audit database). ``changed()`` may be called from any thread.
    """

    def __init__(
        self,
        identity: Identity,
        url: str,
        session_id: str,
        entries: Callable[[], Sequence[Any]],
        *,
        owner_name: str = "",
        ttl_secs: int = DEFAULT_TTL_SECS,
        audience: Callable[[], list[str] | None] = lambda: None,
    ) -> None:
        self.identity = identity
        self.url = url
        self.session_id = session_id
        self.entries = entries
        self.audience = audience
        self.owner_name = owner_name
        self.ttl_secs = ttl_secs
        self.seq = Seq()
        self.announced = 0  # the seq of the record registered now (0: none)
        self.last_error: DuetError | None = None
        #: called on duet's loop with the seq of each record registered (0: withdrawn)
        self.listeners: list[Callable[[int], None]] = []
        self._loop = get_loop()
        self._lock: asyncio.Lock | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # ---- any thread
    def start(self, *, timeout_secs: float = 30.0) -> None:
        """Announce what is listed now (if anything) and keep it registered. A failure is
        logged and retried on the timer: an owner's node serves even when the registry fails."""
        run(self.refresh(), timeout_secs=timeout_secs, what="announcing the listed datasets")

    def changed(self) -> None:
        """The listing changed: announce it again soon (on duet's loop)."""
        if not self._closed:
            self._loop.call_soon_threadsafe(self._spawn)

    def settle(self, *, timeout_secs: float = 30.0) -> None:
        """Block until the announcement under way, if any, is done (tests, ``duet serve``)."""
        run(self.refresh(), timeout_secs=timeout_secs, what="announcing the listed datasets")

    def close(self, *, timeout_secs: float = CLOSE_TIMEOUT_SECS) -> None:
        """Stop renewing and withdraw the registration (if one was made)."""
        if self._closed:
            return
        self._closed = True
        try:
            run(self._withdraw(), timeout_secs=timeout_secs, what="withdrawing the listing")
        except DuetError as exc:  # it expires by itself within its TTL
            log.warning("could not withdraw the listing from %s: %s", self.url, exc)

    # ---- duet's loop
    def _spawn(self) -> None:
        task = asyncio.ensure_future(self.refresh())
        task.add_done_callback(_log_failure)

    async def refresh(self) -> None:
        """Announce the listing as it is now (or withdraw it, if nothing is listed any more),
        and set the renewal timer."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            listed = [dataset_listing(e) for e in self.entries()]
            try:
                if listed:
                    await self._announce(listed, await asyncio.to_thread(self.audience))
                elif self.announced:
                    await self._send_withdrawal()
                self.last_error = None
            except DuetError as exc:
                self.last_error = exc
                log.warning("announcing the listed datasets on %s failed: %s", self.url, exc)
                self._schedule(min(RETRY_SECS, self.ttl_secs / 4))
                return
            if listed:
                self._schedule(self.ttl_secs / 2)

    def _schedule(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self._spawn)

    async def _announce(self, listed: list[Any], audience: list[str] | None) -> None:
        signed = sign_record(
            self.identity, session_id=self.session_id, datasets=listed, seq=self.seq.next(),
            ttl_secs=self.ttl_secs, owner_name=self.owner_name, audience=audience,
        )  # fmt: skip
        async with await RegistryClient.connect(self.url) as registry:
            await registry.announce(signed)
        self.announced = signed.record.seq
        log.info("listed %d datasets on %s (seq %d)", len(listed), self.url, self.announced)
        self._tell(self.announced)

    async def _send_withdrawal(self) -> None:
        async with await RegistryClient.connect(self.url) as registry:
            await registry.withdraw(sign_withdrawal(self.identity, seq=self.seq.next()))
        self.announced = 0
        self._tell(0)

    def _tell(self, seq: int) -> None:
        for listener in list(self.listeners):
            try:
                listener(seq)
            except Exception:  # a listener's failure is its own
                log.exception("a listing listener failed")

    async def _withdraw(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.announced:
                await self._send_withdrawal()


def _log_failure(task: asyncio.Task[None]) -> None:
    # refresh() handles DuetError itself; anything else is a bug, said rather than lost
    if not task.cancelled() and task.exception() is not None:
        log.error("announcing the listed datasets failed", exc_info=task.exception())


__all__ = ["NodeListing"]
