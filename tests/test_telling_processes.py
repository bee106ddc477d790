"""Telling people what is happening, between real processes: a ``duet serve`` node's event log
says a request waits for the owner and that it is about to time out; the scientist's terminal
says it waits, with the time left, and how it ended."""

from __future__ import annotations

import re
import signal
import textwrap

import torch

from .processes import UNIT, Process, start_signaling_server

SCIENTIST = r"""
import json, sys, warnings, duet as sy
duet = sy.join_duet(sys.argv[1], sys.argv[2], owner_id=sys.argv[3], timeout_secs=60)
print(json.dumps({"event": "joined"}), flush=True)
name = 'mean\n12:00:00 decision accepted "mean" by owner\x1b[2J'
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = duet.store["ages"].mean().get(request_block=True, name=name, reason="cohort",
                                          timeout_secs=4)
print(json.dumps({"event": "done", "value": value, "warned": [str(w.message) for w in caught]}),
      flush=True)
duet.close()
"""


def test_a_serve_node_tells_of_a_waiting_request_and_the_scientist_sees_its_countdown(tmp_path):
    torch.save(torch.tensor([34.0, 51.0, 29.0]), tmp_path / "ages.pt")
    server, url = start_signaling_server()
    (tmp_path / "node.toml").write_text(
        textwrap.dedent(f"""
        [owner]
        signaling_url = "{url}"
        max_scientists = 2
        unknown = "accept"
        audit = "audit.sqlite3"

        [[publish]]
        path = "ages.pt"
        tags = ["ages"]
        """)
    )
    node = Process("-m", "duet", "serve", str(tmp_path / "node.toml"), stdin=False)
    started = [server, node]
    try:
        session_id = node.line(r"duet session ID: ([0-9a-f]+)", 2 * UNIT).group(1)
        owner_id = node.line(r'owner_id="([0-9a-f-]+)"').group(1)
        scientist = Process("-c", SCIENTIST, session_id, url, owner_id, stdin=False)
        started.append(scientist)
        scientist.event("event", "joined", 2 * UNIT)
        waiting = node.line(r"waiting +request ", UNIT).string
        # the scientist's text as data: one line, quoted, escaped; no hint to type code here
        assert '"mean\\n12:00:00 decision accepted \\"mean\\" by owner\\x1b[2J"' in waiting
        assert "\x1b" not in waiting and 'reason "cohort"' in waiting
        assert "it times out in 4 s" in waiting and "duet.requests" not in waiting
        expiring = node.line(r"expiring +request ", UNIT).string
        assert re.search(r"times out in [01] s unless you decide it", expiring)
        node.line(r"decision +timeout .* by timeout", UNIT)
        done = scientist.event("event", "done", UNIT)
        assert done["value"] is None and any("timed out" in w for w in done["warned"])
        assert scientist.exit_code(UNIT) == 0
        told = "".join(scientist.errors)  # stderr: not a terminal, so plain lines
        assert re.search(r"is waiting for the owner to decide: \d s left", told)
        assert "timed out: the owner did not decide in time" in told
        node.popen.send_signal(signal.SIGTERM)
        assert node.exit_code(UNIT) == 0
    finally:
        for process in reversed(started):
            process.stop()
