"""A scientist on the owner's machine joining its loopback session, for real or with a forgery.

    python loopback_joiner.py real                        join_duet(loopback=True), list the
                                                          store, leave
    python loopback_joiner.py forged <session_id> <url>   knows the session ID (the owner printed
                                                          it) but not the token in the owner's
                                                          private file: offers with a proof made
                                                          under a token of its own

Prints ``connected`` (and ``listed``) or ``refused`` with the error, as one JSON line each.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import duet as sy
from duet.pairing import loopback as loopback_pairing
from duet.pairing.signaling import SignalingClient
from duet.transport.webrtc import create_offer

WAIT = 30.0


def emit(**fields):
    print(json.dumps(fields), flush=True)


def real() -> None:
    try:
        duet = sy.join_duet(loopback=True, wait_secs=WAIT)
    except sy.DuetError as exc:
        emit(event="refused", error=f"{type(exc).__name__}: {exc}")
        return
    emit(event="connected", client_id=duet.connection.identity.id)
    emit(event="listed", tags=[p.meta.get("tags") for p in duet.store])
    duet.close()


async def forged(session_id: str, url: str) -> None:
    peer, sdp = await create_offer(ice_hosts=["127.0.0.1"])
    guessed = (
        loopback_pairing.new_token()
    )  # not the owner's: that one is in a file only its user reads
    sdp = loopback_pairing.with_proof(
        sdp, loopback_pairing.loopback_proof(guessed, session_id, peer.fingerprint)
    )
    client = await SignalingClient.connect(url)
    try:
        await client.join(session_id)
        await client.send_offer(sdp)
        await client.wait_answer(WAIT)
        emit(event="answered")
    except sy.DuetError as exc:
        emit(event="refused", error=f"{type(exc).__name__}: {exc}")
    finally:
        await client.close()
        await peer.close()


if __name__ == "__main__":
    if sys.argv[1] == "real":
        real()
    else:
        asyncio.run(forged(sys.argv[2], sys.argv[3]))
