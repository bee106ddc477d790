"""Presentation apart: the tables are built from plain rows, and the owner's prompt reads its
answer through a function that can be given, so both are checked without a session or a
terminal."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

import duet as sy
from duet.display import requests_frame
from duet.display.prompt import CLIENT_ID_QUESTION, ask_client_id
from duet.sessions.admission import confirm_id


def test_the_request_table_is_built_from_plain_rows_with_the_scientists_words_escaped():
    row = {
        "id": "r1", "peer": "3fa2-91bc-0d4e-77a1", "scientist_name": "eve\x1b[2J",
        "name": "mean\nof ages", "reason": "just\u202echecking", "object_id": "o1",
        "object_type": "Tensor", "tags": ["ages"], "op": "mean", "elements": 1,
        "status": "pending", "decided_by": "", "arrival": datetime(2026, 1, 1), "grant": "",
    }  # fmt: skip
    frame = requests_frame([row])
    assert list(frame.columns)[-4:] == ["Arrival time", "Grant", "DP price", "DP left after"]
    assert frame.iloc[0]["DP price"] is None  # not a DP release the owner reviews
    shown_row = frame.iloc[0]
    assert shown_row["Name"] == "mean\\nof ages"
    assert shown_row["Reason"] == "just\\u202echecking"
    assert shown_row["Scientist name"] == "eve\\x1b[2J"


def test_the_client_id_prompt_asks_through_the_function_it_is_given():
    asked = []
    answer = ask_client_id(read=lambda question: asked.append(question) or "3fa2 91bc 0d4e 77a1")
    assert asked == [CLIENT_ID_QUESTION] and answer == "3fa2 91bc 0d4e 77a1"
    given, ok = confirm_id(True, "3fa2-91bc-0d4e-77a1", read=lambda _: "3FA2-91BC-0D4E-77A1")
    assert (given, ok) == ("3FA2-91BC-0D4E-77A1", True)
    assert confirm_id(True, "3fa2-91bc-0d4e-77a1", read=lambda _: "0000")[1] is False


def test_without_a_keyboard_the_prompt_says_to_give_the_id_instead(monkeypatch):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stdin", closed)
    with pytest.raises(sy.UsageError, match="pass confirm='<id>'"):
        ask_client_id()


def test_the_owner_banner_tells_one_scientist_or_many_how_to_join():
    from duet.display import banner

    common = dict(session_id="abc", owner_id="OWNER", data_root="/data", url="ws://127.0.0.1:1")
    one = banner.owner_opened(**common, started_server=True, loopback=False, max_scientists=None)
    many = banner.owner_opened(**common, started_server=False, loopback=True, max_scientists=8)
    assert one[0].endswith("started a signaling server for this session at ws://127.0.0.1:1")
    assert any('ask the scientist to run: duet = sy.join_duet("abc", signaling_url=' in x
               for x in one)  # fmt: skip
    assert one[-1].endswith("waiting for the scientist to join...")
    assert not any("signaling server" in x for x in many)
    assert any("scientists run: duet = sy.join_duet(loopback=True)" in x for x in many)
    assert many[-1].endswith("serving up to 8 scientists at once until closed")


def test_a_scientists_name_cannot_fake_a_line_of_the_owners_banner():
    from duet.display import banner

    line = banner.scientist_connected("S1", "bob\n♫♫♫ > decision accepted by owner")
    assert "\n" not in line and "\\n" in line
