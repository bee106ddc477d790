"""An owner with a quota, and a scientist that misbehaves on purpose, as real processes.

    python hostile.py owner <signaling_url> <max_bytes>   serves one scientist (no confirmation),
                                                        then prints how the session ended and
                                                        waits for a line on stdin before leaving
    python hostile.py scientist <session_id> <url>      runs the steps named on stdin

Both print one JSON object per line for the test to read. The test reads the owner's memory
from /proc itself.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import time

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy
from duet.protocol.messages import Get, Put, pack
from duet.protocol.serde import Encoder
from duet.runtime import run

OWN_ELEMENTS = 5_000_000  # a 20 MB float32 tensor of the scientist's own
GETS = 40


_emitting = threading.Lock()  # confirmations and listeners print from several threads


def emit(**fields):
    line = json.dumps(fields) + "\n"
    with _emitting:  # one whole line at a time
        sys.stdout.write(line)
        sys.stdout.flush()


def owner(url: str, max_bytes: int) -> None:
    duet = sy.launch_duet(
        url,
        confirm=False,
        max_bytes=max_bytes,
        on_ready=lambda sid, u: emit(event="ready", session_id=sid),
    )
    torch.tensor([1.0, 2.0, 3.0]).send(duet, tags=["ages"], description="ages")
    emit(event="connected")
    duet.wait_closed(timeout_secs=600)
    connection = duet.connection
    emit(
        event="closed",
        at=time.time(),
        reason=str(connection.lost) if connection and connection.lost else "",
        store=len(duet.store),
        ages=duet.store["ages"].value.tolist(),
    )
    sys.stdin.readline()  # stay, so the test can read this process's memory


def own_tensor(duet: sy.ScientistSession) -> sy.Pointer:
    return (torch.arange(OWN_ELEMENTS, dtype=torch.float32) * 0.5).send(duet)


def gets_in_one_frame(duet: sy.ScientistSession, ptr: sy.Pointer) -> dict:
    """GETS gets of one object in a single frame; replies are dropped as they arrive."""
    client = duet.client
    done = threading.Semaphore(0)
    outcome = {"ok": 0, "errors": []}

    def arrived(future: concurrent.futures.Future) -> None:
        try:
            reply, buffers = future.result()
            value = reply.value if isinstance(reply.value, dict) else {}
            index = value.get("buf", -1)
            if reply.status == "ok" and buffers[index].nbytes == OWN_ELEMENTS * 4:
                outcome["ok"] += 1
            else:
                outcome["errors"].append(reply.error.message if reply.error else reply.status)
        except Exception as exc:
            outcome["errors"].append(repr(exc))
        done.release()

    messages = []
    for _ in range(GETS):
        rid = next(client._rids)
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.add_done_callback(arrived)
        client._pending[rid] = future
        messages.append(Get(rid=rid, id=ptr.id))
    del future
    client.connection.send(messages)
    for _ in range(GETS):
        if not done.acquire(timeout=120):
            outcome["errors"].append("no reply within 120 s")
            break
    outcome["lost"] = str(client.lost or "")  # if the session ended, why (shown on failure)
    return outcome


def stop_acknowledging(duet: sy.ScientistSession) -> None:
    """Keep receiving and pinging, but never acknowledge what the owner sends."""

    async def no_sack() -> None:
        return None

    duet.connection.channel._pc.sctp._send_sack = no_sack
    duet.connection.dead_after_secs = 1e9  # the owner's pongs will not get through


def scientist(session_id: str, url: str) -> None:
    duet = sy.join_duet(session_id, url)
    emit(event="connected", max_bytes=duet.connection.peer_hello.max_bytes)
    ptr = None
    for line in sys.stdin:
        step = line.strip()
        try:
            if step == "own":
                ptr = own_tensor(duet)
                duet.sync(timeout_secs=60)
                emit(step=step, id=ptr.id)
            elif step == "gets-in-one-frame":
                emit(step=step, **gets_in_one_frame(duet, ptr))
            elif step == "stall":
                stop_acknowledging(duet)
                object_id = ptr.id
                futures = [
                    duet.client.request_async(lambda rid, id=object_id: Get(rid=rid, id=id))
                    for _ in range(GETS)
                ]
                emit(step=step, at=time.time(), started=len(futures))
                duet.wait_closed(timeout_secs=300)
                emit(step="stalled", lost=str(duet.client.lost))
                return
            elif step == "send-200mb":
                value = torch.ones(50_000_000)  # 200 MB
                try:
                    value.send(duet)
                    honest = ""
                except sy.QuotaExceeded as exc:
                    honest = str(exc)
                # what a scientist that skips every check of its own sends
                client = duet.client
                object_id = client.new_id()
                buffers: list = []
                encoded = Encoder(buffers).encode(value)
                frame = pack([Put(id=object_id, value=encoded)], buffers)
                del buffers, encoded, value
                run(duet.connection.channel.send(frame), timeout_secs=300, what="raw send")
                del frame
                duet.sync(timeout_secs=120)
                failure = client.failures.get(object_id)
                emit(step=step, honest=honest, refused=failure.message if failure else "")
            elif step == "too-big-replies":
                errors = []
                for make in (
                    lambda: duet.torch.arange(2_000_000.0).tolist(),
                    lambda: duet.torch.arange(70_000.0).split(1),
                ):
                    try:
                        make().get(timeout_secs=20)
                        errors.append("")
                    except sy.DuetError as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                emit(step=step, errors=errors)
            elif step == "ops":
                mine = duet.torch.arange(4.0)
                emit(step=step, value=((mine * 2 + 1).sum()).get(timeout_secs=60).item())
            elif step == "close":
                duet.close()
                emit(step=step, closed=True)
                return
        except sy.DuetError as exc:
            emit(step=step, error=type(exc).__name__, message=str(exc))


if __name__ == "__main__":
    if sys.argv[1] == "owner":
        owner(sys.argv[2], int(sys.argv[3]))
    else:
        scientist(sys.argv[2], sys.argv[3])
