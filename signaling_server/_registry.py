"""The registry: owners' signed registrations of what they list, and searches over them.

A connection whose first message is ``announce``, ``withdraw`` or ``search`` is the registry's
(see the package docstring for the messages). It may send more of them, one reply each, until
it closes or stays silent for ``idle_secs``; anything refused gets an error and the connection
is closed, as everywhere on this server, and the server keeps serving.

An announcement is stored only if its signature is the named key's over the record's canonical
bytes (:mod:`signaling_server.records`), the owner ID is that key's, it was issued within
``max_age_secs`` (and no more than ``skew_secs`` ahead), its ``seq`` is above every one that owner
used before (in the store, so across every instance sharing it), and its address does not hold
``max_per_address`` other owners' registrations already. The sequence number is kept for
``max_age_secs + skew_secs`` past the record's expiry, so no record ever accepted can be accepted
again: by then it is too old.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ._limits import RateLimiter
from ._messages import Reject
from ._registry_store import MemoryRegistryStore, RegistryStore, StoreRefusal
from .protocol import (
    MAX_RECORD_TTL_SECS,
    MAX_SEARCH_RESULTS,
    Announce,
    Announced,
    ClientModel,
    Listing,
    Listings,
    Search,
    ServerModel,
    SignedRecord,
    SignedWithdrawal,
    Withdraw,
    Withdrawn,
    to_wire,
)
from .records import RecordError, check_fresh, check_search, check_signed, visible_to

logger = logging.getLogger(__name__)

DEFAULT_MAX_REGISTRATIONS_PER_IP = 16
DEFAULT_MAX_RECORD_AGE = 60.0
DEFAULT_CLOCK_SKEW = 30.0
DEFAULT_REGISTRY_IDLE = 30.0
DEFAULT_MAX_RECORDS = 100_000
#: the longest a request may wait on the store (Redis) before the client is told to retry
DEFAULT_STORE_TIMEOUT = 5.0
#: registry messages one identity may send (after a burst), counted once its signature holds:
#: a node announces every minute and on each change; a scientist searches now and then
DEFAULT_PER_IDENTITY_RATE = 2.0
DEFAULT_PER_IDENTITY_BURST = 20

REGISTRY_TYPES = (Announce, Withdraw, Search)
#: whether a session is open (on this server, or on any instance sharing its sessions)
Online: TypeAlias = Callable[[str], bool | Awaitable[bool]]


@dataclass(frozen=True)
class RegistryLimits:
    """How the registry judges what owners send."""

    max_per_address: int = DEFAULT_MAX_REGISTRATIONS_PER_IP
    max_age_secs: float = DEFAULT_MAX_RECORD_AGE
    skew_secs: float = DEFAULT_CLOCK_SKEW
    idle_secs: float = DEFAULT_REGISTRY_IDLE
    max_records: int = DEFAULT_MAX_RECORDS
    store_timeout_secs: float = DEFAULT_STORE_TIMEOUT
    per_identity_rate: float = DEFAULT_PER_IDENTITY_RATE
    per_identity_burst: float = DEFAULT_PER_IDENTITY_BURST

    def __post_init__(self) -> None:
        for name in (
            "max_per_address", "max_age_secs", "skew_secs", "idle_secs", "max_records",
            "store_timeout_secs", "per_identity_rate", "per_identity_burst",
        ):  # fmt: skip
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")

    def keep_seq_secs(self, ttl_secs: float) -> float:
        """How long an owner's last sequence number is kept after a record of ``ttl_secs``."""
        return ttl_secs + self.max_age_secs + 2 * self.skew_secs


