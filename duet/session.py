"""Sessions: what ``launch_duet``, ``join_duet`` and ``duet_pair`` return.

An ``OwnerSession`` holds the owner's store and request queue and serves the scientist through a
``PeerService``; a ``ScientistSession`` holds pointers, ``duet.torch`` and ``duet.python``. Both
sit on a ``Connection`` over any Channel (in memory or WebRTC) and are used from the caller's
thread; the network runs on the library's background loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .connection import Connection, State, frame_limit_for
from .errors import ConnectionLost, UsageError
from .owner.context import OwnerSettings
from .owner.requests import Request, RequestQueue
from .owner.service import PeerService
from .owner.store import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_OBJECTS,
    DEFAULT_MAX_PENDING,
    ObjectStore,
    OwnerStoreView,
    StoredObject,
)
from .owner.tuning import tune_owner_process
from .protocol.allowlist import type_key
from .protocol.messages import ErrorInfo, Failure, Sync
from .runtime import run
from .scientist.client import PointerClient
from .scientist.library import RemoteLibrary
from .scientist.plan import Plan
from .scientist.pointer import Pointer
from .scientist.store_view import RemoteStore
from .transport.channel import Channel

log = logging.getLogger(__name__)
WATCH_SECS = 5.0
BUSY_NOTICE_SECS = 30.0


class _Session:
    role = ""
    connection: Connection | None = None

    @property
    def connected(self) -> bool:
        """True while the peer is there."""
        return self.connection is not None and self.connection.state is State.OPEN

    @property
    def client_id(self) -> str:
        return self.connection.client_id if self.connection else ""

    _embedded_server: Any = None  # a signaling server launch_duet started for this session

    def close(self, *, timeout_secs: float = 10.0) -> None:
        """Leave the session; the peer sees it closed."""
        connection = self.connection
        if connection is not None and connection.state not in (State.CLOSING, State.CLOSED):
            reason = "closed by the " + self.role
            run(connection.close(reason), timeout_secs=timeout_secs, what="closing")
        server, self._embedded_server = self._embedded_server, None
        if server is not None:
            run(server.close(), timeout_secs=timeout_secs, what="stopping the signaling server")

    def wait_closed(self, timeout_secs: float | None = None) -> None:
        """Block until the peer has left (or the session was closed). Raises DuetTimeout."""
        if self.connection is None:
            return
        connection = self.connection

        async def wait() -> None:
            await connection.wait_closed()

        run(wait(), timeout_secs=timeout_secs, what="waiting for the peer to leave")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> Connection:
        if self.connection is None:
            raise UsageError("this session is not connected yet")
        return self.connection


class OwnerSession(_Session):
    """The data owner's side: ``store``, ``requests``, and ``x.send(duet, ...)`` to publish."""

    role = "owner"

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        max_pending_requests: int = DEFAULT_MAX_PENDING,
        redact_errors: bool = False,
        data_root: str | Path | None = None,
    ):
        tune_owner_process()
        self.settings = OwnerSettings(data_root=Path(data_root).resolve() if data_root else None)
        self.objects = ObjectStore(
            max_bytes=max_bytes, max_objects=max_objects, max_pending=max_pending_requests
        )
        self.store = OwnerStoreView(self.objects)
        self.requests = RequestQueue(on_decided=self._route_decision, data_tags=self._data_tags)
        self.redact_errors = redact_errors
        self._services: dict[str, PeerService] = {}
        self.peer = "scientist"

    def publish(
        self,
        value: Any,
        *,
        pointable: bool = True,
        tags: list[str] | None = None,
        description: str = "",
    ) -> StoredObject:
        """Put one of the owner's values in the store; it stays private (gets are requests)."""
        return self.objects.publish(value, pointable=pointable, tags=tags, description=description)

    def _data_tags(self) -> set[str]:
        return {tag for entry in self.objects.published() for tag in entry.tags}

    def _attach(self, connection: Connection, peer: str) -> None:
        self.connection = connection
        self.peer = peer
        loop = connection.loop

        def call_later(delay: float, fn: Any) -> None:
            loop.call_soon_threadsafe(loop.call_later, delay, fn)

        service = self._services[peer] = PeerService(
            peer,
            self.objects,
            self.requests,
            connection.send_if_open,
            call_later,
            redact_errors=self.redact_errors,
            settings=self.settings,
        )

        def worker_died(reason: str) -> None:  # tell the scientist, rather than go deaf
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(connection.close(reason)))

        service.on_dead = worker_died
        loop.call_soon_threadsafe(self._watch, service, connection, None)

    def _watch(self, service: PeerService, connection: Connection, told: Any) -> None:
        """Every few seconds, on the loop: tell both sides when one call has run for long (the
        owner's worker is busy, not gone)."""
        if connection.state in (State.CLOSING, State.CLOSED):
            return
        running = service.running
        if running is not None and running is not told:
            op, since = running
            busy = time.monotonic() - since
            if busy >= BUSY_NOTICE_SECS:
                text = f"the owner has been running {op} for {busy:.0f} s; later actions wait"
                log.warning(text)
                info = ErrorInfo(code="owner_busy", message=text, op=op)
                connection.send_if_open([Failure(result=None, error=info)])
                told = running
        connection.loop.call_later(WATCH_SECS, self._watch, service, connection, told)

    def _on_messages(self, messages: list[Any], buffers: list[memoryview]) -> None:
        service = self._services[self.peer]
        if not service.submit(messages, buffers) and self.connection is not None:
            reason = (
                f"the scientist sent more than {service.max_backlog} actions the owner had not "
                "run yet (flooding); the owner closed the session"
            )
            log.warning(reason)
            self._closing = asyncio.ensure_future(self.connection.close(reason))

    def _on_lost(self, exc: ConnectionLost) -> None:
        self.requests.cancel_peer(self.peer)
        service = self._services.pop(self.peer, None)
        if service is not None:
            service.stop()
        freed = self.objects.drop_peer(self.peer)
        log.info("the scientist left (%s); freed %d of its objects", exc, freed)

    def _route_decision(self, request: Request) -> None:
        service = self._services.get(request.peer)
        if service is not None:
            service.on_decided(request)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<duet owner session, {state}: {len(self.store)} published, {len(self.requests)} pending requests>"


