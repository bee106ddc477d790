"""Admitting scientists at a node: a stranger waiting for a confirmation, however long it takes,
never delays a scientist the owner knows or has a rule for, and waits no longer than its join
allows. In process, over in-memory channels."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

import duet as sy
from duet.runtime import get_loop, run
from duet.sessions.admission import Confirm
from duet.sessions.scientist import ScientistSession, connect_scientist
from duet.transport.memory import memory_pair

WAIT = 10.0


async def knock(
    owner: sy.OwnerSession, identity: sy.Identity, confirm: Confirm, timeout_secs: float
) -> list[Any]:
    """(On the library loop) a scientist joins; [the owner's outcome, the scientist's]. The
    owner's join timeout is ``timeout_secs``; the scientist waits longer."""
    a, b = memory_pair()
    return await asyncio.gather(
        owner.admit(a, confirm=confirm, timeout_secs=timeout_secs),
        connect_scientist(ScientistSession(), b, identity=identity, timeout_secs=3 * WAIT),
        return_exceptions=True,
    )


def knocking(
    owner: sy.OwnerSession, identity: sy.Identity, confirm: Confirm, timeout_secs: float = WAIT
) -> concurrent.futures.Future[list[Any]]:
    return asyncio.run_coroutine_threadsafe(
        knock(owner, identity, confirm, timeout_secs), get_loop()
    )


class Doorkeeper:
    """A confirm function that says no, but only once ``release`` is set: the person who should
    answer is not there."""

    def __init__(self, expected: int):
        self.asked: list[str] = []
        self.all_asked = threading.Event()
        self.release = threading.Event()
        self.expected = expected
        self._lock = threading.Lock()

    def __call__(self, client_id: str) -> bool:
        with self._lock:
            self.asked.append(client_id)
            if len(self.asked) == self.expected:
                self.all_asked.set()
        self.release.wait(4 * WAIT)
        return False


@pytest.fixture
def owner():
    made = sy.OwnerSession(max_scientists=20)
    yield made
    made.close()


def test_known_and_ruled_scientists_are_admitted_while_ten_strangers_confirmations_block(owner):
    doorkeeper = Doorkeeper(expected=10)
    strangers = [
        knocking(owner, sy.Identity.ephemeral(f"stranger-{n}"), doorkeeper) for n in range(10)
    ]
    known, ruled = sy.Identity.ephemeral("known"), sy.Identity.ephemeral("ruled")
    owner.audit.remember(known.id, owner_id=owner.identity.id)  # confirmed in an earlier session
    owner.access.allow(ruled.id, name="Rue")
    try:
        assert doorkeeper.all_asked.wait(WAIT)
        for identity in (known, ruled):
            outcome = run(
                knock(owner, identity, doorkeeper, WAIT), timeout_secs=3 * WAIT, what="joining"
            )
            assert not any(isinstance(o, BaseException) for o in outcome), outcome
            assert identity.id in owner.links
        assert not doorkeeper.release.is_set() and len(doorkeeper.asked) == 10  # all still wait
        assert known.id not in doorkeeper.asked and ruled.id not in doorkeeper.asked
    finally:
        doorkeeper.release.set()
    for future in strangers:
        refused, told = future.result(3 * WAIT)
        assert isinstance(refused, sy.HandshakeError) and isinstance(told, sy.HandshakeError)
        assert "refused to serve you" in str(told)


def test_a_stranger_not_confirmed_within_its_join_timeout_is_refused_and_told_why(owner):
    doorkeeper = Doorkeeper(expected=1)
    try:
        refused, told = knocking(owner, sy.Identity.ephemeral("late"), doorkeeper, 1.0).result(
            3 * WAIT
        )
    finally:
        doorkeeper.release.set()
    assert isinstance(refused, sy.HandshakeError)
    assert "was not confirmed within 1 s" in str(refused)
    assert isinstance(told, sy.HandshakeError)
    assert "the owner refused to serve you: it was not confirmed within 1 s" in str(told)
    assert owner.audit.events("refused")[-1]["reason"].startswith("it was not confirmed within")


def test_strangers_beyond_those_already_waiting_for_a_confirmation_are_refused_at_once(owner):
    owner.max_confirmations = 2
    doorkeeper = Doorkeeper(expected=2)
    waiting = [knocking(owner, sy.Identity.ephemeral(f"s{n}"), doorkeeper) for n in range(2)]
    try:
        assert doorkeeper.all_asked.wait(WAIT)
        third = knock(owner, sy.Identity.ephemeral("third"), doorkeeper, WAIT)
        refused, told = run(third, timeout_secs=3 * WAIT, what="joining")
        assert "2 confirmations of other scientists are under way" in str(refused)
        assert isinstance(told, sy.HandshakeError) and len(doorkeeper.asked) == 2
    finally:
        doorkeeper.release.set()
    for future in waiting:
        assert isinstance(future.result(3 * WAIT)[0], sy.HandshakeError)
