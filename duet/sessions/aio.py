"""An asyncio face on scientist sessions, so one event loop can drive many owners at once.

A ``ScientistSession``'s blocking calls (``get``, ``sync``, ``len``) each park the calling
thread until one owner answers. ``AsyncSession`` issues the same messages and hands back
awaitables instead, so a coroutine per owner can wait on its owner while the others go on: one
owner's slowness never holds the others. Replies are matched to their requests by id (the
session's client does that); every await here has a timeout.

Queuing actions (``ptr.relu()``, a plan's run) stays what it is: a call that returns a pointer
at once. It can block only when more than ~500 actions wait unanswered at one owner (the
client's flow control): code driving sessions from duet's own loop (as ``Federation`` does)
must await a sync well before that.

Cancelling an await (a round's deadline) never cancels the request itself: the reply still
arrives, is matched, and is ignored; ``outstanding`` tells whether it has.

    duet = AsyncSession(sy.join_duet(...))
    await duet.sync(timeout_secs=30)
    released = await duet.request(loss_ptr, name="loss", timeout_secs=30)
    released.value if released.accepted else released.status

``duet.privacy`` is ``duet.privacy`` of the session, awaitable (the same messages, read the same
way: ``scientist/privacy.py``'s calls): ``await duet.privacy.train(model, data="digits", ...,
timeout_secs=600)`` gives ``(model, epsilon)``; ``quote``, ``budget`` and the statistics too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from ..errors import DuetTimeout, UsageError
from ..protocol.messages import ListStore, Message, Reply, Sync
from ..scientist.client import PointerClient
from ..scientist.pointer import Pointer
from ..scientist.privacy import (
    Bounds,
    Data,
    DpCall,
    Key,
    ScientistPrivacy,
    Trained,
    TrainingJob,
    answer,
)
from .scientist import ScientistSession

T = TypeVar("T")

ReplyFuture = concurrent.futures.Future[tuple[Reply, list[memoryview]]]


@dataclass(frozen=True)
class Released:
    """The owner's answer to a request: ``status`` is "accepted" (``value`` holds what was
    released), "denied", or "timeout" (nobody decided before the request's timeout)."""

    status: str
    value: Any = None  # Any: what the owner released (a tensor, a number, a list...), used as it is

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


class AsyncSession:
    """Awaitable syncs and requests on one scientist session (see the module's docstring)."""

    def __init__(self, session: ScientistSession):
        if session.client is None:
            raise UsageError("this session is not connected yet")
        self.session = session
        self._client: PointerClient = session.client
        self._issued: list[ReplyFuture] = []
        self.privacy = AsyncPrivacy(self, session.privacy)

    @property
    def outstanding(self) -> int:
        """How many syncs and requests issued here have no reply yet."""
        self._issued = [f for f in self._issued if not f.done()]
        return len(self._issued)

    @property
    def connected(self) -> bool:
        return self.session.connected and self._client.lost is None

    def _issue(self, build: Callable[[int], Message]) -> ReplyFuture:
        future = self._client.request_async(build)
        self._issued.append(future)
        return future

    async def settled(self, *, timeout_secs: float) -> None:
        """Wait until every sync and request issued here has its reply (whatever it says): the
        owner has caught up with what it was asked. Raises DuetTimeout."""
        pending = [f for f in self._issued if not f.done()]
        if not pending:
            return
        waits = [_mapped(f, lambda reply: None) for f in pending]
        done, _ = await asyncio.wait(waits, timeout=max(0.0, timeout_secs))
        for future in waits:
            future.cancel()
        if len(done) < len(waits):
            raise DuetTimeout(
                f"{len(waits) - len(done)} earlier replies still due after {timeout_secs:.1f} s"
            )

    def sync_soon(self) -> asyncio.Future[None]:
        """Send a barrier now; the awaitable completes once the owner has run everything sent
        before it (raises ConnectionLost if the owner went away first)."""
        future = self._issue(lambda rid: Sync(rid=rid))

        def check(reply: tuple[Reply, list[memoryview]]) -> None:
            PointerClient.raise_for(reply[0])

        return _mapped(future, check)

    async def sync(self, *, timeout_secs: float) -> None:
        """Wait until the owner has run every action sent so far. Raises DuetTimeout."""
        await wait_for(self.sync_soon(), timeout_secs, "sync")

    def request_soon(
        self, pointer: Pointer, *, name: str, reason: str = "", timeout_secs: float
    ) -> asyncio.Future[Released]:
        """Ask the owner to release ``pointer``'s value, now; the awaitable gives the decision.

        ``timeout_secs`` also tells the owner how long the request may wait for a decision
        (then it times out there). Values the scientist may read without asking are returned
        as accepted. A failure released by the owner raises its RemoteError when awaited.
        """
        client = self._client
        if pointer._client is not client:
            raise UsageError(f"{pointer!r} belongs to another session")
        future = pointer.send_request(name=name, reason=reason, timeout_secs=max(0.0, timeout_secs))
        self._issued.append(future)

        def decode(reply: tuple[Reply, list[memoryview]]) -> Released:
            message, buffers = reply
            if message.status in ("denied", "timeout"):
                return Released(message.status)
            client.raise_for(message)
            return Released("accepted", client.decode(message.value, buffers))

        return _mapped(future, decode)

    async def lookup(self, key: str, *, timeout_secs: float) -> Pointer:
        """A pointer to the owner's listed object with this id or (unique) tag, as
        ``session.store[key]`` gives, without blocking. Raises UsageError if there is none."""
        client = self._client
        future = self._issue(lambda rid: ListStore(rid=rid))
        reply, _ = await wait_for(_mapped(future, lambda r: r), timeout_secs, "listing the store")
        client.raise_for(reply)
        rows = reply.value if isinstance(reply.value, list) else []
        rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str)]
        matches = [r for r in rows if r["id"] == key] or [
            r for r in rows if key in (r.get("tags") or [])
        ]
        if len(matches) != 1:
            found = "no object" if not matches else f"{len(matches)} objects"
            raise UsageError(f"{found} in the owner's store has the id or tag {key!r}")
        row = matches[0]
        meta = {k: row[k] for k in ("fields", "shape", "dtype", "tags", "description") if k in row}
        return client.pointer(row["id"], row.get("kind"), meta, owned=False)

    async def request(
        self, pointer: Pointer, *, name: str, reason: str = "", timeout_secs: float
    ) -> Released:
        """``request_soon`` and wait for the decision (at most ``timeout_secs`` and a margin for
        the reply to travel). Raises DuetTimeout, ConnectionLost."""
        future = self.request_soon(pointer, name=name, reason=reason, timeout_secs=timeout_secs)
        return await wait_for(future, timeout_secs + REPLY_MARGIN_SECS, f"request {name!r}")

    async def exchange(
        self, build: Callable[[int], Message], *, timeout_secs: float, what: str
    ) -> object:
        """Send the message ``build(rid)`` makes and await its Reply's value, decoded (its
        buffers included). Raises the owner's error as the class its code names (naming the
        operation), DuetTimeout naming ``what``, ConnectionLost."""
        client = self._client
        future = self._issue(build)

        def decode(reply: tuple[Reply, list[memoryview]]) -> object:
            message, buffers = reply
            client.raise_for(message)
            return client.decode(message.value, buffers)

        return await wait_for(_mapped(future, decode), timeout_secs, what)

    def __repr__(self) -> str:
        return f"<AsyncSession on {self.session!r}, {self.outstanding} outstanding>"


