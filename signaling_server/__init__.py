"""A small websocket rendezvous server that pairs a data owner with data scientists.

The owner registers and gets a session ID; a scientist joins with that ID; the server relays
the WebRTC offer (scientist -> owner) and answer (owner -> scientist) and nothing else. A
session is for one scientist, or *open*: it then accepts scientists, each with its own exchange,
until its owner closes it or it has answered ``max_peers`` of them. Run it with
``python -m signaling_server --host 127.0.0.1 --port 5000`` or embed it on a running asyncio
loop with :func:`start_embedded_server`. Several instances behind one address share their
sessions through Redis (``--redis-url``, see "Several instances" below).

Wire protocol
=============

Every message is one websocket *text* message holding one JSON object with a string field
``type``. Unknown extra fields are ignored; fields at their default value may be left out.
permessage-deflate is off. Every message is a model of :mod:`signaling_server.protocol`, the one
set of pydantic models both this server and duet's client (``duet.pairing.signaling``) parse
and build messages with.

One-scientist session (``register`` without ``max_peers``, or with ``"max_peers": 1``, and
without ``"open": true``)::

    owner  -> server  {"type": "register"}
    server -> owner   {"type": "registered", "session_id": "<32 hex>", "ttl_secs": 600}
    server -> owner   {"type": "peer_joined"}                    once a scientist joined
    server -> owner   {"type": "offer", "sdp": "..."}             relayed from the scientist
    owner  -> server  {"type": "answer", "sdp": "..."}            relayed to the scientist

After the answer is relayed the session is done and the server closes both connections with
close code 1000. A second scientist joining gets ``session_taken``; if the scientist leaves or
is refused before the answer, the session ends and the owner gets ``peer_left``.

Open session (``"max_peers": N`` with N > 1, ``"max_peers": null`` for no limit, or
``"open": true`` whatever ``max_peers`` is)::

    owner  -> server  {"type": "register", "max_peers": 3}
    server -> owner   {"type": "registered", "session_id": "<32 hex>", "ttl_secs": 600}
    server -> owner   {"type": "peer_joined", "peer": "p1"}       a scientist joined
    server -> owner   {"type": "offer", "peer": "p1", "sdp": "..."}
    owner  -> server  {"type": "answer", "peer": "p1", "sdp": "..."}   relayed to p1 only
    owner  -> server  {"type": "decline", "peer": "p2", "reason": "..."}   refuse p2 (optional)
    server -> owner   {"type": "peer_left", "peer": "p3", "reason": "left", "message": "..."}
    owner  -> server  {"type": "ping"}                            restarts the session's TTL
    server -> owner   {"type": "pong", "ttl_secs": 600}
    owner  -> server  {"type": "close"}                           accept no more scientists
    server -> owner   {"type": "closed", "reason": "closed" | "max_peers", "answered": 3}

Each scientist that joins gets a peer ID (``p1``, ``p2``... in order of joining, unique within
the session, never the session ID) that only the owner is told: the server routes an answer to
the websocket of the scientist it names and to no other, and a scientist never names a peer (an
offer carrying ``"peer"`` is refused). Per scientist the exchange is ``joined -> offered ->
answered``, or ``gone`` at any point; the owner's ``answer`` is accepted only for a scientist in
``offered``, ``decline`` for one in ``joined`` or ``offered``. Once answered, the scientist's
connection is closed with code 1000 and the owner's stays open. A scientist that leaves, is
refused (it sent an ``answer``, a second offer, a peer ID...) or does not complete within
``join_timeout`` of joining ends only its own exchange: the owner gets ``peer_left`` with ``reason``
``left``, ``refused`` or ``expired``, and the session goes on. An ``answer`` or ``decline``
for a peer that is already gone is ignored (its ``peer_left`` is on the way); one for a peer ID
never handed out is refused. The session ends when its owner disconnects (scientists
mid-exchange get ``peer_left``), sends ``close`` (they get ``peer_left``; the owner gets
``closed``, then close code 1000), has answered ``max_peers`` scientists (``closed`` with
reason ``max_peers``), or expires. A declined scientist gets the error ``declined`` with the
owner's reason.

Scientist (the same in both kinds of session)::

    scientist -> server  {"type": "join", "session_id": "<32 hex>"}
    server -> scientist  {"type": "joined"}
    scientist -> server  {"type": "offer", "sdp": "..."}          relayed to the owner
    server -> scientist  {"type": "answer", "sdp": "..."}         relayed from the owner

The session ID is ``secrets.token_hex(16)`` (128 random bits).

Registry
========

The server is also the network's registry: owners register signed records of the datasets
they list (metadata only), anyone searches them. A connection whose first message is
``announce``, ``withdraw`` or ``search`` is a registry connection: it may send more of them,
one reply each, until it closes or is silent for ``idle_secs`` (30 s)::

    owner  -> server  {"type": "announce", "signed": {"record": RECORD, "signature": "<hex>"}}
    server -> owner   {"type": "announced", "owner_id": "3fa2-91bc-0d4e-77a1", "seq": 7,
                       "ttl_secs": 120}
    owner  -> server  {"type": "withdraw", "signed": {"withdrawal": {"owner_key": "<hex>",
                       "owner_id": "...", "issued_at": 1765000000, "seq": 8},
                       "signature": "<hex>"}}
    server -> owner   {"type": "withdrawn", "owner_id": "...", "found": true}
    anyone -> server  {"type": "search", "tags": ["digits"], "owner": null, "limit": 50,
                       "proof": null}
    server -> anyone  {"type": "listings", "results": [{"signed": {...}, "online": true}]}

``RECORD`` is ``{"owner_key": "<64 hex: the raw Ed25519 public key>", "owner_id": "<its ID>",
"session_id": "<the open session to join>", "owner_name": "...", "datasets": [{"id": "...",
"tags": [...], "description": "...", "shape": [50, 3], "dtype": "float32", "size": 600}],
"issued_at": <Unix seconds>, "seq": <above every earlier one>, "ttl_secs": <1 to 3600>,
"audience": null | ["<scientist ID>", ...]}``; the
signature is over ``b"duet-registry-record/1\n"`` and the record's canonical JSON (every field,
keys sorted, no spaces, ASCII), a withdrawal's over ``b"duet-registry-withdrawal/1\n"`` and
its own (:mod:`signaling_server.records`). A search returns the live records with a dataset
carrying every tag asked for (every record, with none), of ``owner`` only if given, and open to
anyone (``audience`` null) or naming the scientist whose ``proof`` the search carries:
``{"scientist_key": "<hex>", "scientist_id": "...", "issued_at": ..., "signature": "<hex>"}``,
a signature over ``b"duet-registry-search/1\n"`` and the canonical JSON of the search's other
fields with the proof's (a proof that is not the key's over this search, or stale, is refused
like a record); ``online``
says whether the record's session is open on this server, which nothing signs. Records expire
``ttl_secs`` after they are stored unless a newer one renews them. Limits: 64 datasets a record,
16 tags of 64 characters a dataset, descriptions of 1,000 characters, owner names of 100, 8
tags a search, 200 results. Registry errors (besides ``malformed`` and ``too_big``):

``bad_signature``           the signature is not the named key's over this record
``wrong_id``                the owner ID is not the ID of the key the record carries
``replay``                  the ``seq`` is not above the last one that owner used (in the
                            store: across every instance sharing it)
``stale`` / ``future``      issued more than ``max_age_secs`` (60 s) ago, or more than
                            ``skew_secs`` (30 s) ahead of the server's clock
``too_many_registrations``  this address holds records of ``max_per_address`` (16) owners
``registry_full``           the registry holds records of ``max_records`` (100,000) owners
``rate_limited``            this identity (an owner, or the scientist a search's proof names;
                            an anonymous search: its address) sent more than
                            ``per_identity_burst`` (20) registry messages at once or
                            ``per_identity_rate`` (2) a second; counted only once a signature
                            holds, so no one can spend another identity's allowance
``registry_unavailable``    the store (Redis) failed or did not answer within
                            ``store_timeout_secs`` (5 s); try again shortly

The store is :class:`MemoryRegistryStore` unless the server shares a Redis
(``--redis-url``: the registry is kept there too, ``RedisRegistryStore``) or is given another
(``SignalingServer(registry=Registry(...))``); several instances share one Redis, the sequence
check is atomic there. Every scientist checks each result again (its
signature, ID and expiry), so the server cannot forge or replay an expired listing; it can
still hide one, or return a superseded record that has not yet expired.

Limits
======

``first_message_timeout`` (5 s)  a new connection must send ``register`` or ``join`` within this
                                 time, or it is dropped (``expired``): idle sockets never hold
                                 a place for long
``session_ttl`` (600 s)          one-scientist session: it expires if unpaired this long; once
                                 paired, the offer/answer exchange must complete within another
                                 TTL. Open session: it expires this long after its owner's last
                                 message (``ping`` keeps it alive; duet's client sends one while
                                 it waits)
``max_pending_joins`` (8)        scientists one open session may have mid-exchange at once
                                 (``session_busy``); an open session with a ``max_peers`` also
                                 admits no more than it has left to answer
``join_timeout`` (30 s)          open session: a scientist's exchange (its offer, the owner's
                                 answer or decline) must complete within this time of its
                                 joining (or the TTL, if shorter), or it expires and its place
                                 is free again: joins that never offer hold places briefly
``max_sessions_per_ip`` (64)     open sessions one source address may have registered
                                 (``too_many_sessions``); only registered sessions count, not
                                 connections, and an open session counts once
``max_sessions`` (10,000)        sessions held at once (``server_full``)
``max_message_bytes`` (256 KiB)  largest message (``too_big``); an SDP is at most 1 MiB
                                 characters whatever this limit, a reason 500
``connections_per_sec`` (20),    new connections one source address may open: a token bucket
``connection_burst`` (100)       per address holding ``connection_burst`` tokens, refilled at
                                 ``connections_per_sec``; an address that finds its bucket
                                 empty is refused (``rate_limited``) before its first message,
                                 and a flood from one address spends only its own tokens.
                                 Refused attempts count too (down to ``-connection_burst``
                                 tokens), so an address that goes on connecting faster than
                                 the rate stays refused until it slows down; at that floor it
                                 gets a bare HTTP 429 (body ``rate_limited: ...``) instead of
                                 the websocket handshake
``send_timeout`` (10 s)          a client that does not read what the server sends it within
                                 this time is dropped (its connection aborted, as if it had
                                 left: its peers get ``peer_left``); a send that fits under
                                 the websocket's write buffer limit never waits

The server trusts nothing it relays and is trusted with nothing: it sees session IDs and SDP,
and a hostile or compromised server can refuse or disrupt sessions, but the peers authenticate
each other by the certificates presented in the DTLS handshake (the client ID the owner
confirms, the owner ID the scientist is given), so it cannot read or alter their traffic.
Counting per source address is coarse: users behind one NAT share a quota (and a connection
rate), and anyone able to open many connections from many addresses can still exhaust the
server's sockets; put it behind a proxy that limits connections if it faces the internet. Anyone who has an open
session's ID can join it (and take one of its pending places until its exchange expires, after
``join_timeout``): the owner's confirmation of each scientist's client ID is what admits them.

Errors::

    server -> client  {"type": "error", "code": "<code>", "message": "<what and how to fix>"}

after which the server closes that connection with close code 1008 (policy) or 1009 (too big).
Codes:

``unknown_session``       the ID is unknown or expired (ask the owner for a new ID)
``session_taken``         another scientist already joined this one-scientist session
``session_busy``          this open session has ``max_pending_joins`` scientists mid-exchange,
                          or as many as it has left to answer (try again shortly)
``declined``              the owner of the open session declined this scientist
``malformed``             not JSON, not an object, unknown type, missing or invalid fields, or a
                          message out of order (an answer before the offer, an owner sending
                          join, a scientist sending answer or naming a peer, an answer for a
                          peer never named)
``too_big``               the message is larger than ``max_message_bytes`` (close code 1009)
``too_many_sessions``     this source IP address holds ``max_sessions_per_ip`` sessions already
``server_full``           the server holds ``max_sessions`` sessions already
``expired``               the session outlived ``session_ttl``, a scientist's exchange did not
                          complete in time, or a new connection sent nothing within
                          ``first_message_timeout``
``rate_limited``          this source IP address opens connections faster than
                          ``connections_per_sec`` (after ``connection_burst``); wait a second
``unavailable``           an instance started with ``--redis-url`` cannot reach Redis (to
                          register a session, or to relay a join to the instance holding it)
``peer_left``             the other side disconnected before the exchange completed, or the
                          owner closed the open session before answering this scientist

Messages far larger than the limit (more than 4x) are refused by the websocket layer itself:
the connection is closed with code 1009 without an error message.

The server keeps serving after any bad input; each session's life is logged in one line when it
ends (an open session's as counts: joined, answered, left, declined).

Several instances
=================

Without a Redis URL the server is one process holding its sessions in memory. Started with one
(``--redis-url redis://host:6379/0`` or ``unix:///path/redis.sock``; ``redis_url=`` on
:class:`SignalingServer` and :func:`start_embedded_server`), instances behind one address (a
load balancer, DNS) share their sessions: a scientist connected to instance A joins a session
whose owner is connected to instance B. A session stays on its owner's instance; that instance
lists it in Redis (``duet:signaling:session:<ID>`` -> its instance ID, expiring with the
session's TTL, renewed while the session lives, deleted when it ends). A join for a session A
does not hold is looked up there and relayed: A forwards what the scientist sends to B's
pub/sub channel (``duet:signaling:instance:<ID>``), B serves it with exactly the code, limits,
timeouts and errors of a local scientist, and A writes B's replies to the scientist. The
protocol is the same as on one instance; a join on the owner's own instance touches Redis not
at all. An instance that dies takes its sessions with it: publishing to its channel reaches no
one, so joins get ``unknown_session`` at once, and its directory entries expire. Every 2 s an
instance with relays in progress checks that the instances at their other ends still listen
(one ``PUBSUB NUMSUB``); a relay whose other end died ends then, its scientist or owner told
``peer_left``. Redis is
inside the server's trust boundary: anyone who can write to it can disrupt sessions as a
hostile server could, and no more (whatever arrives from Redis is validated by the same models
as what a websocket client sends, and the replies relayed back by the server's models), so the
peers' DTLS check still keeps them out of the session's traffic. Rate limits count where the
client connects; the per-address session count is per instance.
"""

