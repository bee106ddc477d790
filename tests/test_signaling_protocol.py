"""The signaling message models: round trips, the wire form, and any input to the parsers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling_server._messages import Reject, parse
from signaling_server.protocol import (
    CLIENT_TYPES,
    MAX_SDP_CHARS,
    SERVER_TYPES,
    Announce,
    Announced,
    Answer,
    ClientModel,
    Close,
    Closed,
    DatasetListing,
    Decline,
    Error,
    Join,
    Joined,
    Listing,
    Listings,
    Offer,
    OwnerRecord,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Register,
    Registered,
    Search,
    ServerModel,
    SignedRecord,
    SignedWithdrawal,
    WireError,
    Withdraw,
    Withdrawal,
    Withdrawn,
    parse_client_message,
    parse_server_message,
    to_wire,
)

LIMIT = 256 * 1024
OWNER = dict(owner_key="ab" * 32, owner_id="3fa2-91bc-0d4e-77a1", issued_at=1_800_000_000, seq=7)
RECORD = SignedRecord(
    record=OwnerRecord(
        **OWNER, session_id="3fa2" * 8, owner_name="clinic", ttl_secs=120,
        datasets=[DatasetListing(id="o1", tags=["births"], shape=[50, 3], dtype="float32")],
    ),
    signature="cd" * 64,
)  # fmt: skip

CLIENT_MESSAGES: list[ClientModel] = [
    Register(),
    Register(max_peers=None),
    Register(max_peers=3),
    Register(open=True),
    Join(session_id="3fa2" * 8),
    Offer(sdp="v=0\r\ns=é ✓\r\n"),
    Answer(sdp="v=0\r\n"),
    Answer(sdp="v=0\r\n", peer="p12"),
    Decline(peer="p2"),
    Decline(peer="p2", reason="client ID not confirmed"),
    Ping(),
    Close(),
    Announce(signed=RECORD),
    Withdraw(signed=SignedWithdrawal(withdrawal=Withdrawal(**OWNER), signature="ef" * 64)),
    Search(),
    Search(tags=["births", "2020"], owner="3fa2-91bc-0d4e-77a1", limit=5),
]
SERVER_MESSAGES: list[ServerModel] = [
    Registered(session_id="3fa2" * 8, ttl_secs=600),
    Registered(session_id="3fa2" * 8, ttl_secs=0.5),
    Joined(),
    PeerJoined(),
    PeerJoined(peer="p1"),
    Offer(sdp="v=0\r\n", peer="p1"),
    Answer(sdp="v=0\r\n"),
    PeerLeft(peer="p3", reason="expired", message="too slow"),
    Pong(ttl_secs=600),
    Closed(reason="max_peers", answered=3),
    Error(code="unknown_session", message="session 3fa2… is unknown"),
    Announced(owner_id="3fa2-91bc-0d4e-77a1", seq=7, ttl_secs=120),
    Withdrawn(owner_id="3fa2-91bc-0d4e-77a1", found=True),
    Listings(),
    Listings(results=[Listing(signed=RECORD, online=True)]),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_every_client_message_round_trips(message: ClientModel) -> None:
    assert parse_client_message(to_wire(message), LIMIT) == message
    assert set(CLIENT_TYPES) == {m.type for m in CLIENT_MESSAGES}


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=repr)
def test_every_server_message_round_trips(message: ServerModel) -> None:
    assert parse_server_message(to_wire(message)) == message
    assert set(SERVER_TYPES) == {m.type for m in SERVER_MESSAGES}


def test_one_scientist_messages_are_what_they_were_on_the_wire() -> None:
    assert json.loads(to_wire(Register())) == {"type": "register"}
    assert json.loads(to_wire(Register(max_peers=None))) == {"type": "register", "max_peers": None}
    assert not Register().opens and Register(max_peers=None).opens and Register(open=True).opens
    assert json.loads(to_wire(PeerJoined())) == {"type": "peer_joined"}
    assert json.loads(to_wire(Offer(sdp="o"))) == {"type": "offer", "sdp": "o"}
    assert json.loads(to_wire(Joined())) == {"type": "joined"}
    registered = json.loads(to_wire(Registered(session_id="ab", ttl_secs=600)))
    assert registered == {"type": "registered", "session_id": "ab", "ttl_secs": 600}
    assert isinstance(registered["ttl_secs"], int)


def test_unknown_fields_are_ignored_and_known_ones_are_strict() -> None:
    assert parse_client_message('{"type": "register", "version": 2}', LIMIT) == Register()
    for raw, mentions in [
        ('{"type": "register", "max_peers": true}', 'field "max_peers"'),
        ('{"type": "register", "max_peers": 0}', "an integer from 1"),
        ('{"type": "register", "max_peers": "3"}', "got '3'"),
        ('{"type": "join", "session_id": ""}', 'field "session_id"'),
        ('{"type": "offer"}', 'an "offer" message needs field "sdp" to be a non-empty string'),
        ('{"type": "answer", "sdp": "a", "peer": "p 1"}', "got 'p 1'"),
        ('{"type": "decline"}', 'field "peer"'),
        ('{"type": "register", "open": 1}', 'field "open" to be true or false, got 1'),
        ('{"type": "decline", "peer": "p1", "reason": "' + "x" * 501 + '"}', 'field "reason"'),
        ('{"type": "offer", "sdp": "' + "x" * (MAX_SDP_CHARS + 1) + '"}', 'field "sdp"'),
    ]:
        with pytest.raises(WireError) as refused:
            parse_client_message(raw, 4 * MAX_SDP_CHARS)
        assert refused.value.code == "malformed"
        assert mentions in refused.value.message, refused.value.message


def test_a_client_cannot_send_what_only_the_server_sends() -> None:
    for kind in ("registered", "joined", "peer_joined", "peer_left", "pong", "closed", "error"):
        with pytest.raises(WireError) as refused:
            parse_client_message(json.dumps({"type": kind}), LIMIT)
        assert f"unknown message type {kind!r}" in refused.value.message


# --------------------------------------------------------------------------- any input

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "type",
        "session_id",
        "sdp",
        "peer",
        "max_peers",
        "reason",
        "code",
        "message",
        "ttl_secs",
        "signed",
        "tags",
        "owner",
        "limit",
        "results",
        "owner_id",
        "seq",
        "found",
    ]  # fmt: skip
)
NEAR_MESSAGES = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.sampled_from([*CLIENT_TYPES, *SERVER_TYPES, "dance", ""]) | JSON_VALUES,
    st.dictionaries(FIELD_NAMES, JSON_VALUES | st.sampled_from(["p1", "v=0", "0" * 32])),
)
RAW = (
    st.binary(max_size=64)
    | st.text(max_size=64)
    | JSON_VALUES.map(json.dumps)
    | NEAR_MESSAGES.map(json.dumps)
)


def _check_reject(rej: Reject) -> None:
    assert rej.code in ("malformed", "too_big")
    assert rej.close_code == (1009 if rej.code == "too_big" else 1008)
    error = parse_server_message(rej.to_wire())  # the error itself is a valid message
    assert isinstance(error, Error) and error.code == rej.code


@settings(max_examples=400, deadline=None)
@given(RAW, st.sampled_from([64, LIMIT]))
def test_the_server_parser_takes_any_input_to_a_message_or_a_clean_reject(
    raw: str | bytes, limit: int
) -> None:
    try:
        message = parse(raw, limit)
    except Reject as rej:
        _check_reject(rej)
    else:
        assert message.type in CLIENT_TYPES
        assert parse_client_message(to_wire(message), 4 * MAX_SDP_CHARS) == message


@settings(max_examples=400, deadline=None)
@given(RAW)
def test_the_client_parser_takes_any_input_to_a_message_or_a_wire_error(raw: str | bytes) -> None:
    try:
        message = parse_server_message(raw)
    except WireError as exc:
        assert exc.code in ("malformed", "too_big")
    else:
        assert message.type in SERVER_TYPES
        assert parse_server_message(to_wire(message)) == message


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000,
        '{"type": "join", "session_id": "\\ud800"}',
        '{"type": "register", "max_peers": NaN}',
        '{"type": "register", "max_peers": 1e400}',
        '{"type": "register", "max_peers": ' + "9" * 5000 + "}",
        '{"type": "offer", "sdp": {"nested": [1, 2]}}',
        '{"type": ["register"]}',
    ],
    ids=["deep", "lone-surrogate", "nan", "infinity", "huge-int", "object-sdp", "list-type"],
)
def test_awkward_inputs_get_a_clean_reject(raw: str) -> None:
    try:
        message: Any = parse(raw, 4 * MAX_SDP_CHARS)
    except Reject as rej:
        _check_reject(rej)
    else:  # a lone surrogate is a string JSON allows; it must still go back on the wire
        assert json.loads(to_wire(message))["type"] == message.type