REPLY_MARGIN_SECS = 5.0


class AsyncTrainingJob:
    """A DP-SGD job the owner runs, awaited: ``await job.wait(timeout_secs=...)`` gives
    ``(model, epsilon)``. ``progress``, ``result`` and ``on_progress`` are the job's as
    ``TrainingJob`` has them. A wait that times out leaves the job running on the owner (its
    reply still counts in ``AsyncSession.outstanding`` until it comes)."""

    def __init__(self, job: TrainingJob, future: asyncio.Future[Trained]):
        self._job = job
        self._future = future

    @property
    def progress(self) -> str:
        return self._job.progress

    @property
    def result(self) -> dict[str, object] | None:
        return self._job.result

    @property
    def on_progress(self) -> Callable[[str], None] | None:
        return self._job.on_progress

    @on_progress.setter
    def on_progress(self, listener: Callable[[str], None] | None) -> None:
        self._job.on_progress = listener

    def done(self) -> bool:
        return self._future.done()

    async def wait(self, *, timeout_secs: float) -> Trained:
        """The trained model (or its weights) and its epsilon. Raises the owner's error
        (QuotaExceeded over budget, UsageError for settings it refuses), DuetTimeout."""
        return await wait_for(asyncio.shield(self._future), timeout_secs, "the DP training job")


