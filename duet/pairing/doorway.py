"""The owner's side of pairing: its open session on the signaling server, and the first steps
of every scientist's join (the offer checked, answered with the owner's signature, the data
channel opened and its certificate checked). What follows (admission, the handshake, serving) is
the session's: ``arrive(channel, fingerprints)``. ``launch_duet`` and ``duet serve`` use this one
doorway, for one scientist or many."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import DuetError
from ..runtime import run
from ..transport.channel import Channel
from ..transport.peer import Peers
from ..transport.sdp import check_peer_sdp
from ..transport.webrtc import WEBRTC
from . import loopback as loopback_pairing
from .owner_proof import sign_answer
from .server import SignalingProcess
from .signaling import SignalingClient

if TYPE_CHECKING:
    from ..sessions.owner import OwnerSession

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECS = 60.0
LOOPBACK_HOSTS = ["127.0.0.1"]


def ice_hosts_for(ice_hosts: Sequence[str] | None, loopback: bool) -> Sequence[str] | None:
    """The host addresses to gather candidates on: as given, else loopback's when on loopback."""
    if ice_hosts is not None:
        return ice_hosts
    return LOOPBACK_HOSTS if loopback else None


Arrival = Callable[[Channel, tuple[str, str]], Awaitable[None]]


class Doorway:
    """The owner's open session on the signaling server, and the first steps of every join.

    Each offer is handled on its own task (one that fails, or is refused, changes nothing for
    the others): its SDP is checked (on loopback, also the proof that the scientist read the
    owner's private file), and a bad one is declined through the signaling server with the
    reason; a good one is answered with the owner's signature, and once the data channel is
    open (the scientist's DTLS certificate checked), ``arrive(channel, fingerprints)`` takes it
    from there. The session stays open for the next offer until the owner closes it.
    """

    def __init__(
        self,
        owner: OwnerSession,
        url: str | None,
        *,
        loopback: bool,
        ice_servers: Sequence[str] | None,
        ice_hosts: Sequence[str] | None,
        say: Callable[[str], None],
        peers: Peers = WEBRTC,
        server_at: tuple[str, int] = ("127.0.0.1", 0),
    ):
        """``peers``: the WebRTC implementation that makes the connections (transport/peer.py);
        ``server_at``: where the signaling server started for this session listens, when there
        is no ``url`` (port 0: a free one)."""
        self.owner = owner
        self.peers = peers
        self.url = url or os.environ.get("DUET_SIGNALING_URL")
        self.loopback = loopback
        self.ice_servers = ice_servers
        self.hosts = ice_hosts_for(ice_hosts, loopback)
        self.say = say  # how a refused offer is told to the owner
        self.certificate = peers.new_certificate()  # made first: the owner's ID is its identity's
        self.token = loopback_pairing.new_token() if loopback else ""
        self.server_at = server_at
        self.server: SignalingProcess | None = None  # a signaling server started for this session
        self.signaling: SignalingClient | None = None
        self.session_id = ""
        self.task: asyncio.Task[None] | None = None  # serve(), once started

    def register(self) -> str:
        """Register an open session (starting a signaling server if there is no URL)."""

        if self.url is None:  # a child process of this one (pairing/server.py)
            self.server = SignalingProcess(*self.server_at)
            self.url = self.server.url

        async def register() -> str:
            assert self.url is not None
            self.signaling = await SignalingClient.connect(self.url)
            return await self.signaling.register(max_peers=None, open_session=True)

        try:
            self.session_id = run(
                register(),
                timeout_secs=CONNECT_TIMEOUT_SECS,
                what="registering with the signaling server",
            )
        finally:
            self.owner._embedded_server = self.server
        return self.session_id

    def write_loopback(self) -> None:
        record = loopback_pairing.LoopbackRecord(
            self.session_id, str(self.url), os.getpid(), self.owner.identity.id, self.token
        )
        loopback_pairing.write_loopback(record)

    async def serve(self, arrive: Arrival, ended: Callable[[DuetError], None]) -> None:
        """(On the loop) answer each offer until the session ends; ``ended(error)`` if it ends
        otherwise than by ``close_session``."""
        signaling = self.signaling
        assert signaling is not None
        joining: set[asyncio.Task[None]] = set()
        try:
            async for peer_id, offer in signaling.offers(timeout_secs=None):
                task = asyncio.ensure_future(self._join(peer_id, offer, arrive))
                joining.add(task)
                task.add_done_callback(joining.discard)
        except DuetError as exc:
            log.warning("the owner's signaling session ended: %s", exc)
            ended(exc)
        finally:
            for task in joining:
                task.cancel()
            with contextlib.suppress(Exception):
                await signaling.close()

    async def _join(self, peer_id: str, offer: str, arrive: Arrival) -> None:
        signaling = self.signaling
        assert signaling is not None
        try:
            scientist_fingerprint = check_peer_sdp(offer, "the scientist's offer")
            if self.loopback:
                loopback_pairing.check_proof(
                    offer, self.token, self.session_id, scientist_fingerprint
                )
            peer, answer_sdp = await self.peers.answer(
                offer,
                ice_servers=self.ice_servers,
                ice_hosts=self.hosts,
                certificate=self.certificate,
            )
        except DuetError as exc:
            self.say(f"refused an offer: {exc}")
            with contextlib.suppress(DuetError):
                await signaling.decline(peer_id, str(exc))
            return
        owner_fingerprint = self.peers.fingerprint(self.certificate)
        try:
            answer_sdp = sign_answer(
                answer_sdp, self.owner.identity, self.session_id, owner_fingerprint
            )
            await signaling.send_answer(answer_sdp, peer=peer_id)
            channel = await peer.channel(CONNECT_TIMEOUT_SECS)  # checks the presented certificate
        except DuetError as exc:
            log.warning("a scientist could not join: %s", exc)
            await peer.close()
            return
        except BaseException:
            await peer.close()
            raise
        try:
            await arrive(channel, (owner_fingerprint, scientist_fingerprint))
        except DuetError as exc:
            log.warning("a scientist could not join: %s", exc)
        except Exception:
            log.exception("admitting a scientist failed")

    def start(self, arrive: Arrival, ended: Callable[[DuetError], None]) -> asyncio.Task[None]:
        """Answer offers in the background, from now until ``close()``."""

        async def start() -> asyncio.Task[None]:
            return asyncio.ensure_future(self.serve(arrive, ended))

        self.task = run(start(), timeout_secs=10, what="starting to admit scientists")
        return self.task

    def close(self) -> None:
        """(Caller's thread) stop taking offers: joins under way are dropped and the signaling
        connection closed, which ends the session there (scientists mid-exchange are told)."""

        async def close() -> None:
            task = self.task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # its joins are cancelled, its connection closed
            elif self.signaling is not None:
                await self.signaling.close()

        run(close(), timeout_secs=30, what="closing the signaling session")

    def stop_server(self) -> None:
        """Stop the signaling server started for this session, if any (after a failure)."""
        if self.server is not None:
            self.server.close()
            self.server = self.owner._embedded_server = None
