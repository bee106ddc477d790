"""The signaling server an owner starts for itself runs as its child process, and never
outlives it: closed with the session, and gone when the owner's process dies, even by kill -9."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from duet.errors import UsageError
from duet.pairing.server import SignalingProcess
from duet.pairing.signaling import SignalingClient
from duet.runtime import run

UNIT = 30.0  # seconds; every wait here is a multiple of it


def gone_within(pid: int, secs: float) -> bool:
    """Whether process ``pid`` (not necessarily our child) ends within ``secs``: its pidfd
    becomes readable when it exits (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], secs)
        return bool(readable)
    finally:
        os.close(fd)


def test_a_started_server_takes_registrations_and_stops_on_close():
    server = SignalingProcess("127.0.0.1", 0)
    try:
        assert server.url.startswith("ws://127.0.0.1:") and server.pid != os.getpid()

        async def register() -> str:
            client = await SignalingClient.connect(server.url)
            try:
                return await client.register(max_peers=None, open_session=True)
            finally:
                await client.close()

        assert run(register(), timeout_secs=UNIT, what="registering")
    finally:
        server.close()
    assert gone_within(server.pid, UNIT)
    server.close()  # a second close is harmless


def test_a_server_that_cannot_listen_says_why():
    first = SignalingProcess("127.0.0.1", 0)
    try:
        port = first.url.rsplit(":", 1)[1]
        with pytest.raises(UsageError, match=r"could not start.*cannot listen"):
            SignalingProcess("127.0.0.1", int(port))
    finally:
        first.close()


def test_the_server_does_not_outlive_an_owner_killed_with_sigkill():
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from duet.pairing.server import SignalingProcess
            server = SignalingProcess("127.0.0.1", 0)
            print(server.pid, flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert not gone_within(child, 0.0)  # running
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=UNIT)
        assert gone_within(child, UNIT), "the signaling server outlived its owner"
    finally:
        owner.kill()
        owner.wait(timeout=UNIT)
        if owner.stdout is not None:
            owner.stdout.close()
