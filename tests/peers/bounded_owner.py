"""An owner process with small limits, for the tests of a hostile scientist.

    python bounded_owner.py <signaling_url> <max_bytes> <max_objects>

Prints one JSON object per line: ``ready`` (session and owner IDs), ``connected``, and answers
commands read on stdin: ``rss`` (its resident and peak memory in bytes, and whether its
published data is intact), ``quit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy

torch.set_num_threads(1)


_emitting = threading.Lock()  # confirmations and listeners print from several threads


def emit(**fields):
    line = json.dumps(fields) + "\n"
    with _emitting:  # one whole line at a time
        sys.stdout.write(line)
        sys.stdout.flush()


def memory() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def main(url: str, max_bytes: int, max_objects: int) -> None:
    secret = torch.arange(1000.0)
    digest = hashlib.sha256(secret.numpy().tobytes()).hexdigest()
    owner = sy.launch_duet(
        url,
        confirm=False,
        max_bytes=max_bytes,
        max_objects=max_objects,
        on_ready=lambda sid, u: emit(event="ready", session_id=sid),
    )
    owner.publish(secret, tags=["secret"], description="the owner's data")
    owner.requests.add_handler(tags=["secret", "__len__"], action="accept")
    emit(event="connected", **memory())

    def commands() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "rss":
                intact = hashlib.sha256(secret.numpy().tobytes()).hexdigest() == digest
                emit(event="rss", intact=intact, connected=owner.connected, **memory())
            elif command == "quit":
                break

    reader = threading.Thread(target=commands, daemon=True)
    reader.start()
    reader.join()
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
