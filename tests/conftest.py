"""Shared fixtures. Every test gathers ICE candidates on loopback only and uses no ICE servers."""

from __future__ import annotations

import os
import tempfile

os.environ["DUET_ICE_HOSTS"] = "127.0.0.1"
# identities, known scientists and audit logs live in a duet home of the test run's own (its
# processes inherit it), never in the user's ~/.duet
os.environ["DUET_HOME"] = tempfile.mkdtemp(prefix="duet-home-")

import pytest

import duet as sy


@pytest.fixture(autouse=True)
def duet_home(tmp_path_factory, monkeypatch):
    """Each test has a duet home of its own: the identities it makes and the scientists its
    owners come to know do not leak into the next test."""
    home = tmp_path_factory.mktemp("duet-home")
    monkeypatch.setenv("DUET_HOME", str(home))
    return home


@pytest.fixture
def pair():
    owner, scientist = sy.duet_pair()
    yield owner, scientist
    scientist.close()
    owner.close()


@pytest.fixture
def node():
    """An owner node with one published tensor (tag "shared") and two scientists joined in
    memory, alice and bob, each with an identity of its own."""
    import torch

    owner = sy.OwnerSession(max_scientists=10)
    owner.publish(torch.arange(4.0), tags=["shared"], description="published to all")
    scientists = {}
    for name in ("alice", "bob"):
        _, scientist = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral(name))
        scientists[name] = scientist
    yield owner, scientists
    for scientist in scientists.values():
        scientist.close()
    owner.close()


def webrtc_pair(**owner_options):
    """An owner and a scientist in this process, joined over real WebRTC on 127.0.0.1 through
    a real signaling server (embedded by launch_duet)."""
    import threading

    ready = threading.Event()
    found: dict = {}

    def on_ready(session_id, url):
        found.update(session_id=session_id, url=url)
        ready.set()

    def launch():
        try:
            found["owner"] = sy.launch_duet(confirm=False, on_ready=on_ready, **owner_options)
        except BaseException as exc:  # handed to the test thread
            found["error"] = exc
            ready.set()

    thread = threading.Thread(target=launch)
    thread.start()
    assert ready.wait(60), "the owner never registered"
    if "error" in found:
        raise found["error"]
    scientist = sy.join_duet(found["session_id"], found["url"])
    thread.join(60)
    if "error" in found:
        raise found["error"]
    return found["owner"], scientist


@pytest.fixture(params=["memory", "webrtc"])
def any_pair(request):
    """The contract suite runs over every Channel: in memory and WebRTC."""
    if request.param == "memory":
        owner, scientist = sy.duet_pair()
    else:
        owner, scientist = webrtc_pair()
    yield owner, scientist
    scientist.close()
    owner.close()
