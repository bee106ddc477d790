"""A scientist that joins an owner, maybe asks for one value, and stays until told to leave.

    python visitor.py <session_id> <signaling_url> <owner_id> [--name NAME] [--ask TAG]

``--name``: the name it claims in its handshake. ``--ask``: once connected, it asks for the sum
of the owner's object tagged TAG (a request the owner's handlers decide). Prints ``connected``
(its client ID), ``answer`` (the value, or None), or ``refused`` (the error), one JSON line
each; then waits for a line on stdin and leaves (``left``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import duet as sy

WAIT = 60.0


def emit(**fields):
    print(json.dumps(fields, default=str), flush=True)


def main(args: argparse.Namespace) -> None:
    try:
        duet = sy.join_duet(
            args.session_id, args.url, owner_id=args.owner_id, name=args.name, timeout_secs=WAIT
        )
    except sy.DuetError as exc:
        emit(event="refused", error=f"{type(exc).__name__}: {exc}")
        return
    emit(event="connected", client_id=duet.connection.identity.id)
    if args.ask:
        value = duet.store[args.ask].sum().get(request_block=True, name="total", timeout_secs=WAIT)
        emit(event="answer", value=None if value is None else float(value))
    sys.stdin.readline()
    duet.close()
    emit(event="left")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("session_id")
    parser.add_argument("url")
    parser.add_argument("owner_id")
    parser.add_argument("--name", default="")
    parser.add_argument("--ask", default="")
    main(parser.parse_args())
