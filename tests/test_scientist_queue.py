"""The scientist's action queue, seen through a connection that only records frames."""

from __future__ import annotations

from typing import Any

from duet.protocol import allowlist
from duet.protocol.messages import Call, Delete
from duet.scientist.client import DELETE_BATCH, PointerClient


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


def test_dropped_pointers_are_freed_within_the_frame_not_at_its_end():
    connection = RecordingConnection()
    client = PointerClient(connection)  # type: ignore[arg-type]
    relu = allowlist.function("torch.nn.functional.relu")
    x = client.call(allowlist.function("torch.zeros"), None, (4,), {})
    for _ in range(40):  # a forward pass: each result replaces the previous one
        x = client.call(relu, None, (x,), {})
    client.flush()

    [frame] = connection.frames
    deletes = [i for i, m in enumerate(frame) if isinstance(m, Delete)]
    assert len(deletes) >= 40 // DELETE_BATCH  # freed along the way, a few at a time
    assert deletes[0] <= DELETE_BATCH + 1  # the first results are freed early in the frame
    freed: set[str] = set()
    for message in frame:  # never freed before an action that still uses it
        if isinstance(message, Delete):
            freed.update(message.ids)
        else:
            assert isinstance(message, Call) and not (refs(message) & freed)
    made = {m.result for m in frame if isinstance(m, Call)}
    assert freed <= made and x.id not in freed and len(freed) == 40
