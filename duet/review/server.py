"""The review page's server: uvicorn on 127.0.0.1, a random port, in a thread of its own.

The socket is bound (port 0: the system picks a free one) on the caller's thread, so the
page's address is known at once and a browser that opens it before the server runs waits in
the socket's backlog. The server has its own event loop on its own thread: nothing the page
does waits on the library's loop, and nothing the owner's scientists do waits on the page.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
from typing import TYPE_CHECKING

from .changes import Changes

if TYPE_CHECKING:
    import uvicorn

    from ..sessions.owner import OwnerSession

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
STOP_SECS = 5.0


class ReviewServer:
    """The owner's review page, served at ``url`` (which carries its secret token) until
    ``stop()`` (the owner session's ``close()`` calls it)."""

    def __init__(self, owner: OwnerSession):
        self.owner = owner
        self.token = secrets.token_urlsafe(32)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        self.changes = Changes()
        self._server: uvicorn.Server | None = None  # the uvicorn.Server, made on the page's thread
        self._stopping = threading.Event()
        owner.requests.add_listener(self.changes.notify)
        owner.requests.add_listener(self.changes.notify, arrivals=True)
        owner.audit.add_watcher(self.changes.notify)  # the page reads the log again
        self._thread = threading.Thread(target=self._run, name="duet-review", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The page's address, with its token: whoever has it can decide requests."""
        return f"http://{HOST}:{self.port}/{self.token}/"

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _run(self) -> None:
        # imported here, off the caller's thread: launch_duet does not wait for them
        import uvicorn

        from .app import build_app

        try:
            app = build_app(self.owner, self.token, self.port, self.changes)
            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                loop="asyncio",
                http="h11",
                ws="none",
                timeout_graceful_shutdown=int(STOP_SECS),
            )
            self._server = uvicorn.Server(config)
            if self._stopping.is_set():
                return
            asyncio.run(self._serve())
        except Exception:
            log.exception("the review page stopped")
        finally:
            self._socket.close()

    async def _serve(self) -> None:
        self.changes.loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            return
        server = self._server
        assert server is not None  # made before this runs
        await server.serve(sockets=[self._socket])

    def stop(self) -> None:
        """Stop serving: open pages are told the session closed, the port is free again."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        owner = self.owner
        owner.requests.remove_listener(self.changes.notify)
        owner.audit.remove_listener(self.changes.notify)
        self.changes.close()
        server = self._server
        if server is not None:
            server.should_exit = True
        self._thread.join(STOP_SECS * 2)
        if self._thread.is_alive():
            log.warning("the review page did not stop within %.0f s", STOP_SECS * 2)

    def __repr__(self) -> str:
        state = "stopped" if self._stopping.is_set() else f"at {self.origin}/<token>/"
        return f"<duet review page {state}>"
