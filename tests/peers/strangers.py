"""Several scientists nobody knows, joining one owner at once from one process.

    python strangers.py <session_id> <signaling_url> <owner_id> <count>

Each joins with an identity of its own (made for this run, never saved) in a thread of its own,
and prints ``connected`` or ``refused`` (the error) with its client ID when its join ends. Runs
until every join has ended, or it is killed.
"""

from __future__ import annotations

import json
import os
import sys
import threading

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import duet as sy

JOIN_SECS = 600.0


# stdout carries this script's JSON lines only, each written whole: duet's own lines, printed by
# the ten joining threads at once, go to stderr
OUT = sys.stdout
sys.stdout = sys.stderr
_emitting = threading.Lock()


def emit(**fields):
    with _emitting:
        OUT.write(json.dumps(fields) + "\n")
        OUT.flush()


def stranger(session_id: str, url: str, owner_id: str, number: int) -> None:
    identity = sy.Identity.ephemeral(f"stranger-{number}")
    try:
        duet = sy.join_duet(
            session_id, url, owner_id=owner_id, identity=identity, timeout_secs=JOIN_SECS
        )
    except sy.DuetError as exc:
        emit(event="refused", client_id=identity.id, error=f"{type(exc).__name__}: {exc}")
        return
    emit(event="connected", client_id=identity.id)
    duet.close()


def main(session_id: str, url: str, owner_id: str, count: int) -> None:
    threads = [
        threading.Thread(target=stranger, args=(session_id, url, owner_id, n), daemon=True)
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECS + 60)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