from __future__ import annotations

from ._redis import RedisUnavailable
from ._registry import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_MAX_RECORD_AGE,
    DEFAULT_MAX_REGISTRATIONS_PER_IP,
    Registry,
    RegistryLimits,
)
from ._registry_store import MemoryRegistryStore, RedisRegistryStore, RegistryStore
from ._server import SignalingServer, start_embedded_server
from ._sessions import (
    DEFAULT_CONNECTION_BURST,
    DEFAULT_CONNECTIONS_PER_SEC,
    DEFAULT_FIRST_MESSAGE_TIMEOUT,
    DEFAULT_JOIN_TIMEOUT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_PENDING_JOINS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SESSIONS_PER_IP,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SESSION_TTL,
    Limits,
)

start_server = start_embedded_server

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_CONNECTIONS_PER_SEC",
    "DEFAULT_CONNECTION_BURST",
    "DEFAULT_FIRST_MESSAGE_TIMEOUT",
    "DEFAULT_JOIN_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_PENDING_JOINS",
    "DEFAULT_MAX_RECORD_AGE",
    "DEFAULT_MAX_REGISTRATIONS_PER_IP",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_SESSIONS_PER_IP",
    "DEFAULT_SEND_TIMEOUT",
    "DEFAULT_SESSION_TTL",
    "Limits",
    "MemoryRegistryStore",
    "RedisRegistryStore",
    "RedisUnavailable",
    "Registry",
    "RegistryLimits",
    "RegistryStore",
    "SignalingServer",
    "start_embedded_server",
    "start_server",
]
