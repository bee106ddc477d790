"""What both sides' sessions share: being connected, closing, waiting for the peer to leave,
and being closed when the interpreter exits without ``close()``.

The owner's session is in owner.py (one ``OwnerSession`` serving many scientists), the
scientist's in scientist.py (what ``join_duet`` returns). Sessions are used from the caller's
thread; the network runs on the library's background loop.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import Self

from ..connection import Connection, State
from ..errors import UsageError
from ..pairing.server import SignalingProcess
from ..protocol.fields import Role
from ..runtime import run

log = logging.getLogger(__name__)


class Session:
    role: Role
    connection: Connection | None = None

    @property
    def connected(self) -> bool:
        """True while the peer is there."""
        return self.connection is not None and self.connection.state is State.OPEN

    @property
    def client_id(self) -> str:
        return self.connection.client_id if self.connection else ""

    _embedded_server: SignalingProcess | None = None  # one launch_duet started (its child)

    def close(self, *, timeout_secs: float = 10.0) -> None:
        """Leave the session; the peer sees it closed."""
        connection = self.connection
        if connection is not None and connection.state not in (State.CLOSING, State.CLOSED):
            reason = "closed by the " + self.role
            run(connection.close(reason), timeout_secs=timeout_secs, what="closing")
        server, self._embedded_server = self._embedded_server, None
        if server is not None:
            server.close()

    def wait_closed(self, timeout_secs: float | None = None) -> None:
        """Block until the peer has left (or the session was closed). Raises DuetTimeout."""
        if self.connection is None:
            return
        connection = self.connection

        async def wait() -> None:
            await connection.wait_closed()

        run(wait(), timeout_secs=timeout_secs, what="waiting for the peer to leave")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> Connection:
        if self.connection is None:
            raise UsageError("this session is not connected yet")
        return self.connection


LIVE: weakref.WeakSet[Session] = weakref.WeakSet()


@atexit.register
def _close_live_sessions() -> None:
    # a notebook or script that ends without close(): tell the peer now, rather than leaving
    # it to notice the silence a few seconds later
    for session in list(LIVE):
        try:
            session.close(timeout_secs=2.0)
        except Exception:  # best effort while the interpreter shuts down
            pass
    from ..runtime import shutdown

    shutdown()


__all__ = ["LIVE", "Session"]
