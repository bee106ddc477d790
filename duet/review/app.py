"""The review page's routes (Starlette), and who may use them.

Every route sits under the page's token (``/<token>/...``): a path without it, or with a wrong
one (compared in constant time), is a 404 that says nothing more. The token is never a cookie:
a decision (a POST) carries it in its own path, so no other site can make the owner's browser
decide (it cannot know the token), and a POST whose ``Origin`` is not the page's own is refused
all the same. Requests must name the page's host (127.0.0.1 or localhost, with its port), so a
name some other site points at 127.0.0.1 (DNS rebinding) reaches nothing.

A decision goes through ``request.accept(via="review page")`` / ``deny``, the same path as the
owner's own calls: the audit log records it, "decided by owner (review page)".
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from ..display import quoted
from ..errors import UsageError
from ..protocol.messages import RequestStatus
from .changes import Changes
from .render import page, sections
from .state import read_state

if TYPE_CHECKING:
    from ..owner.requests import Request as OwnerRequest
    from ..sessions.owner import OwnerSession

VIA = "review page"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'"
    ),
}
#: what a decision from the page's own script says about itself (a form posted without the
#: script is answered with a redirect back to the page instead of JSON)
SCRIPT_HEADER = "x-duet-review"
_ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


class ReviewPage:
    """The routes of one owner's page."""

    def __init__(self, owner: OwnerSession, token: str, port: int, changes: Changes):
        self.owner = owner
        self._token = token.encode()
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}
        self.changes = changes
        self.assets = {name: _asset(name) for name in _ASSETS}

    # ---- who may
    def refusal(self, request: Request) -> Response | None:
        """Why this HTTP request gets nothing, or None: the token (404) and the host (403)."""
        given = str(request.path_params.get("token", "")).encode()
        if not secrets.compare_digest(given, self._token):
            return PlainTextResponse("Not Found", status_code=404, headers=HEADERS)
        if request.headers.get("host", "") not in self.hosts:
            return PlainTextResponse(
                "refused: the review page answers at 127.0.0.1 only", 403, headers=HEADERS
            )
        return None

    def foreign(self, request: Request) -> Response | None:
        """A POST from another site (its Origin, or the browser's Sec-Fetch-Site, says so)."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.origins:
            return _answer(
                request, 403, f"refused: a decision from {quoted(origin)}, not this page"
            )
        if request.headers.get("sec-fetch-site") == "cross-site":
            return _answer(request, 403, "refused: a decision from another site")
        return None

    # ---- routes
    async def index(self, request: Request) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        state = await run_in_threadpool(read_state, self.owner)
        return HTMLResponse(page(state), headers=HEADERS)

    async def slash(self, request: Request) -> Response:
        refused = self.refusal(request)
        return refused or RedirectResponse(f"{request.url.path}/", 307, headers=HEADERS)

    async def state(self, request: Request) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        state = await run_in_threadpool(read_state, self.owner)
        return HTMLResponse(sections(state), headers=HEADERS)

    async def asset(self, request: Request) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if name not in self.assets:
            return PlainTextResponse("Not Found", status_code=404, headers=HEADERS)
        return Response(self.assets[name], media_type=_ASSETS[name], headers=HEADERS)

    async def events(self, request: Request) -> Response:
        """Server-sent events: ``changed`` when something the page shows changed (the page
        fetches the state again), ``closed`` when the owner's session closed."""
        refused = self.refusal(request)
        if refused is not None:
            return refused
        return StreamingResponse(self._stream(), media_type="text/event-stream", headers=HEADERS)

    async def _stream(self) -> AsyncIterator[str]:
        changes = self.changes
        changed = changes.subscribe()
        try:
            # the page reads the state when the stream opens: nothing between its first
            # rendering and this subscription is missed
            yield "retry: 2000\nevent: changed\ndata: open\n\n"
            while not changes.closed:
                await changed.wait()
                changed.clear()
                if changes.closed:
                    break
                yield "event: changed\ndata: \n\n"
            yield "event: closed\ndata: the owner's session closed\n\n"
        finally:  # the stream ended, or the page went away
            changes.unsubscribe(changed)

    async def decide(self, request: Request) -> Response:
        refused = self.refusal(request) or self.foreign(request)
        if refused is not None:
            return refused
        action = request.path_params["action"]
        if action not in ("accept", "deny"):
            return PlainTextResponse("Not Found", status_code=404, headers=HEADERS)
        status, message = await run_in_threadpool(
            self._decide, str(request.path_params["request_id"]), action
        )
        return _answer(request, status, message)

    def _decide(self, request_id: str, action: str) -> tuple[int, str]:
        try:
            found = self.owner.requests[request_id]
        except KeyError:
            return 404, f"there is no request {quoted(request_id)} (it may have been forgotten)"
        name = quoted(found.name)
        try:
            if action == "accept":
                found.accept(via=VIA)
            else:
                found.deny(via=VIA)
        except UsageError:
            if found.status is RequestStatus.PENDING:
                raise
            return 409, f"request {name} {_decided(found)}; nothing changed"
        done = "accepted: the value was sent" if action == "accept" else "denied"
        return 200, f"request {name} {done}"

    def routes(self) -> list[Route]:
        return [
            Route("/{token}", self.slash, methods=["GET"]),
            Route("/{token}/", self.index, methods=["GET"]),
            Route("/{token}/state", self.state, methods=["GET"]),
            Route("/{token}/events", self.events, methods=["GET"]),
            Route("/{token}/static/{name}", self.asset, methods=["GET"]),
            Route("/{token}/requests/{request_id}/{action}", self.decide, methods=["POST"]),
        ]


def _decided(request: OwnerRequest) -> str:
    """How a request was decided, for the owner who tries to decide it again."""
    by = request.decided_by
    if request.status is RequestStatus.TIMEOUT:
        return "had already timed out" if by in ("", "timeout") else f"had already ended: {by}"
    return f"was already {request.status.value}" + (f" by {by}" if by else "")


def _answer(request: Request, status: int, message: str) -> Response:
    """The page's script gets JSON (it shows the message); a form posted without the script
    is sent back to the page."""
    if request.headers.get(SCRIPT_HEADER) == "1" or status >= 400:
        body = json.dumps({"ok": status < 400, "message": message})
        return Response(body, status, media_type="application/json", headers=HEADERS)
    token = request.path_params.get("token", "")
    return RedirectResponse(f"/{token}/", 303, headers=HEADERS)


def build_app(owner: OwnerSession, token: str, port: int, changes: Changes) -> Starlette:
    """The review page of ``owner`` as an ASGI app."""
    return Starlette(routes=ReviewPage(owner, token, port, changes).routes())


__all__ = ["HEADERS", "VIA", "ReviewPage", "build_app"]
