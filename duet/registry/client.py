"""The registry's client: announce, withdraw and search on a signaling server, and the checks a
scientist makes on every search result.

    async with await RegistryClient.connect(url) as registry:
        await registry.announce(signed_record)
        listings = await registry.search(["digits"])     # each one verified: see ``verified``

The connection and its errors are the signaling client's (``duet.pairing.signaling``): a server
refusal raises SignalingServerError with its code (``bad_signature``, ``wrong_id``, ``replay``,
``stale``, ``future``, ``too_many_registrations``, ``registry_full``,
``registry_unavailable``, ``malformed``, ``too_big``), nothing at the
address SignalingUnreachable, a wait that runs out DuetTimeout.

A scientist trusts the registry server with nothing: every result's signature is checked
against the key it names, that key's ID against the owner ID, its expiry against the local
clock, and that it answers the search; a result that fails any of these is refused (logged and
left out, or ``RegistryError`` with ``strict=True``). What the server alone says (``online``) is
shown as its word.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import TracebackType

import pydantic

from signaling_server.protocol import (
    MAX_SEARCH_RESULTS,
    MAX_SEARCH_TAGS,
    MAX_TAG_CHARS,
    Announce,
    Announced,
    Listings,
    OwnerRecord,
    Search,
    SignedRecord,
    SignedWithdrawal,
    Withdraw,
    Withdrawn,
)
from signaling_server.records import RecordError, check_live, check_signed, record_matches

from ..errors import SignalingError, UsageError
from ..identity import Identity, normalize
from ..pairing.signaling import SignalingClient
from .records import sign_search

log = logging.getLogger(__name__)

REPLY_TIMEOUT_SECS = 10.0
#: how far the scientist's clock may be from the owner's when judging a record's expiry
CLOCK_SKEW_SECS = 30.0


class RegistryError(SignalingError):
    """A registry answer the scientist refuses: a forged, altered, expired or unasked-for
    record."""


@dataclass(frozen=True)
class Found:
    """One verified search result: the owner's signed record and the server's ``online``."""

    record: OwnerRecord
    online: bool


class RegistryClient:
    """One connection to a signaling server's registry (one request at a time)."""

    def __init__(self, signaling: SignalingClient) -> None:
        self._client = signaling
        self.url = signaling.url

    @classmethod
    async def connect(cls, url: str, *, timeout_secs: float = 10.0) -> RegistryClient:
        return cls(await SignalingClient.connect(url, timeout_secs=timeout_secs))

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    # the signaling client's sending, receiving and error translation, reused as they are
    async def announce(
        self, signed: SignedRecord, *, timeout_secs: float = REPLY_TIMEOUT_SECS
    ) -> Announced:
        await self._client.send(Announce(signed=signed))
        return await self._client.wait_for(Announced, timeout_secs, "the reply to announce")

    async def withdraw(
        self, signed: SignedWithdrawal, *, timeout_secs: float = REPLY_TIMEOUT_SECS
    ) -> Withdrawn:
        await self._client.send(Withdraw(signed=signed))
        return await self._client.wait_for(Withdrawn, timeout_secs, "the reply to withdraw")

    async def search(
        self,
        tags: list[str] | tuple[str, ...] = (),
        *,
        owner: str | None = None,
        limit: int = 50,
        strict: bool = False,
        identity: Identity | None = None,
        timeout_secs: float = REPLY_TIMEOUT_SECS,
    ) -> list[Found]:
        """The verified records of owners listing a dataset with every one of ``tags`` (of
        ``owner`` only, if given). With ``identity`` the search is signed, and the records
        owners show only to the scientists they admit are found too if it is one of them.
        Results that fail verification are left out (logged), or raise RegistryError if
        ``strict``."""
        tags = [str(t) for t in tags]
        owner_id = canonical_owner_id(owner) if owner is not None else None
        try:
            query = Search(tags=tags, owner=owner_id, limit=limit)
        except pydantic.ValidationError:
            raise UsageError(
                f"a search takes at most {MAX_SEARCH_TAGS} tags of 1 to {MAX_TAG_CHARS} "
                f"characters and a limit from 1 to {MAX_SEARCH_RESULTS}; got tags {tags!r:.200} "
                f"and limit {limit!r}"
            ) from None
        if identity is not None:
            query = sign_search(identity, query)
        await self._client.send(query)
        reply = await self._client.wait_for(Listings, timeout_secs, "the search's results")
        found: list[Found] = []
        for listing in reply.results:
            try:
                verified(listing.signed, tags, owner_id, now=time.time())
            except RegistryError as exc:
                if strict:
                    raise
                log.warning("refused a search result from %s: %s", self.url, exc)
                continue
            found.append(Found(listing.signed.record, listing.online))
        return found


def verified(
    signed: SignedRecord, tags: list[str], owner: str | None, *, now: float
) -> OwnerRecord:
    """``signed``'s record if it is the named owner's, live and an answer to the search; raise
    RegistryError otherwise."""
    try:
        check_signed(signed)
        check_live(signed.record, now=now, skew_secs=CLOCK_SKEW_SECS)
    except RecordError as exc:
        raise RegistryError(f"the registry returned a record to refuse: {exc.message}") from None
    if not record_matches(signed.record, tags, owner):
        raise RegistryError(
            f"the registry returned owner {signed.record.owner_id}'s record, which does not "
            "answer the search"
        )
    return signed.record


def canonical_owner_id(text: str) -> str:
    """An owner ID as typed (any case, any separators) in its wire form ``xxxx-xxxx-xxxx-xxxx``."""
    if not isinstance(text, str):
        raise UsageError(f"an owner ID is a str such as '3fa2-91bc-0d4e-77a1', got {text!r:.40}")
    digits = normalize(text)
    if len(digits) != 16 or any(ch not in "0123456789abcdef" for ch in digits):
        raise UsageError(
            f"{text!r:.40} is not an owner ID (16 hex digits, e.g. 3fa2-91bc-0d4e-77a1)"
        )
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


__all__ = ["Found", "RegistryClient", "RegistryError", "canonical_owner_id", "verified"]
