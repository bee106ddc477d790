"""An owner node's listing, in this process against a real signaling server process: nothing
is listed unless the owner says so; a listed dataset is announced, renewed before it expires,
announced again when the listing changes and withdrawn when the node closes. And the owner's
and the scientist's misuse, refused with what to do."""

from __future__ import annotations

import queue
import textwrap

import pytest
import torch

import duet as sy
from duet.errors import UsageError
from duet.serve import build_owner, parse_config

from .processes import UNIT, start_signaling_server


@pytest.fixture
def server_url():
    server, url = start_signaling_server()
    yield url
    server.stop()


@pytest.fixture
def node(server_url):
    owner = sy.launch_duet(
        server_url, max_scientists=2, wait=False, audit=False, confirm=False,
        identity=sy.Identity.ephemeral("clinic"),
    )  # fmt: skip
    yield owner
    owner.close()


def announcements(owner: sy.OwnerSession) -> queue.Queue[int]:
    seen: queue.Queue[int] = queue.Queue()
    assert owner.listing is not None
    owner.listing.listeners.append(seen.put)
    return seen


def test_node_lists_only_what_the_owner_listed_renews_it_and_withdraws_it_on_close(
    node, server_url
):
    node.publish(torch.arange(6.0), tags=["births"], description="never listed")
    node.listing.settle()
    assert sy.search(tags=["births"], network_url=server_url).empty  # nothing listed yet
    seen = announcements(node)
    node.listing.ttl_secs = 2  # renewed at half its life
    entry = torch.zeros(50, 3).send(node, tags=["births"], description="2020", listed=True)
    first = seen.get(timeout=UNIT)
    renewed = seen.get(timeout=UNIT)  # by the timer, nothing else happened
    assert renewed > first
    [row] = sy.search(tags=["births"], network_url=server_url).itertuples()
    assert (row.owner_id, row.owner_name, row.dataset) == (node.identity.id, "clinic", entry.id)
    assert (row.shape, row.description, row.online) == ((50, 3), "2020", True)

    node.listing.ttl_secs = 600
    node.listing.settle()  # announced now: the next renewal is minutes away
    while not seen.empty():
        seen.get_nowait()
    node.publish(torch.ones(4), tags=["births", "2021"], listed=True)  # announced again
    assert seen.get(timeout=UNIT) > renewed
    table = sy.search(tags=["births"], network_url=server_url)
    assert len(table) == 2 and sorted(map(tuple, table.tags)) == [("births",), ("births", "2021")]

    node.close()
    assert seen.get(timeout=UNIT) == 0  # withdrawn
    assert sy.search(tags=["births"], network_url=server_url).empty


def test_listing_what_is_not_pointable_or_too_big_for_the_registry_is_refused(node):
    with pytest.raises(UsageError, match="must be pointable too"):
        node.publish(torch.zeros(2), pointable=False, listed=True)
    with pytest.raises(UsageError, match="at most 16 tags"):
        node.publish(torch.zeros(2), tags=[f"t{i}" for i in range(17)], listed=True)
    with pytest.raises(UsageError, match="description is at most 1000"):
        node.publish(torch.zeros(2), description="x" * 1001, listed=True)
    assert node.listed() == [] and len(node.objects.published()) == 0


def test_join_names_what_the_owner_lists_when_asked_for_something_else(node, server_url):
    node.publish(torch.zeros(3), tags=["births"], listed=True)
    node.listing.settle()
    with pytest.raises(UsageError, match="lists nothing on"):
        sy.join(server_url, owner=sy.Identity.ephemeral().id, dataset="births")
    with pytest.raises(UsageError, match=r"lists no dataset with the id or tag 'deaths'.*births"):
        sy.join(server_url, owner=node.identity.id, dataset="deaths")
    with pytest.raises(UsageError, match="is not an owner ID"):
        sy.join(server_url, owner="clinic", dataset="births")


def test_a_serve_config_lists_only_entries_marked_listed(tmp_path):
    torch.save(torch.zeros(4, 2), tmp_path / "a.pt")
    torch.save(torch.ones(4, 2), tmp_path / "b.pt")
    text = textwrap.dedent(
        """
        [[publish]]
        path = "a.pt"
        tags = ["listed"]
        listed = true

        [[publish]]
        path = "b.pt"
        tags = ["kept-home"]
        """
    )
    config, locator = parse_config(text)
    owner = build_owner(config, locator, tmp_path)
    try:
        assert [e.tags for e in owner.listed()] == [["listed"]]
    finally:
        owner.close()
    bad = text.replace("listed = true", "listed = true\npointable = false")
    config, locator = parse_config(bad)
    with pytest.raises(sy.ConfigError, match="must be pointable too"):
        build_owner(config, locator, tmp_path)


def test_the_listing_is_shown_only_to_the_scientists_the_node_would_admit():
    from duet.launch import _audience

    alice, bob, carol = (sy.Identity.ephemeral().id for _ in range(3))
    owner = sy.OwnerSession(audit=None, identity=sy.Identity.ephemeral())
    try:
        assert _audience(owner, True) is None  # strangers are asked: anyone may find it
        assert _audience(owner, False) is None  # strangers are let in
        assert _audience(owner, alice) == [alice]  # only the ID given is admitted
        owner.audit.remember(bob, "Bob", owner_id=owner.identity.id)
        owner.access.allow(carol)
        assert _audience(owner, alice) == sorted([alice, bob, carol])
        owner.unknown = "refuse"
        assert _audience(owner, True) == sorted([bob, carol])
        owner.access.deny(bob)
        assert _audience(owner, True) == [carol]
        owner.access.deny()  # strangers and the known without a rule: refused
        owner.access.remove(bob)
        assert _audience(owner, True) == [carol]
    finally:
        owner.close()
