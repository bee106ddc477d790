"""A hostile signaling server for the pairing tests: duet's signaling protocol, with an attacker
in the middle. One session at a time, 127.0.0.1 only.

    python hostile_signaling.py splice      relays the scientist's offer to the owner spliced
                                            with the attacker's own: the scientist's section
                                            first as a decoy, the attacker's last with its
                                            fingerprints hidden behind '\\r' line breaks (the
                                            attack on owners that read the SDP differently
                                            from aiortc); applies the owner's answer to the
                                            attacker's peer
    python hostile_signaling.py fake-owner  answers the scientist itself with the attacker's
                                            peer; the real owner never hears of the scientist

Prints ``listening on ws://127.0.0.1:PORT``, then one JSON object per line:
``{"event": "relayed-offer"}``, ``{"event": "answered-as-owner"}``,
``{"event": "attacker-connected"}``, ``{"event": "attacker-received", "bytes": n}``, and, when
a side disconnects, ``{"event": "owner-left" | "scientist-left", "attacker_connected": bool,
"attacker_frames": n}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from typing import Any

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from duet.transport.webrtc import WebRTCChannel, answer_offer, create_offer

HOSTS = ["127.0.0.1"]
WAIT = 30.0


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def splice(decoy: str, attacker: str) -> str:
    """The scientist's media section as a decoy, then the attacker's with hidden fingerprints."""
    head, _, decoy_media = decoy.partition("m=")
    _, _, attacker_media = attacker.partition("m=")
    hidden = attacker_media.replace("\r\na=fingerprint:", "\r\na=x-note:1\ra=fingerprint:")
    return f"{head}m={decoy_media}m={hidden}"


def last_section_only(answer: str) -> str:
    """The owner's answer to the spliced offer, as the attacker's own peer expects it."""
    head, _, media = answer.partition("m=")
    head = head.replace("a=group:BUNDLE 0 0", "a=group:BUNDLE 0")
    return f"{head}m={media.split('m=')[-1]}"


class Attack:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.owner: ServerConnection | None = None
        self.scientist: ServerConnection | None = None
        self.attacker: Any = None
        self.connected = False
        self.frames = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def report(self, event: str) -> None:
        emit(event=event, attacker_connected=self.connected, attacker_frames=self.frames)

    async def listen(self, channel: WebRTCChannel) -> None:
        self.connected = True
        emit(event="attacker-connected")
        while True:
            frame = await channel.recv()  # ChannelClosed ends the task
            self.frames += 1
            emit(event="attacker-received", bytes=len(frame))

    def spawn(self, coro: Any) -> None:
        async def reported() -> None:
            try:
                await coro
            except Exception as exc:  # the attack failed: say how, for the test's messages
                emit(event="attacker-failed", error=f"{type(exc).__name__}: {exc}")

        task = asyncio.ensure_future(reported())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def on_offer(self, offer: str) -> None:
        assert self.owner is not None and self.scientist is not None
        if self.mode == "splice":
            self.attacker, attacker_offer = await create_offer(ice_hosts=HOSTS)
            await self.owner.send(
                json.dumps({"type": "offer", "sdp": splice(offer, attacker_offer)})
            )
            emit(event="relayed-offer")
        else:
            self.attacker, answer = await answer_offer(offer, ice_hosts=HOSTS)
            await self.scientist.send(json.dumps({"type": "answer", "sdp": answer}))
            emit(event="answered-as-owner")
            self.spawn(self._fake_owner_channel())

    async def _fake_owner_channel(self) -> None:
        await self.listen(await self.attacker.channel(WAIT))

    async def on_answer(self, answer: str) -> None:
        channel = await self.attacker.accept_answer(last_section_only(answer), timeout_secs=WAIT)
        await self.listen(channel)

    async def handle(self, ws: ServerConnection) -> None:
        try:
            first = json.loads(await ws.recv())
            if first["type"] == "register":
                self.owner = ws
                session_id = secrets.token_hex(16)
                await ws.send(
                    json.dumps({"type": "registered", "session_id": session_id, "ttl_secs": 600})
                )
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "answer":
                        self.spawn(self.on_answer(message["sdp"]))
                self.report("owner-left")
            elif first["type"] == "join":
                self.scientist = ws
                await ws.send(json.dumps({"type": "joined"}))
                if self.owner is not None:
                    await self.owner.send(json.dumps({"type": "peer_joined"}))
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "offer":
                        self.spawn(self.on_offer(message["sdp"]))
                self.report("scientist-left")
        except ConnectionClosed:
            self.report("owner-left" if ws is self.owner else "scientist-left")


async def main(mode: str) -> None:
    attack = Attack(mode)
    async with serve(attack.handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()  # until the test kills the process


if __name__ == "__main__":
    if sys.argv[1] not in ("splice", "fake-owner"):
        sys.exit(f"unknown mode {sys.argv[1]!r}; use splice or fake-owner")
    asyncio.run(main(sys.argv[1]))