class AsyncPrivacy:
    """``duet.privacy`` on one session, awaitable: every call takes ``timeout_secs`` and
    raises DuetTimeout after it; the owner's errors are raised as duet's classes."""

    def __init__(self, aio: AsyncSession, privacy: ScientistPrivacy):
        self._aio = aio
        self._calls = privacy

    def _soon(self, call: DpCall[T]) -> asyncio.Future[T]:
        client = self._aio._client
        future = self._aio._issue(call.build)
        return _mapped(future, lambda reply: call.finish(answer(client, *reply, call.what)))

    async def _run(self, call: DpCall[T], timeout_secs: float) -> T:
        return await wait_for(self._soon(call), timeout_secs, call.what)

    def submit(self, model: nn.Module | Pointer, **settings: Any) -> AsyncTrainingJob:
        """Send a DP training job now (``session.privacy.train``'s settings: data, loss,
        optimizer, lr, batch_size, epochs, max_grad_norm, noise_multiplier or epsilon);
        returns the job to await."""
        call, job = self._calls.training_call(model, **settings)
        return AsyncTrainingJob(job, self._soon(call))

    async def train(
        self, model: nn.Module | Pointer, *, timeout_secs: float, **settings: Any
    ) -> Trained:
        """``submit`` and wait: ``(model, epsilon)`` (the weights, a state dict, for a pointer
        to a model of no known class)."""
        return await self.submit(model, **settings).wait(timeout_secs=timeout_secs)

    async def quote(
        self, kind: str, target: Pointer | nn.Module, *, timeout_secs: float, **settings: Any
    ) -> dict[str, object]:
        """What a release would cost now, nothing run (``session.privacy.quote``)."""
        return await self._run(self._calls.quote_call(kind, target, **settings), timeout_secs)

    async def budget(self, data: str, *, timeout_secs: float) -> dict[str, object]:
        """Your budget on the published dataset tagged ``data`` (``session.privacy.budget``)."""
        return await self._run(self._calls.budget_call(data), timeout_secs)

    async def history(
        self, data: str, *, last: int = 100, timeout_secs: float
    ) -> list[dict[str, object]]:
        """Your newest charges on ``data`` (``session.privacy.history``)."""
        return await self._run(self._calls.history_call(data, last=last), timeout_secs)

    async def statistic(
        self,
        kind: str,
        data: Data,
        *,
        bounds: Bounds | None = None,
        epsilon: float,
        bins: int | None = None,
        by: str | None = None,
        keys: list[Key] | None = None,
        timeout_secs: float,
    ) -> object:
        """A DP ``kind`` ("mean", "sum", "count", "histogram") of the published ``data`` (a
        tensor, a table or one of its columns; by group with ``by`` and ``keys``: the owner's
        list of values, in the keys' order)."""
        call = self._calls.statistic_call(
            kind, data, bounds=bounds, epsilon=epsilon, bins=bins, by=by, keys=keys,
            timeout_secs=timeout_secs,
        )  # fmt: skip
        return await self._run(call, timeout_secs)


def _mapped(
    future: ReplyFuture, fn: Callable[[tuple[Reply, list[memoryview]]], T]
) -> asyncio.Future[T]:
    """An asyncio future (on the running loop) for ``fn(reply)`` of a client's reply future.

    Cancelling it does not cancel the request: the reply is still matched when it comes.
    """
    loop = asyncio.get_running_loop()
    result: asyncio.Future[T] = loop.create_future()

    def settle(done: ReplyFuture) -> None:
        if result.done():  # cancelled by its waiter meanwhile
            return
        try:
            result.set_result(fn(done.result()))
        except BaseException as exc:  # the reply's error, for whoever awaits
            result.set_exception(exc)

    def arrived(done: ReplyFuture) -> None:  # on the library's loop thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, done)

    future.add_done_callback(arrived)
    # nobody may await it after a deadline: its error is then nobody's news
    result.add_done_callback(lambda f: f.cancelled() or f.exception())
    return result


async def wait_for(awaitable: Awaitable[T], timeout_secs: float, what: str) -> T:
    """Await ``awaitable`` at most ``timeout_secs``; raises DuetTimeout naming ``what``."""
    try:
        return await asyncio.wait_for(awaitable, max(0.0, timeout_secs))
    except TimeoutError:
        raise DuetTimeout(f"{what}: no reply from the owner within {timeout_secs:.1f} s") from None


__all__ = ["AsyncPrivacy", "AsyncSession", "AsyncTrainingJob", "Released", "wait_for"]
