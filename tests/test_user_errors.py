"""What a user sees when they get something wrong, in real processes: a short message (their own
line, duet's error), not 30 lines of asyncio; the whole chain with DUET_DEBUG=1. And an owner and
a scientist on one machine are two identities."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

import duet as sy
from duet import tracebacks
from duet.launch import _owner_identity

from .processes import UNIT

NO_SERVER = """
import duet as sy
duet = sy.join_duet("ab" * 16, "ws://127.0.0.1:{port}", wait_secs=0)
"""
WRONG_SESSION = """
import duet as sy
from duet.runtime import run
from signaling_server import start_embedded_server
server, url = run(start_embedded_server("127.0.0.1", 0), timeout_secs=10, what="server")
duet = sy.join_duet("cd" * 16, url)
"""
REFUSED = """
import threading, duet as sy
found, ready = {}, threading.Event()
def on_ready(session_id, url):
    found.update(session_id=session_id, url=url)
    ready.set()
def owner():  # expects another scientist: this one is refused
    try:
        sy.launch_duet(confirm="0000-0000-0000-0000", on_ready=on_ready, timeout_secs=60,
                       audit=False)
    except sy.DuetError:
        pass
threading.Thread(target=owner, daemon=True).start()
assert ready.wait(60)
duet = sy.join_duet(found["session_id"], found["url"])
"""
INTERNALS = ("asyncio", "concurrent/futures", "runtime.py", "websockets", "direct cause")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(tmp_path, code: str, **env: str) -> str:
    """Run ``code`` as a script of its own; its stderr (it must fail)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    environment = {k: v for k, v in os.environ.items() if k != "DUET_DEBUG"}
    environment |= {"DUET_HOME": str(tmp_path / "home"), **env}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=2 * UNIT,
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (NO_SERVER, "duet.SignalingError", "cannot connect to the signaling server at ws://"),
        (WRONG_SESSION, "duet.SignalingError", "signaling server: session cdcdcdcd… is unknown or"),
        (REFUSED, "duet.HandshakeError", "the owner refused to serve you: client ID '0000"),
    ],
    ids=["no server", "wrong session ID", "refused join"],
)
def test_a_users_mistake_is_shown_short_with_their_line_and_the_fix(tmp_path, code, error, message):
    stderr = run_script(tmp_path, code.replace("{port}", str(closed_port())))
    assert not any(word in stderr for word in INTERNALS), stderr
    lines = stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert 'script.py", line' in lines[1] and "sy.join_duet(" in lines[2]
    assert lines[-2].startswith(f"{error}: {message}")
    assert lines[-1] == "(duet left out its internals; DUET_DEBUG=1 shows the whole traceback)"
    assert len(lines) <= 6


def test_duet_debug_shows_the_whole_chain(tmp_path):
    stderr = run_script(tmp_path, NO_SERVER.replace("{port}", str(closed_port())), DUET_DEBUG="1")
    assert "ConnectionRefusedError" in stderr and "direct cause" in stderr
    assert "SignalingUnreachable: cannot connect" in stderr and "left out" not in stderr


def test_the_chain_stays_on_the_exception_for_code_that_catches_it():
    with pytest.raises(sy.SignalingError) as caught:
        sy.join_duet("ab" * 16, f"ws://127.0.0.1:{closed_port()}", wait_secs=0)
    assert isinstance(caught.value.__cause__, OSError)
    short = tracebacks.short_report(caught.value)
    assert "asyncio" not in short and short.endswith("shows the whole traceback)\n")


def test_in_ipython_duet_errors_get_the_short_report_and_others_are_left_alone(monkeypatch):
    handlers = []
    shell = SimpleNamespace(custom_exceptions=(), set_custom_exc=lambda *a: handlers.append(a))
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after the test
    tracebacks.install()
    ((kinds, handler),) = handlers
    assert kinds == (sy.DuetError,)
    error = sy.UsageError("say it plainly")
    assert handler(shell, sy.UsageError, error, None) == [
        "duet.UsageError: say it plainly\n" + tracebacks.HINT + "\n"
    ]
    shell.custom_exceptions = (ValueError,)  # someone else's: kept
    tracebacks.install()
    assert len(handlers) == 1


# ---- identities


def test_owner_and_scientist_on_one_machine_have_different_default_ids():
    scientist = sy.Identity.for_role("scientist")
    owner = _owner_identity(None)
    assert owner.id != scientist.id
    assert _owner_identity(None).id == owner.id  # the same every time
    assert sy.Identity.load_or_create().id == scientist.id  # the key every role used before


def test_a_key_made_before_stays_the_scientists_and_an_owner_can_still_use_it(capsys):
    before = sy.Identity.load_or_create()  # default.key, as both roles used it until now
    owner = _owner_identity(None)
    assert owner.id != before.id and sy.Identity.for_role("scientist").id == before.id
    said = capsys.readouterr().out
    assert f"the owner's ID in this duet home is {owner.id}" in said
    assert 'launch_duet(identity="default")' in said
    assert _owner_identity("default").id == before.id  # still readable, by its name
    _owner_identity(None)
    assert capsys.readouterr().out == ""  # said once, when the owner's key was made


def test_over_webrtc_the_owner_confirms_an_id_that_is_not_its_own(tmp_path):
    from .conftest import webrtc_pair

    owner, scientist = webrtc_pair(audit=False)
    try:
        assert owner.client_id == scientist.connection.identity.id
        assert owner.client_id != owner.identity.id
    finally:
        scientist.close()
        owner.close()


def test_launch_with_a_prepared_owner_refuses_settings_it_would_ignore():
    """launch_duet(owner=...) runs that OwnerSession as made: a setting given beside it would be
    silently dropped (a node meant for four scientists serving one), so it is refused."""
    owner = sy.OwnerSession()
    try:
        with pytest.raises(sy.UsageError, match=r"max_scientists=4 would be ignored"):
            sy.launch_duet(owner=owner, max_scientists=4, wait=False, review=False)
        with pytest.raises(sy.UsageError, match=r"max_bytes=10, unknown='refuse' would be"):
            sy.launch_duet(owner=owner, max_bytes=10, unknown="refuse", review=False)
        assert owner.max_scientists == 1 and not owner.links
    finally:
        owner.close()
