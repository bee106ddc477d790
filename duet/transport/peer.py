"""The seam between pairing and a WebRTC implementation: what pairing asks of one.

Pairing (duet/pairing/) makes and checks the offer and the answer (SDP, which any WebRTC
implementation speaks) and signs them; it asks a ``Peers`` for the rest: a certificate (the
owner's and the scientist's IDs are made from its fingerprint), a peer that offers, a peer that
answers, and once connected a ``Channel``. duet's is aiortc's (``transport.webrtc.WEBRTC``);
another implementation would provide these four and pairing would not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .channel import Channel


class Certificate(Protocol):
    """A DTLS certificate: opaque to pairing, which only asks its fingerprint (``Peers``)."""


class Offering(Protocol):
    """The scientist's side of a connection being made."""

    fingerprint: str  # of its own certificate: its client ID is made from it
    peer_fingerprint: str | None  # the owner's, as presented in the handshake, once connected

    async def accept_answer(
        self, answer_sdp: str, *, timeout_secs: float, expected_peer_id: str | None = None
    ) -> Channel: ...

    async def close(self) -> None: ...


class Answering(Protocol):
    """The owner's side of a connection being made, once it has answered."""

    async def channel(self, timeout_secs: float) -> Channel: ...

    async def close(self) -> None: ...


class Peers(Protocol):
    """Makes connections: certificates, an offer (the scientist), an answer (the owner)."""

    def new_certificate(self) -> Certificate: ...

    def fingerprint(self, certificate: Certificate) -> str: ...

    async def offer(
        self, *, ice_servers: Sequence[str] | None, ice_hosts: Sequence[str] | None
    ) -> tuple[Offering, str]: ...

    async def answer(
        self,
        offer_sdp: str,
        *,
        ice_servers: Sequence[str] | None,
        ice_hosts: Sequence[str] | None,
        certificate: Certificate,
    ) -> tuple[Answering, str]: ...
