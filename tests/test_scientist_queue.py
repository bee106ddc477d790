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
        self.loop = self

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        pass

    def send(self, messages: list[Any], buffers: list[memoryview] | None = None) -> None:
        self.frames.append(messages)


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
