"""Joins that hold an open session's places and never offer anything, as a hostile client would.

    python stalled_joins.py <signaling_url> <session_id> <count>

Opens ``count`` websocket connections to the signaling server, sends ``join`` on each and, once
every one is ``joined``, prints ``holding``; then it says nothing more on them. For each
connection the server ends, it prints ``dropped`` with the error the server sent (if any) and
the close code. Runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WAIT = 30.0


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def joined(url: str, session_id: str) -> ClientConnection:
    ws = await connect(url, compression=None)
    await ws.send(json.dumps({"type": "join", "session_id": session_id}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    if reply != {"type": "joined"}:
        raise SystemExit(f"not joined: {reply}")
    return ws


async def hold(ws: ClientConnection) -> None:
    error = ""
    try:
        while True:  # until the server closes the connection
            message = json.loads(await ws.recv())
            error = message.get("code", "") if message.get("type") == "error" else error
    except ConnectionClosed as exc:
        emit(event="dropped", error=error, code=exc.rcvd.code if exc.rcvd else None)


async def main(url: str, session_id: str, count: int) -> None:
    connections = [await joined(url, session_id) for _ in range(count)]
    emit(event="holding", count=len(connections))
    await asyncio.gather(*(hold(ws) for ws in connections))
    await asyncio.Event().wait()  # the test kills the process


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
