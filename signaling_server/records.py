"""Owners' registrations as signed records: the canonical bytes signed, the ID of a key, and the
checks the server and every scientist make on a record (no I/O, no clock: ``now`` is passed in).

The registry's messages are models of :mod:`signaling_server.protocol`; this module is what both
sides agree a signature covers, so a record verified here was signed, byte for byte, by the key
it names. It lives in the server package, like the protocol, so that the server never imports
``duet``; duet's client (``duet.registry``) imports it.

    payload = record_payload(record)        # what the owner signs with its identity key
    check_signed(signed)                    # RecordError unless signed by the key it names
    check_fresh(signed.record, now=time.time(), max_age_secs=60, skew_secs=30)
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .protocol import OwnerRecord, Search, SearchProof, SignedRecord, SignedWithdrawal, Withdrawal

ID_DIGITS = 16
#: what a record's and a withdrawal's signatures are over: a domain, then canonical JSON
RECORD_DOMAIN = b"duet-registry-record/1\n"
WITHDRAWAL_DOMAIN = b"duet-registry-withdrawal/1\n"
SEARCH_DOMAIN = b"duet-registry-search/1\n"

RecordProblem = Literal["bad_signature", "wrong_id", "stale", "future", "expired"]


class RecordError(ValueError):
    """A record or withdrawal that must be refused; ``code`` says why (``RecordProblem``)."""

    def __init__(self, code: RecordProblem, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: RecordProblem = code
        self.message = message


def id_of(public_key: bytes) -> str:
    """The short ID of a raw Ed25519 public key (``duet.identity.id_of`` is this function)."""
    digest = hashlib.sha256(b"duet-identity/1" + public_key).hexdigest()[:ID_DIGITS]
    return "-".join(digest[i : i + 4] for i in range(0, ID_DIGITS, 4))


def _canonical(model: OwnerRecord | Withdrawal | dict[str, object]) -> bytes:
    # every field, defaults included, keys sorted, no spaces, ASCII only: one text per record
    fields = model if isinstance(model, dict) else model.model_dump(mode="json")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_payload(record: OwnerRecord) -> bytes:
    """The bytes an owner signs for ``record``."""
    return RECORD_DOMAIN + _canonical(record)


def withdrawal_payload(withdrawal: Withdrawal) -> bytes:
    """The bytes an owner signs for ``withdrawal``."""
    return WITHDRAWAL_DOMAIN + _canonical(withdrawal)


def search_payload(search: Search, scientist_key: str, scientist_id: str, issued_at: int) -> bytes:
    """The bytes a scientist signs for ``search`` (its proof's fields but the signature)."""
    fields = search.model_dump(mode="json", exclude={"proof"})
    fields.update(scientist_key=scientist_key, scientist_id=scientist_id, issued_at=issued_at)
    return SEARCH_DOMAIN + _canonical(fields)


def check_search(search: Search, *, now: float, max_age_secs: float, skew_secs: float) -> str:
    """The ID of the scientist whose signed ``proof`` ``search`` carries; raise RecordError if
    the proof is not that key's over this very search, the ID not the key's, or it is stale."""
    proof = search.proof
    assert proof is not None
    key = bytes.fromhex(proof.scientist_key)
    if id_of(key) != proof.scientist_id:
        raise RecordError(
            "wrong_id",
            f"scientist ID {proof.scientist_id} is not the ID of the key the search carries",
        )
    payload = search_payload(search, proof.scientist_key, proof.scientist_id, proof.issued_at)
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(bytes.fromhex(proof.signature), payload)
    except (InvalidSignature, ValueError):
        raise RecordError(
            "bad_signature",
            f"the search's signature is not scientist {proof.scientist_id}'s over this search",
        ) from None
    check_fresh(proof, now=now, max_age_secs=max_age_secs, skew_secs=skew_secs)
    return proof.scientist_id


def visible_to(record: OwnerRecord, scientist: str | None) -> bool:
    """Whether ``record`` is shown to ``scientist`` (None: a search no one signed)."""
    return record.audience is None or (scientist is not None and scientist in record.audience)


def check_signed(signed: SignedRecord | SignedWithdrawal) -> None:
    """Raise RecordError unless the signature is the named key's over the canonical bytes and
    the owner ID is that key's."""
    if isinstance(signed, SignedRecord):
        body: OwnerRecord | Withdrawal = signed.record
        payload = record_payload(signed.record)
    else:
        body = signed.withdrawal
        payload = withdrawal_payload(signed.withdrawal)
    key = bytes.fromhex(body.owner_key)
    if id_of(key) != body.owner_id:
        raise RecordError(
            "wrong_id",
            f"owner ID {body.owner_id} is not the ID of the key it carries ({id_of(key)}); "
            "sign with the identity whose ID you register",
        )
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(bytes.fromhex(signed.signature), payload)
    except (InvalidSignature, ValueError):
        raise RecordError(
            "bad_signature",
            f"the signature does not match owner {body.owner_id}'s key over this record; "
            "it was altered or not signed by that owner",
        ) from None


def check_fresh(
    body: OwnerRecord | Withdrawal | SearchProof,
    *,
    now: float,
    max_age_secs: float,
    skew_secs: float,
) -> None:
    """Raise RecordError if ``body`` was issued more than ``max_age_secs`` ago, or more than
    ``skew_secs`` in the future (clocks differ a little, never by minutes)."""
    if body.issued_at > now + skew_secs:
        raise RecordError(
            "future",
            f"issued at {body.issued_at}, {body.issued_at - now:.0f} s ahead of this server's "
            f"clock (at most {skew_secs:g} s allowed); check the owner's clock",
        )
    if body.issued_at < now - max_age_secs:
        raise RecordError(
            "stale",
            f"issued {now - body.issued_at:.0f} s ago (at most {max_age_secs:g} s allowed); "
            "sign a new record to register",
        )


def check_live(record: OwnerRecord, *, now: float, skew_secs: float) -> None:
    """Raise RecordError if ``record`` has expired (a scientist's check on a search result) or
    claims to be issued in the future."""
    if record.issued_at > now + skew_secs:
        raise RecordError(
            "future", f"owner {record.owner_id}'s record is issued in the future; refusing it"
        )
    if record.issued_at + record.ttl_secs + skew_secs < now:
        raise RecordError(
            "expired",
            f"owner {record.owner_id}'s record expired "
            f"{now - record.issued_at - record.ttl_secs:.0f} s ago; the server returned an old "
            "registration",
        )


def record_matches(record: OwnerRecord, tags: list[str], owner: str | None) -> bool:
    """Whether ``record`` answers a search: its owner is ``owner`` (if given) and one of its
    datasets carries every tag in ``tags``."""
    if owner is not None and record.owner_id != owner:
        return False
    wanted = set(tags)
    return any(wanted <= set(d.tags) for d in record.datasets) if wanted else True


__all__ = [
    "RECORD_DOMAIN",
    "WITHDRAWAL_DOMAIN",
    "RecordError",
    "check_fresh",
    "check_live",
    "check_search",
    "check_signed",
    "id_of",
    "record_matches",
    "record_payload",
    "search_payload",
    "visible_to",
    "withdrawal_payload",
]