class ScientistSession(_Session):
    """The data scientist's side: ``store``, ``torch``, ``python`` and pointers."""

    role = "scientist"

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

    def _on_messages(self, messages: list[Any], buffers: list[memoryview]) -> None:
        assert self.client is not None
        self.client.on_messages(messages, buffers)

    def _on_lost(self, exc: ConnectionLost) -> None:
        if self.client is not None:
            self.client.on_lost(exc)

    def send_value(
        self, value: Any, *, tags: list[str] | None = None, description: str = ""
    ) -> Pointer:
        client = self._client()
        object_id = client.put(value, tags=tags, description=description)
        meta: dict[str, Any] = {}
        if isinstance(value, torch.Tensor):
            meta = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
        return client.pointer(object_id, type_key(value), meta, owned=True)

    def plan(self, fn: Callable[..., Any]) -> Plan:
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


_LIVE: weakref.WeakSet[_Session] = weakref.WeakSet()


@atexit.register
def _close_live_sessions() -> None:
    # a notebook or script that ends without close(): tell the peer now, rather than leaving
    # it to notice the silence a few seconds later
    for session in list(_LIVE):
        try:
            session.close(timeout_secs=2.0)
        except Exception:  # best effort while the interpreter shuts down
            pass


async def connect_sessions(
    session: OwnerSession | ScientistSession,
    channel: Channel,
    *,
    peer: str = "scientist",
    timeout_secs: float = 30.0,
    client_id: str = "",
) -> None:
    """Run the handshake for one side over ``channel`` (on the library loop)."""
    connection = Connection(
        channel,
        session.role,
        on_messages=lambda m, b: session._on_messages(m, b),
        on_lost=lambda exc: session._on_lost(exc),
        client_id=client_id,
    )
    if isinstance(session, OwnerSession):
        # announced in the Hello: the scientist refuses locally what could never fit
        connection.max_bytes = max_bytes = session.objects.default_quota[0]
        reason = f"the owner lets a scientist store {max_bytes} bytes"
        connection.set_max_frame_bytes(frame_limit_for(max_bytes), reason=reason)
        session._attach(connection, peer)
    else:
        session._attach(connection)
    await connection.open(timeout_secs=timeout_secs)
    _LIVE.add(session)


def duet_pair(
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_pending_requests: int = DEFAULT_MAX_PENDING,
    redact_errors: bool = False,
    data_root: str | Path | None = None,
    timeout_secs: float = 30.0,
) -> tuple[OwnerSession, ScientistSession]:
    """An owner and a scientist joined in this process over an in-memory channel.

    The channel carries real encoded frames, exactly as the network does.

    >>> owner, scientist = duet_pair()
    """
    from .transport.memory import memory_pair

    owner = OwnerSession(
        max_bytes=max_bytes,
        max_objects=max_objects,
        max_pending_requests=max_pending_requests,
        redact_errors=redact_errors,
        data_root=data_root,
    )
    scientist = ScientistSession()

    async def join() -> None:
        a, b = memory_pair()
        await asyncio.gather(
            connect_sessions(owner, a, timeout_secs=timeout_secs),
            connect_sessions(scientist, b, timeout_secs=timeout_secs),
        )

    run(join(), timeout_secs=timeout_secs + 5, what="joining the in-memory duet")
    return owner, scientist


# ---------------------------------------------------------------- .send on torch objects


def _send(
    self: Any,
    session: Any,
    *,
    pointable: bool = True,
    tags: list[str] | None = None,
    description: str = "",
) -> Any:
    """Send this tensor or model to a duet session.

    To an owner session: publish it in the owner's store (``pointable=False`` keeps it out of the
    scientist's listing); returns the stored entry. To a scientist session: store it on the
    owner's side as the scientist's own object; returns a pointer.
    """
    if isinstance(session, OwnerSession):
        return session.publish(self, pointable=pointable, tags=tags, description=description)
    if isinstance(session, ScientistSession):
        return session.send_value(self, tags=tags, description=description)
    raise UsageError(f"send() takes a duet session, not {type(session).__name__}")


def install_send() -> None:
    """Add ``send`` to torch.Tensor and torch.nn.Module (and nothing else in torch)."""
    torch.Tensor.send = _send  # type: ignore[attr-defined]
    nn.Module.send = _send  # type: ignore[attr-defined]


__all__ = ["OwnerSession", "ScientistSession", "duet_pair", "install_send"]
