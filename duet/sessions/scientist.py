"""The scientist's session: what ``join_duet`` returns.

A ``ScientistSession`` holds pointers, ``duet.torch`` and ``duet.python`` on one ``Connection``
to an owner (over any Channel: in memory or WebRTC); ``connect_scientist`` runs its side of the
handshake. Its async face (awaitable syncs and requests) is aio.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..connection import Connection
from ..errors import ConnectionLost, HandshakeError, UsageError
from ..identity import Identity, normalize
from ..protocol.allowlist import type_key
from ..protocol.messages import ErrorInfo, Message, Reply, Sync
from ..scientist.client import PointerClient
from ..scientist.library import GYM_REFUSAL, SYFT_REFUSAL, RefusedLibrary, RemoteLibrary
from ..scientist.opacus import RemoteOpacus
from ..scientist.plan import Plan
from ..scientist.pointer import Pointer
from ..scientist.privacy import ScientistPrivacy
from ..scientist.pydp import PyDP
from ..scientist.store_view import RemoteStore
from ..transport.channel import Channel
from .base import LIVE, Session


class ScientistSession(Session):
    """The data scientist's side: ``store``, ``torch``, ``python`` and pointers."""

    role = "scientist"
    #: PySyft's ``remote_gym = duet.gym``: refused, with the reason (GYM_REFUSAL)
    gym = RefusedLibrary("gym", GYM_REFUSAL)
    #: PySyft's ``duet.syft.core.remote_dataloader.RemoteDataset(...)``: refused, with the reason
    syft = RefusedLibrary("syft", SYFT_REFUSAL)
    #: PySyft's remote ``PrivacyEngine``: refused, naming the ``duet.privacy.train`` job
    opacus = RemoteOpacus()

    def __init__(self, *, timeout_secs: float = 120.0):
        self.default_timeout_secs = timeout_secs
        self.client: PointerClient | None = None

    def _attach(self, connection: Connection) -> None:
        self.connection = connection
        self.client = PointerClient(connection, default_timeout_secs=self.default_timeout_secs)
        self.torch = RemoteLibrary(self.client, "torch")
        self.python = RemoteLibrary(self.client, "python")
        self.torchvision = RemoteLibrary(self.client, "torchvision")
        self.store = RemoteStore(self.client)
        # DP statistics and training jobs under the owner's privacy budgets (issue 19)
        self.privacy = ScientistPrivacy(self.client)
        # PySyft's ``duet.pydp.algorithms.laplacian.BoundedMean(...)``, answered by self.privacy
        self.pydp = PyDP(self.privacy)
        # the requests this scientist sent and how the owner answered (``.pandas``)
        self.requests = self.client.requests

    # ---- what the connection delivers (on the loop)
    def on_messages(self, messages: list[Message], buffers: list[memoryview]) -> None:
        assert self.client is not None
        self.client.on_messages(messages, buffers)

    def on_lost(self, exc: ConnectionLost) -> None:
        if self.client is not None:
            self.client.on_lost(exc)

    def close(self, *, timeout_secs: float = 10.0) -> None:
        """Leave the session; the owner sees it closed. A call still waiting for the owner
        (on another thread) raises ConnectionLost at once, not when its timeout passes."""
        super().close(timeout_secs=timeout_secs)
        if self.client is not None and self.client.lost is None:
            self.client.on_lost(ConnectionLost("the session was closed by the scientist"))

    def on_refused(self, held: list[Message], info: ErrorInfo) -> list[Message]:
        """A frame from the owner was refused (over our limit): the requests whose replies it
        held fail here with the error; the owner is told nothing (the connection's
        ``refusals``)."""
        replies: list[Message] = [
            Reply(rid=m.rid, status="error", error=info) for m in held if isinstance(m, Reply)
        ]
        if replies and self.connected:
            self.on_messages(replies, [])
        return []

    @property
    def owner_id(self) -> str:
        """The ID the owner proved in the handshake."""
        connection = self.connection
        peer = connection.peer_identity if connection is not None else None
        return peer.id if peer is not None else ""

    def send_value(
        self, value: object, *, tags: list[str] | None = None, description: str = ""
    ) -> Pointer:
        client = self._client()
        object_id = client.put(value, tags=tags, description=description)
        meta: dict[str, object] = {"tags": list(tags or []), "description": description}
        if isinstance(value, torch.Tensor):
            meta |= {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
            if value.requires_grad:  # a leaf on the owner's side: backward gives it a gradient
                meta["requires_grad"] = True
        return client.pointer(object_id, type_key(value), meta, owned=True)

    def plan(self, fn: Callable[..., object]) -> Plan:
        """Record ``fn`` (a function of pointers) once; each call then runs it on the owner's
        side from one small message. Use it as a decorator for a training step::

            @duet.plan
            def step(data, target):
                optimizer.zero_grad()
                loss = duet.torch.nn.functional.nll_loss(model(data), target)
                loss.backward()
                optimizer.step()
                return loss
        """
        return Plan(self._client(), fn)

    def sync(self, timeout_secs: float | None = None) -> None:
        """Wait until the owner has run every action sent so far."""
        client = self._client()
        reply, _ = client.request(lambda rid: Sync(rid=rid), timeout_secs=timeout_secs, what="sync")
        client.raise_for(reply)

    def _client(self) -> PointerClient:
        if self.client is None:
            raise UsageError("this session is not connected yet")
        return self.client

    def __repr__(self) -> str:
        return f"<duet scientist session, {'connected' if self.connected else 'not connected'}>"


async def connect_scientist(
    session: ScientistSession,
    channel: Channel,
    *,
    identity: Identity,
    fingerprints: tuple[str, str] = ("", ""),
    timeout_secs: float = 30.0,
    welcome_timeout_secs: float | None = None,
    expected_owner: str | None = None,
    **connection_options: Any,  # Any: Connection's keyword settings, checked there
) -> None:
    """Run the scientist's handshake over ``channel`` (on the library loop), then wait until
    the owner accepts (it may be confirming the scientist's ID). With ``expected_owner`` (an
    ID), the owner must prove it is that one before anything else happens."""
    connection = Connection(
        channel,
        "scientist",
        on_messages=session.on_messages,
        on_lost=session.on_lost,
        refusals=session.on_refused,
        client_id=identity.id,
        identity=identity,
        fingerprints=fingerprints,
        **connection_options,
    )
    session._attach(connection)
    await connection.open(timeout_secs=timeout_secs)
    proved = connection.peer_identity.id if connection.peer_identity else ""
    if expected_owner is not None and normalize(proved) != normalize(expected_owner):
        await connection.close("not the owner this scientist was told to reach")
        raise HandshakeError(
            f"the other side proved identity {proved}, not the owner {expected_owner} (the "
            "owner_id you gave join_duet): someone else answered, most likely the signaling "
            "server; nothing was sent. Check the owner_id, start a new session, and use a "
            "signaling server you trust"
        )
    await connection.wait_welcome(welcome_timeout_secs or timeout_secs)
    LIVE.add(session)


__all__ = ["ScientistSession", "connect_scientist"]
