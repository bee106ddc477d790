"""The scientist's action queue, seen through a connection that only records frames."""

from __future__ import annotations

from typing import Any

import pytest

from duet.protocol import allowlist
from duet.protocol.messages import Call, Delete
from duet.scientist import client as client_module
from duet.scientist.client import PointerClient


class RecordingConnection:
    """Stands in for a Connection: frames are recorded, flushes happen when the test says."""

    def __init__(self) -> None:
        self.frames: list[list[Any]] = []
        self.waited: list[bool] = []  # per frame: whether the sender waited until it went
        self.loop = self

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        pass

    def send(
        self,
        messages: list[Any],
        buffers: list[memoryview] | None = None,
        *,
        until_sent: float | None = None,
    ) -> None:
        self.frames.append(messages)
        self.waited.append(until_sent is not None)


def refs(message: Any) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("$") == "ref":
                found.add(value["id"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk([message.args, message.kwargs])
    if message.target is not None:
        found.add(message.target)
    return found


def forward_pass(steps: int) -> tuple[list[Any], Any]:
    """One frame of a forward pass: each result replaces the previous one."""
    connection = RecordingConnection()
    client = PointerClient(connection)  # type: ignore[arg-type]
    relu = allowlist.function("torch.nn.functional.relu")
    x = client.call(allowlist.function("torch.zeros"), None, (4,), {})
    for _ in range(steps):
        x = client.call(relu, None, (x,), {})
    client.flush()
    [frame] = connection.frames
    return frame, x


def test_an_action_or_two_before_a_request_do_not_hold_the_caller():
    """With the owner idle, an op followed by a get goes as before: the op's frame is handed
    on without the caller waiting for it to leave, then the get's."""
    from duet.protocol.messages import Reply, Sync

    connection = RecordingConnection()
    client = PointerClient(connection)  # type: ignore[arg-type]
    relu = allowlist.function("torch.nn.functional.relu")
    x = client.call(allowlist.function("torch.zeros"), None, (4,), {})
    for _ in range(5):
        sent = len(connection.frames)
        for _ in range(3):  # a few ops, then a get
            x = client.call(relu, None, (x,), {})
        client.request_async(lambda rid: Sync.model_construct(rid=rid))
        [sync] = [m for f in connection.frames[sent:] for m in f if isinstance(m, Sync)]
        assert not any(connection.waited[sent:])
        client.on_messages([Reply(rid=sync.rid, status="ok")], [])


def test_dropped_pointers_can_be_freed_at_the_end_of_the_frame(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(client_module, "DELETE_BATCH", None)
    frame, x = forward_pass(40)
    assert [type(m) for m in frame] == [Call] * 41 + [Delete]
    assert len(frame[-1].ids) == 40 and x.id not in frame[-1].ids


def test_dropped_pointers_are_freed_within_the_frame_by_default():
    assert client_module.DELETE_BATCH == 8
    frame, x = forward_pass(40)
    deletes = [i for i, m in enumerate(frame) if isinstance(m, Delete)]
    assert len(deletes) >= 40 // 8  # freed along the way, a few at a time
    assert deletes[0] <= 8 + 1  # the first results are freed early in the frame
    freed: set[str] = set()
    for message in frame:  # never freed before an action that still uses it
        if isinstance(message, Delete):
            freed.update(message.ids)
        else:
            assert isinstance(message, Call) and not (refs(message) & freed)
    made = {m.result for m in frame if isinstance(m, Call)}
    assert freed <= made and x.id not in freed and len(freed) == 40


def test_once_the_owner_has_answered_everything_the_next_actions_leave_at_once(
    monkeypatch: pytest.MonkeyPatch,
):
    """After a reply that leaves nothing unanswered (the owner is idle), the next frames go
    at once, the caller waiting until each went: 8 actions, then 64; then batching as before.
    While a request is unanswered, nothing is hurried."""
    from duet.protocol.messages import Reply, Sync

    monkeypatch.setattr(client_module, "DELETE_BATCH", None)  # a frame's Delete at its end
    connection = RecordingConnection()
    client = PointerClient(connection)  # type: ignore[arg-type]
    relu = allowlist.function("torch.nn.functional.relu")
    x = client.call(allowlist.function("torch.zeros"), None, (4,), {})
    assert connection.frames == []  # a fresh client batches: nothing was answered yet

    first = client.request_async(lambda rid: Sync.model_construct(rid=rid))
    second = client.request_async(lambda rid: Sync.model_construct(rid=rid))
    sent = len(connection.frames)
    [one, two] = [m.rid for frame in connection.frames for m in frame if isinstance(m, Sync)]
    client.on_messages([Reply(rid=one, status="ok")], [])
    assert first.done() and not second.done()
    x = client.call(relu, None, (x,), {})
    assert len(connection.frames) == sent  # the second sync still waits: the owner is busy

    client.on_messages([Reply(rid=two, status="ok")], [])
    for _ in range(100):
        x = client.call(relu, None, (x,), {})
    calls = [sum(isinstance(m, Call) for m in f) for f in connection.frames[sent:]]
    assert calls == [8, 64]  # the first: the action held back, and 7
    assert connection.waited[sent:] == [True] * 2
    client.flush()  # the rest were batched as usual
    assert sum(isinstance(m, Call) for m in connection.frames[-1]) == 100 + 1 - 8 - 64
    assert connection.waited[-1] is False
