"""A small websocket rendezvous server that pairs a data owner with a data scientist.

The owner registers and gets a session ID; the scientist joins with that ID; the server relays
the WebRTC offer (scientist -> owner) and answer (owner -> scientist) and nothing else. Run it
with ``python -m signaling_server --host 127.0.0.1 --port 5000`` or embed it on a running
asyncio loop with :func:`start_embedded_server`.

Wire protocol
=============

Every message is one websocket *text* message holding one JSON object with a string field
``type``. Unknown extra fields are ignored. permessage-deflate is off.

Owner (data owner)::

    owner  -> server  {"type": "register"}
    server -> owner   {"type": "registered", "session_id": "<32 hex>", "ttl_secs": 600}
    server -> owner   {"type": "peer_joined"}                    once a scientist joined
    server -> owner   {"type": "offer", "sdp": "..."}             relayed from the scientist
    owner  -> server  {"type": "answer", "sdp": "..."}            relayed to the scientist

Scientist::

    scientist -> server  {"type": "join", "session_id": "<32 hex>"}
    server -> scientist  {"type": "joined"}
    scientist -> server  {"type": "offer", "sdp": "..."}          relayed to the owner
    server -> scientist  {"type": "answer", "sdp": "..."}         relayed from the owner

After the answer is relayed the session is done and the server closes both connections with
close code 1000. The session ID is ``secrets.token_hex(16)`` (128 random bits).

Limits
======

``first_message_timeout`` (5 s)  a new connection must send ``register`` or ``join`` within this
                                 time, or it is dropped (``expired``): idle sockets never hold
                                 a place for long
``session_ttl`` (600 s)          a session that stays unpaired this long expires; once paired,
                                 the offer/answer exchange must complete within another TTL
``max_sessions_per_ip`` (64)     open sessions one source address may have registered
                                 (``too_many_sessions``); only registered sessions count, not
                                 connections
``max_sessions`` (10,000)        sessions held at once (``server_full``)
``max_message_bytes`` (256 KiB)  largest message (``too_big``)

The server trusts nothing it relays and is trusted with nothing: it sees session IDs and SDP,
and a hostile or compromised server can refuse or disrupt sessions, but the peers authenticate
each other by the certificates presented in the DTLS handshake (the client ID the owner
confirms, the owner ID the scientist is given), so it cannot read or alter their traffic.
Counting per source address is coarse: users behind one NAT share a quota, and anyone able to
open many connections from many addresses can still exhaust the server's sockets; put it behind
a proxy that limits connection rates if it faces the internet.

Errors::

    server -> client  {"type": "error", "code": "<code>", "message": "<what and how to fix>"}

after which the server closes that connection with close code 1008 (policy) or 1009 (too big).
Codes:

``unknown_session``       the ID is unknown or expired (ask the owner for a new ID)
``session_taken``         another scientist already joined this session
``malformed``             not JSON, not an object, unknown type, missing or invalid fields, or a
                          message out of order (an answer before the offer, an owner sending join)
``too_big``               the message is larger than ``max_message_bytes`` (close code 1009)
``too_many_sessions``     this source IP address holds ``max_sessions_per_ip`` sessions already
``server_full``           the server holds ``max_sessions`` sessions already
``expired``               the session outlived ``session_ttl``, or a new connection sent nothing
                          within ``first_message_timeout``
``peer_left``             the other side disconnected before the exchange completed

Messages far larger than the limit (more than 4x) are refused by the websocket layer itself:
the connection is closed with code 1009 without an error message.

The server keeps serving after any bad input; each session's life is logged in one line when it
ends.
"""

from __future__ import annotations

from ._server import (
    DEFAULT_FIRST_MESSAGE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SESSIONS_PER_IP,
    DEFAULT_SESSION_TTL,
    Limits,
    SignalingServer,
    start_embedded_server,
)

start_server = start_embedded_server

__all__ = [
    "DEFAULT_FIRST_MESSAGE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_SESSIONS_PER_IP",
    "DEFAULT_SESSION_TTL",
    "Limits",
    "SignalingServer",
    "start_embedded_server",
    "start_server",
]