class Registry:
    """Serves registry connections against one store (``MemoryRegistryStore`` by default)."""

    def __init__(
        self,
        store: RegistryStore | None = None,
        limits: RegistryLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store: RegistryStore = store if store is not None else MemoryRegistryStore()
        self.limits = limits or RegistryLimits()
        self.clock = clock
        # per identity, and only once its signature holds: no one can spend another's tokens
        self._rate = RateLimiter(self.limits.per_identity_rate, self.limits.per_identity_burst)

    def _limit(self, identity: str, now: float) -> None:
        """Reject ``rate_limited`` when ``identity`` (an owner or a signed scientist) sends
        faster than the limits allow."""
        if not self._rate.allow(identity, now):
            logger.warning("identity %s is over the registry's rate", identity)
            raise Reject(
                "rate_limited",
                f"{identity} sent more than {self.limits.per_identity_burst:g} registry messages "
                f"at once or {self.limits.per_identity_rate:g} a second; slow down",
            )

    async def serve(
        self,
        ws: ServerConnection,
        first: ClientModel,
        *,
        recv: Callable[[], Awaitable[ClientModel]],
        address: str,
        online: Online,
    ) -> None:
        """Answer ``first`` and what follows on ``ws``; raise Reject to refuse (the server sends
        the error and closes). ``recv`` is the server's (it raises Reject for a malformed or too
        big message); ``online(session_id)`` says whether a session is open (a bool, or an
        awaitable of one)."""
        message = first
        while True:  # bounded: each turn waits at most idle_secs for the client
            if not isinstance(message, REGISTRY_TYPES):
                raise Reject(
                    "malformed",
                    f'a registry connection sends "announce", "withdraw" or "search", not '
                    f'"{message.type}"; open a new connection to register or join a session',
                )
            reply = await self._answer_in_time(message, address, online)
            try:
                await ws.send(to_wire(reply))
            except ConnectionClosed:
                return
            try:
                async with asyncio.timeout(self.limits.idle_secs):
                    message = await recv()
            except TimeoutError:
                await ws.close()
                return

    async def _answer_in_time(
        self, message: ClientModel, address: str, online: Online
    ) -> ServerModel:
        """``_answer``, or ``registry_unavailable`` if the store fails or does not answer in
        time (Redis down): the client is told to retry, the server goes on."""
        wait = self.limits.store_timeout_secs
        try:
            async with asyncio.timeout(wait):
                return await self._answer(message, address, online)
        except Reject:
            raise
        except TimeoutError:
            logger.warning(
                "the registry's store did not answer a %s within %g s", message.type, wait
            )
            problem = f"did not answer within {wait:g} s"
        except Exception as exc:  # the store's own errors (redis-py's, say): said, not lost
            logger.exception("the registry's store failed on a %s", message.type)
            problem = f"failed ({type(exc).__name__})"
        raise Reject(
            "registry_unavailable",
            f"the registry's store {problem}; try again shortly (the server's operator can "
            "check its Redis)",
        )

    async def _answer(self, message: ClientModel, address: str, online: Online) -> ServerModel:
        now = self.clock()
        if isinstance(message, Search):
            scientist = None
            if message.proof is not None:
                try:
                    scientist = check_search(
                        message, now=now, max_age_secs=self.limits.max_age_secs,
                        skew_secs=self.limits.skew_secs,
                    )  # fmt: skip
                except RecordError as exc:
                    raise Reject(exc.code, exc.message) from None
                self._limit(scientist, now)
            else:  # anonymous: its address stands for it (many may share one connection)
                self._limit(f"address {address}", now)
            # records shown only to their audience are left out for anyone else, after the
            # store has picked: ask it for as many as may be sent, then cut to the limit
            found = await self.store.search(
                list(message.tags), message.owner, now=now, limit=MAX_SEARCH_RESULTS
            )
            shown = [s for s in found if visible_to(s.record, scientist)][: message.limit]
            results = []
            for signed in shown:
                is_open = online(signed.record.session_id)
                if inspect.isawaitable(is_open):
                    is_open = await is_open
                results.append(Listing(signed=signed, online=bool(is_open)))
            return Listings(results=results)
        if isinstance(message, Announce):
            record = message.signed.record
            self._check(message.signed, now)
            self._limit(record.owner_id, now)
            try:
                await self.store.put(
                    message.signed,
                    address=address,
                    now=now,
                    keep_seq_secs=self.limits.keep_seq_secs(record.ttl_secs),
                    max_per_address=self.limits.max_per_address,
                    max_records=self.limits.max_records,
                )
            except StoreRefusal as exc:
                raise self._refusal(exc, record.owner_id, record.seq, address) from None
            logger.info(
                "owner %s registered %d datasets (seq %d) from %s",
                record.owner_id, len(record.datasets), record.seq, address,
            )  # fmt: skip
            return Announced(owner_id=record.owner_id, seq=record.seq, ttl_secs=record.ttl_secs)
        assert isinstance(message, Withdraw)
        body = message.signed.withdrawal
        self._check(message.signed, now)
        self._limit(body.owner_id, now)
        try:
            had = await self.store.withdraw(
                body.owner_id,
                body.seq,
                now=now,
                keep_seq_secs=self.limits.keep_seq_secs(MAX_RECORD_TTL_SECS),
            )
        except StoreRefusal as exc:
            raise self._refusal(exc, body.owner_id, body.seq, address) from None
        logger.info("owner %s withdrew its registration (seq %d)", body.owner_id, body.seq)
        return Withdrawn(owner_id=body.owner_id, found=had)

    def _check(self, signed: SignedRecord | SignedWithdrawal, now: float) -> None:
        body = signed.record if isinstance(signed, SignedRecord) else signed.withdrawal
        try:
            check_signed(signed)
            check_fresh(
                body, now=now, max_age_secs=self.limits.max_age_secs,
                skew_secs=self.limits.skew_secs,
            )  # fmt: skip
        except RecordError as exc:
            logger.info("refused a registration for %s: %s", body.owner_id, exc)
            raise Reject(exc.code, exc.message) from None

    def _refusal(self, exc: StoreRefusal, owner: str, seq: int, address: str) -> Reject:
        if exc.reason == "replay":
            logger.warning("refused owner %s's seq %d: %d is stored", owner, seq, exc.held)
            return Reject(
                "replay",
                f"owner {owner}'s record has seq {seq}, not above the {exc.held} already "
                "registered: a replayed or out-of-date record; sign a new one",
            )
        if exc.reason == "full":
            logger.warning("refused owner %s: the registry holds %d owners", owner, exc.held)
            return Reject(
                "registry_full",
                f"the registry holds records of {exc.held} owners already (limit "
                f"{self.limits.max_records}); try again later, or raise the server's "
                "RegistryLimits(max_records=...)",
            )
        logger.warning(
            "refused owner %s from %s: %d owners registered there", owner, address, exc.held
        )
        return Reject(
            "too_many_registrations",
            f"{address} already holds registrations of {exc.held} owners (limit "
            f"{self.limits.max_per_address}); withdraw some, or raise the server's "
            "RegistryLimits(max_per_address=...)",
        )


__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_RECORD_AGE",
    "DEFAULT_MAX_REGISTRATIONS_PER_IP",
    "DEFAULT_REGISTRY_IDLE",
    "REGISTRY_TYPES",
    "Registry",
    "RegistryLimits",
]
