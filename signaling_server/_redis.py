"""Several signaling instances sharing sessions through Redis: a directory and a channel each.

Every instance started with a Redis URL gets a random instance ID and subscribes to its own
pub/sub channel ``duet:signaling:instance:<id>``. An owner's session stays on the instance its
owner is connected to; that instance writes ``duet:signaling:session:<session id> -> <instance
id>`` with an expiry of the session's TTL (renewed while the session lives, deleted when it
ends). An instance that dies stops renewing, so its sessions leave the directory by themselves,
and a message published to its channel reaches no one (``PUBLISH`` answers 0 receivers), which
is how the others tell it is gone before the expiry.

What travels on the channels is an :class:`Envelope`: one JSON object, validated with a strict
pydantic model on arrival (anything else is dropped and logged), carrying a scientist's raw
message one way and the server's reply the other. The messages inside are parsed by the same
models as on a local connection (``signaling_server.protocol``), so nothing written into Redis
is trusted beyond what a websocket client is trusted with.

redis-py (the ``network`` extra) is imported only by an instance started with a Redis URL.
Every Redis call is bounded by ``REDIS_TIMEOUT_SECS`` (waiting for one of the pool's
``MAX_REDIS_CONNECTIONS`` included); the channel reader waits without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .protocol import MAX_SDP_CHARS, MAX_SESSION_ID_CHARS

if TYPE_CHECKING:
    import redis.asyncio as redis

logger = logging.getLogger(__name__)

#: Every Redis command (but the channel reader's wait) gives up after this many seconds.
REDIS_TIMEOUT_SECS = 5.0
#: Commands in flight at once share this many connections (the channel reader holds one more);
#: a burst of joins waits for a free one rather than opening a connection each.
MAX_REDIS_CONNECTIONS = 32
SESSION_KEY = "duet:signaling:session:"
CHANNEL = "duet:signaling:instance:"
#: The largest relayed message: a scientist's message is refused on arrival above 4x the
#: server's ``max_message_bytes`` (the websocket layer) and an SDP is at most 1 Mi characters.
MAX_RELAYED_CHARS = 4 * MAX_SDP_CHARS
_HEX = r"^[0-9a-f]+$"


class RedisUnavailable(Exception):
    """Redis could not be reached or did not answer in time."""


class Envelope(BaseModel):
    """One relayed event between two instances about one scientist's connection.

    ``open``: a scientist connected to ``src`` joins ``session_id`` held by the receiver.
    ``msg``: what that scientist sent (``binary``: it was a binary message, latin-1 here).
    ``gone``: it disconnected. ``send``: the server's message for it. ``close``: close it.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["open", "msg", "gone", "send", "close"]
    src: Annotated[str, Field(min_length=16, max_length=16, pattern=_HEX)]
    conn: Annotated[str, Field(min_length=32, max_length=32, pattern=_HEX)]
    data: Annotated[str, Field(max_length=MAX_RELAYED_CHARS)] = ""
    binary: bool = False
    session_id: Annotated[str, Field(max_length=MAX_SESSION_ID_CHARS)] = ""
    ip: Annotated[str, Field(max_length=64)] = ""
    code: Annotated[int, Field(ge=1000, le=4999)] = 1000
    reason: Annotated[str, Field(max_length=123)] = ""


class RedisBus:
    """This instance's side of Redis: the session directory and the instances' channels.

    ``on_envelope`` is called (on the loop, in arrival order) with each valid envelope that
    reaches this instance's channel; it must not block.
    """

    def __init__(self, url: str, on_envelope: Callable[[Envelope], None]) -> None:
        try:
            import redis.asyncio as redis
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise RedisUnavailable(
                "--redis-url needs redis-py: pip install 'duet[network]' (or redis)"
            ) from exc
        #: what a failed Redis call raises
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self.url = url
        self.instance = secrets.token_hex(8)
        self.channel = CHANNEL + self.instance
        #: the redis.asyncio client, for other parts of the server to share
        self.redis: redis.Redis = redis.Redis.from_pool(
            redis.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_REDIS_CONNECTIONS,
                timeout=REDIS_TIMEOUT_SECS,
                socket_timeout=REDIS_TIMEOUT_SECS,
                socket_connect_timeout=REDIS_TIMEOUT_SECS,
            )
        )
        self._on_envelope = on_envelope
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and subscribe; raise :class:`RedisUnavailable` naming the URL if it fails."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECS):
                await self.redis.ping()
                await self._pubsub.subscribe(self.channel)
        except self._errors as exc:
            await self.close()
            raise RedisUnavailable(
                f"cannot reach Redis at {self.url} ({exc or type(exc).__name__}); check that "
                "redis-server runs there and that this process may open its socket"
            ) from exc
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *self._errors):
                await self._reader
        with contextlib.suppress(*self._errors):
            await self._pubsub.aclose()
        with contextlib.suppress(*self._errors):
            await self.redis.aclose()

    async def _read(self) -> None:
        try:
            async for item in self._pubsub.listen():
                if item.get("type") != "message":
                    continue
                envelope = self._decode(item.get("data"))
                if envelope is not None:
                    self._on_envelope(envelope)
        except self._errors as exc:
            logger.error(
                "lost Redis at %s (%s): joins relayed between instances fail until restart",
                self.url,
                exc,
            )

    async def listening(self, instances: set[str]) -> set[str]:
        """Those of ``instances`` that still listen on their channel (one ``PUBSUB NUMSUB``)."""
        counts = await self._call(self.redis.pubsub_numsub(*(CHANNEL + i for i in instances)))
        return {
            str(channel.decode() if isinstance(channel, bytes) else channel).removeprefix(CHANNEL)
            for channel, count in counts
            if count
        }

    @staticmethod
    def _decode(raw: Any) -> Envelope | None:
        if not isinstance(raw, bytes) or len(raw) > 2 * MAX_RELAYED_CHARS:
            logger.warning("dropped a relayed message that is no envelope (%s)", type(raw))
            return None
        try:
            return Envelope.model_validate_json(raw)
        except pydantic.ValidationError as exc:
            logger.warning("dropped an invalid relayed message: %s", exc.errors()[0]["msg"])
            return None

    # ----------------------------------------------------------------- directory

    async def claim(self, session_id: str, ttl: float) -> None:
        """Write ``session_id -> this instance``, expiring after ``ttl``."""
        await self._call(
            self.redis.set(SESSION_KEY + session_id, self.instance, ex=_whole(ttl), nx=True)
        )

    async def renew(self, session_id: str, ttl: float) -> None:
        await self._call(self.redis.expire(SESSION_KEY + session_id, _whole(ttl)))

    async def forget(self, session_id: str) -> None:
        await self._call(self.redis.delete(SESSION_KEY + session_id))

    async def locate(self, session_id: str) -> str | None:
        """The instance holding ``session_id``, or None if the directory does not know it."""
        value = await self._call(self.redis.get(SESSION_KEY + session_id))
        return value.decode("ascii", "replace") if isinstance(value, bytes) else None

    # ----------------------------------------------------------------- channels

    async def publish(self, instance: str, envelope: Envelope) -> int:
        """Send ``envelope`` to ``instance``; return how many subscribers got it (0: gone)."""
        count = await self._call(self.redis.publish(CHANNEL + instance, envelope.model_dump_json()))
        return int(count)

    async def _call(self, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECS):
                return await awaitable
        except self._errors as exc:
            raise RedisUnavailable(f"Redis did not answer ({exc or type(exc).__name__})") from exc


def _whole(ttl: float) -> int:
    return max(1, math.ceil(ttl))
