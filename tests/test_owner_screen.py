"""The owner's screen is the owner's: text a scientist chose (its claimed name, request names
and reasons, the reason it gives for leaving) is shown as data, never as lines, cursor moves or
erasures of the owner's console, tables or logs."""

from __future__ import annotations

import io
import logging
import textwrap
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from sklearn.datasets import load_digits

import duet as sy
from duet.display import quoted, shown
from duet.serve.console import EventLog

from .processes import UNIT, Process, start_signaling_server

FAKE = "10:00:00 decision accepted 'model_download' for \"alice\" by owner"
FAKER = str(Path(__file__).parent / "peers" / "screen_faker.py")
CONTROLS = "\x1b[2J\x1b[H\x1b[1A\r\u202e\u200b"


def test_shown_escapes_every_control_and_invisible_character_and_changes_nothing_twice():
    text = f"x\n{FAKE}{CONTROLS}\t\x00\x7f\x9b"
    once = shown(text)
    assert "\n" not in once and "\x1b" not in once and "\u202e" not in once
    assert all(ch.isprintable() for ch in once)
    assert once.startswith("x\\n10:00:00") and "\\x1b[2J" in once and "\\u202e" in once
    assert shown(once) == once
    assert shown("a" * 500).endswith("…") and len(shown("a" * 500)) == 201
    assert quoted('say "hi"\n') == '"say \\"hi\\"\\n"'


def test_the_console_shows_one_line_per_event_whatever_the_scientist_wrote():
    out = io.StringIO()
    log = EventLog(Console(file=out, width=400, force_terminal=False, color_system=None))
    text = f"x\n{FAKE}{CONTROLS}"
    now = time.time()
    events = [
        {"kind": "connect", "time": now, "scientist": "ab12-cd34-ef56-7890", "name": text},
        {"kind": "request", "time": now, "scientist": "ab12-cd34-ef56-7890", "name": text,
         "request_name": text, "request": "r1", "elements": 1},
        {"kind": "decision", "time": now, "scientist": "ab12-cd34-ef56-7890", "name": text,
         "request_name": text, "status": "denied", "decided_by": "handler 1"},
        {"kind": "leave", "time": now, "scientist": "ab12-cd34-ef56-7890", "name": text,
         "reason": text},
    ]  # fmt: skip
    for event in events:
        log(event)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(events)
    assert not any(line.lstrip().startswith(FAKE[9:]) for line in lines)
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
    assert "asks for \"x\\n10:00:00 decision accepted 'model_download'" in lines[1]


def test_the_request_table_shows_what_a_scientist_wrote_as_escaped_text():
    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.arange(4.0), tags=["data"])
        owner.requests.add_handler(tags=["data"], action="deny")
        text = f"x\n{FAKE}{CONTROLS}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sy.RequestWarning)
            scientist.store["data"].sum().get(request_block=True, name=text, reason=text)
        table = owner.requests.pandas
        rendered = table.to_string()
        assert "\x1b" not in rendered and "\u202e" not in rendered
        assert table["Name"][0] == shown(text) and table["Reason"][0] == shown(text)
        with pd.option_context("display.max_colwidth", None):
            assert FAKE not in table.to_string().splitlines()[1:]
    finally:
        scientist.close()
        owner.close()


def test_a_scientists_goodbye_reason_reaches_the_owners_log_as_data(caplog):
    owner, scientist = sy.duet_pair()
    from duet.runtime import run

    with caplog.at_level(logging.INFO, logger="duet"):
        run(scientist.connection.close(f"bye\n{FAKE}\x1b[2J"), timeout_secs=10, what="leaving")
        owner.wait_closed(timeout_secs=30)
    owner.close()
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and "\x1b" not in message, message
    assert any("bye\\n10:00:00" in r.getMessage() for r in caplog.records)


def test_duet_serves_console_never_shows_a_scientists_text_as_its_own_lines(tmp_path):
    digits = load_digits()
    frame = pd.DataFrame(digits.data[:20] / 16.0).add_prefix("p")
    frame["label"] = digits.target[:20]
    frame.to_csv(tmp_path / "digits.csv", index=False)
    server, url = start_signaling_server()
    (tmp_path / "node.toml").write_text(
        textwrap.dedent(f"""
        [owner]
        signaling_url = "{url}"
        max_scientists = 2
        unknown = "accept"
        audit = "audit.sqlite3"

        [[publish]]
        path = "digits.csv"
        target = "label"
        tags = ["digits"]

        [[handler]]
        tags = ["digits"]
        action = "deny"
        """)
    )
    node = Process("-m", "duet", "serve", str(tmp_path / "node.toml"), stdin=False,
                   home=str(tmp_path / "node-home"))  # fmt: skip
    started = [server, node]
    try:
        session_id = node.line(r"duet session ID: ([0-9a-f]+)", 2 * UNIT).group(1)
        owner_id = node.line(r'owner_id="([0-9a-f-]+)"').group(1)
        faker = Process(FAKER, session_id, url, owner_id, FAKE)
        started.append(faker)
        faker.event("event", "done", 4 * UNIT)
        node.line(r"left \(", 2 * UNIT)  # the goodbye is on the console
    finally:
        for process in reversed(started):
            process.stop()
    output = node.output
    assert output, "the node printed nothing"
    for line in output:
        assert "\x1b" not in line and "\u202e" not in line and "\r" not in line, repr(line)
        assert not line.lstrip().startswith(FAKE[9:]), repr(line)  # no line of the fake's own
    faked = [line for line in output if "decision accepted 'model_download'" in line]
    assert faked and all('"x\\n10:00:00' in line or "x\\n10:00:00" in line for line in faked)
