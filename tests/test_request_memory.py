"""What the owner holds for a scientist's requests is bounded and counted: a decided request
lets go of its value, the history kept in memory is bounded (the audit log keeps every request),
and a request waiting for a person counts what it holds against the scientist's quota."""

from __future__ import annotations

import warnings

import pytest
import torch

import duet as sy
from duet.owner.requests import HISTORY_KEPT


def quietly(handle):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        return handle.wait(timeout_secs=60)


def test_a_decided_request_lets_go_of_its_value_and_keeps_its_digest():
    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.arange(1000.0), tags=["secret"])
        owner.requests.add_handler(tags=["secret"], action="deny")
        value = scientist.store["secret"] * 2
        assert quietly(value.request(name="denied", timeout_secs=30)) is None
        owner.requests.clear_handlers()
        handle = (scientist.store["secret"] + 1).request(name="by hand", timeout_secs=30)
        waiting = owner.requests.wait_for_request(timeout_secs=30)
        assert waiting is not None and waiting.value[0].item() == 1.0  # kept while it waits
        waiting.accept()
        assert quietly(handle)[0].item() == 1.0
        for request in owner.requests.history:
            assert request.snapshot.buffers == [] and request.snapshot.value is None
            with pytest.raises(sy.UsageError, match="no longer kept"):
                request.value  # noqa: B018
        released = [e for e in owner.audit.events("release")]
        assert released and released[-1]["digest"] == waiting.snapshot.sha256
    finally:
        scientist.close()
        owner.close()


def test_the_history_in_memory_is_bounded_and_the_audit_log_keeps_every_request():
    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.arange(4.0), tags=["secret"])
        owner.requests.add_handler(tags=["secret"], action="deny")
        value = scientist.store["secret"].sum()
        count = HISTORY_KEPT + 200
        handles = [value.request(name=f"r{i}", timeout_secs=30) for i in range(count)]
        assert all(quietly(h) is None for h in handles)
        assert len(owner.requests.history) == HISTORY_KEPT
        assert owner.requests.history[-1].name == f"r{count - 1}"
        assert len(owner.audit.events("decision")) == count
        with pytest.raises(KeyError):
            owner.requests[owner.audit.events("request")[0]["request"]]  # older: in the log only
    finally:
        scientist.close()
        owner.close()


def test_a_request_waiting_for_a_person_counts_against_the_private_account():
    quota = 1_000_000
    owner, scientist = sy.duet_pair(max_bytes=quota)
    try:
        owner.publish(torch.zeros(75_000), tags=["secret"])  # 300 KB
        private = scientist.store["secret"] + 1  # 300 KB of the scientist's private account
        scientist.sync(timeout_secs=30)
        account = owner.objects.quota(owner.client_id)
        before = account.private_bytes
        assert before >= 300_000
        first = private.request(name="first", timeout_secs=30)
        second = private.request(name="second", timeout_secs=30)
        third = private.request(name="third", timeout_secs=30)  # 3 x 300 KB > 1 MB
        assert quietly(third) is None and third.status == "denied"
        note = next(r.note for r in scientist.requests if r.name == "third")
        assert "would pass what the owner holds for you" in note
        pending = owner.requests.pending
        assert [r.name for r in pending] == ["first", "second"]
        assert account.private_bytes == before + 2 * 300_000
        for request in pending:
            request.deny()
        assert quietly(first) is None and quietly(second) is None
        assert account.private_bytes == before  # given back once decided
    finally:
        scientist.close()
        owner.close()
