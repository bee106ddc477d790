"""A scientist process whose every chosen text tries to fake the owner's screen.

    python screen_faker.py <session_id> <signaling_url> <owner_id> <fake line>

Joins with a name made of a newline and the fake line, asks for a released value with a request
name and reason that carry the same (and cursor, erase and bidi control characters), says
goodbye with that text as its reason, and prints ``done``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import duet as sy
from duet.runtime import run

CONTROLS = "\x1b[2J\x1b[H\x1b[1A\r\u202e"


def main(session_id: str, url: str, owner_id: str, fake: str) -> None:
    text = f"x\n{fake}{CONTROLS}"
    duet = sy.join_duet(session_id, url, owner_id=owner_id, name=text, timeout_secs=60)
    data = duet.store["digits"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        data[0][0].sum().get(request_block=True, name=text, reason=text, timeout_secs=2)
    run(duet.connection.close(text), timeout_secs=10, what="leaving")
    print(json.dumps({"event": "done"}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
