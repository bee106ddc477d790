"""Secure aggregation's protocol core (duet.secure, issue 20): N owners' state machines and the
scientist's aggregator, their messages carried by an in-memory relay. The sum matches the float
sum within the stated bound, with and without dropouts; below the threshold nothing is revealed;
a hostile relay (swapped, forged or replayed keys, a fake owner, rosters or models that differ
between owners, a request for both kinds of share) makes the owners abort with a clear reason
before any update can be read; a masked update on its own looks uniform."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from duet.errors import DuetError, UsageError
from duet.identity import Identity
from duet.secure import (
    EncryptedShare,
    History,
    KeyAdvertisement,
    Layout,
    MaskedInput,
    OwnerRound,
    Quantiser,
    Relay,
    RoundSpec,
    SecureAggregationAborted,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    crypto,
    model_digest,
    threshold_against,
)
from duet.secure.participant import pairwise_mask_key, self_mask_key

MODEL = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
DIGEST = model_digest(MODEL)
QUANTISER = Quantiser(clip=8.0, fractional_bits=16)


class Round:
    """N owners with identities, one spec, their updates (float64, norm about 3: within the
    clip of 8)."""

    def __init__(self, n: int, *, seed: int = 0):
        made = [Identity.ephemeral(f"owner{i}") for i in range(n)]
        self.identities = sorted(made, key=lambda i: i.id)  # owners()[i] is roster[i]
        self.roster = tuple(i.id for i in self.identities)
        self.spec = RoundSpec("round-1", self.roster, DIGEST, QUANTISER, threshold_against(n))
        g = torch.Generator().manual_seed(seed)
        self.updates = {}
        for identity in self.identities:
            update = {
                k: 0.5 * torch.randn(v.shape, generator=g, dtype=torch.float64)
                for k, v in MODEL.state_dict().items()
            }
            self.updates[identity.id] = update
        self.layout = Layout.of(next(iter(self.updates.values())))
        self.history = {i.id: History() for i in self.identities}

    def owners(self, spec: RoundSpec | None = None, *, remember=True, **kwargs) -> list[OwnerRound]:
        """Each owner's round; with ``remember``, each keeps its History across rounds."""
        return [
            OwnerRound(
                identity,
                spec or self.spec,
                expected_owners=self.roster,
                model_digest=DIGEST,
                history=self.history[identity.id] if remember else None,
                **kwargs,
            )
            for identity in self.identities
        ]

    def exact_sum(self, owners) -> dict[str, torch.Tensor]:
        return {k: sum(self.updates[o][k] for o in owners) for k in MODEL.state_dict()}

    def quantised(self, owner: str) -> np.ndarray:
        return self.layout.flatten(self.updates[owner]) * QUANTISER.scale


def within_bound(total, exact, owners: int) -> float:
    worst = max(float((total[k] - exact[k]).abs().max()) for k in exact)
    assert worst < QUANTISER.error_bound(owners), (worst, QUANTISER.error_bound(owners))
    return worst


def assert_no_update_readable(relay: Relay, game: Round) -> None:
    """Nothing the relay carried shows an owner's update: no masked input is near any owner's
    scaled update, and no owner's seed and mask key were both revealed to the threshold."""
    for message in relay.log:
        if isinstance(message, MaskedInput):
            signed = message.values.view(np.int64).astype(np.float64)
            for owner in game.roster:
                near = np.abs(signed - game.quantised(owner)) <= 2
                assert near.mean() < 0.01, f"{message.owner}'s masked input shows {owner}'s update"
    seeds: dict[str, int] = {}
    keys: dict[str, int] = {}
    for message in relay.log:
        if isinstance(message, UnmaskResponse):
            assert not set(message.seed_shares) & set(message.key_shares)
            for owner in message.seed_shares:
                seeds[owner] = seeds.get(owner, 0) + 1
            for owner in message.key_shares:
                keys[owner] = keys.get(owner, 0) + 1
    for owner in game.roster:
        both = (
            seeds.get(owner, 0) >= game.spec.threshold and keys.get(owner, 0) >= game.spec.threshold
        )
        assert not both, f"{owner}'s seed and mask key were both revealed"


def sent(relay: Relay, kind: type) -> list:
    return [m for m in relay.log if isinstance(m, kind)]


# ------------------------------------------------------------------------- the sum


@pytest.mark.parametrize("n", [3, 5])
def test_the_unmasked_sum_is_the_float_sum_within_the_stated_bound(n):
    game = Round(n, seed=n)
    relay = Relay(game.spec, game.layout)
    total = relay.run(game.owners(), game.updates)
    within_bound(total, game.exact_sum(game.roster), n)
    assert relay.aborts == {}
    assert len(sent(relay, MaskedInput)) == n and len(sent(relay, UnmaskResponse)) == n
    assert_no_update_readable(relay, game)


def test_the_bound_is_the_owners_count_over_the_scale_and_sums_stay_exact():
    assert Quantiser(clip=1.0, fractional_bits=16).error_bound(5) == 5 / 65536
    Quantiser(clip=1000.0, fractional_bits=32).check(1000)
    with pytest.raises(UsageError, match="past 2\\*\\*53 where sums stop being exact"):
        Quantiser(clip=1e6, fractional_bits=40).check(3)
    with pytest.raises(UsageError, match="clip is a positive number"):
        Quantiser(clip=float("nan")).check(3)


def test_stochastic_rounding_is_unbiased_and_lands_on_a_neighbour():
    quantiser = Quantiser(clip=1e9, fractional_bits=0)
    values = np.full(200_000, 0.25)
    rounded = quantiser.quantise(values).view(np.int64)
    assert set(np.unique(rounded)) <= {0, 1}
    # mean 0.25, standard deviation of the mean 0.001: a margin of 20 deviations
    assert abs(rounded.mean() - 0.25) < 0.02
    negative = quantiser.quantise(np.full(1000, -2.5)).view(np.int64)
    assert set(np.unique(negative)) <= {-3, -2}


def test_an_update_past_the_clip_is_scaled_to_it_and_the_sum_is_of_the_clipped_updates():
    game = Round(3, seed=7)
    first = game.roster[0]
    game.updates[first] = {k: v * 100 for k, v in game.updates[first].items()}
    total = Relay(game.spec, game.layout).run(game.owners(), game.updates)
    flat = game.layout.flatten(game.updates[first])
    clipped = game.layout.unflatten(flat * (QUANTISER.clip / np.linalg.norm(flat)))
    exact = game.exact_sum(game.roster[1:])
    within_bound(total, {k: exact[k] + clipped[k] for k in exact}, 3)


def test_a_bare_tensor_sums_as_a_tensor_and_integer_tensors_are_refused():
    game = Round(3)
    updates = {
        o: torch.full((5,), float(i), dtype=torch.float32) for i, o in enumerate(game.roster)
    }
    total = Relay(game.spec, Layout.of(updates[game.roster[0]])).run(game.owners(), updates)
    assert isinstance(total, torch.Tensor) and total.shape == (5,)
    assert float((total - 3.0).abs().max()) < QUANTISER.error_bound(3)
    with pytest.raises(UsageError, match="num_batches_tracked"):
        Layout.of({"count": torch.tensor(3)})


# ------------------------------------------------------------------------- dropouts


@pytest.mark.parametrize(("n", "dropped"), [(3, 1), (5, 2)])
def test_owners_dropped_after_sharing_keys_leave_the_survivors_sum(n, dropped):
    game = Round(n, seed=11)
    gone = game.roster[:dropped]
    relay = Relay(game.spec, game.layout)
    total = relay.run(game.owners(), game.updates, drop_after=dict.fromkeys(gone, Stage.SHARE_KEYS))
    survivors = [o for o in game.roster if o not in gone]
    within_bound(total, game.exact_sum(survivors), len(survivors))
    (request,) = sent(relay, UnmaskRequest)
    assert request.dropped == tuple(gone) and request.survivors == tuple(survivors)
    assert_no_update_readable(relay, game)


def test_an_owner_dropped_after_advertising_is_left_out_of_the_masks():
    game = Round(3, seed=12)
    gone = game.roster[1]
    relay = Relay(game.spec, game.layout)
    total = relay.run(game.owners(), game.updates, drop_after={gone: Stage.ADVERTISE})
    survivors = [o for o in game.roster if o != gone]
    within_bound(total, game.exact_sum(survivors), 2)
    assert all(m.masked_with == tuple(survivors) for m in sent(relay, MaskedInput))
    assert sent(relay, UnmaskRequest)[0].dropped == ()


def test_an_owner_gone_after_its_masked_input_still_counts_in_the_sum():
    game = Round(5, seed=13)
    relay = Relay(game.spec, game.layout)
    total = relay.run(game.owners(), game.updates, drop_after={game.roster[4]: Stage.MASKED_INPUT})
    within_bound(total, game.exact_sum(game.roster), 5)
    assert len(sent(relay, UnmaskResponse)) == 4


def test_a_dropped_owners_late_input_stays_masked_by_its_own_seed():
    # the scientist says D dropped, gets D's mask key revealed, then reads D's late input:
    # D's self mask (its seed never revealed) still hides it (why masks are doubled)
    game = Round(3, seed=14)
    owners = game.owners()
    late = owners[0]
    relay = Relay(game.spec, game.layout)
    relay.run(owners, game.updates, drop_after={late.id: Stage.SHARE_KEYS})
    inbox = [s for s in sent(relay, EncryptedShare) if s.receiver == late.id]
    masked = late.masked_input(game.updates[late.id], inbox)
    responses = sent(relay, UnmaskResponse)
    private = crypto.combine({r.index: r.key_shares[late.id] for r in responses})
    keys = {ad.owner: ad for ad in sent(relay, KeyAdvertisement)}
    values = masked.values
    for other in masked.masked_with:
        if other != late.id:
            secret = crypto.agree(private, keys[other].mask_key)
            stream = crypto.mask(pairwise_mask_key(secret, game.spec, late.id, other), values.size)
            values = values - stream if late.id < other else values + stream
    signed = values.view(np.int64).astype(np.float64)
    assert (np.abs(signed - game.quantised(late.id)) <= 2).mean() < 0.01


# ------------------------------------------------------------------------- below the threshold


def test_below_the_threshold_of_masked_inputs_the_round_aborts_and_reveals_nothing():
    game = Round(5, seed=15)  # threshold 3
    relay = Relay(game.spec, game.layout)
    with pytest.raises(SecureAggregationAborted, match="only 2 masked inputs arrived") as caught:
        relay.run(
            game.owners(), game.updates, drop_after=dict.fromkeys(game.roster[:3], Stage.SHARE_KEYS)
        )
    assert caught.value.reason == "below_threshold"
    assert sent(relay, UnmaskRequest) == [] and sent(relay, UnmaskResponse) == []
    assert_no_update_readable(relay, game)


class AsksAnyway(Relay):
    """Asks the owners to unmask however few inputs arrived."""

    def run(self, owners, updates, *, drop_after=None):
        self.aggregator.unmask_request = lambda: UnmaskRequest(  # type: ignore[method-assign]
            self.spec.round_id,
            tuple(sorted(self.aggregator.masked)),
            tuple(o for o in self.spec.roster if o not in self.aggregator.masked),
        )
        return super().run(owners, updates, drop_after=drop_after)


def test_owners_asked_to_unmask_below_the_threshold_refuse():
    game = Round(5, seed=16)
    relay = AsksAnyway(game.spec, game.layout)
    with pytest.raises(SecureAggregationAborted) as caught:
        relay.run(
            game.owners(), game.updates, drop_after=dict.fromkeys(game.roster[:3], Stage.SHARE_KEYS)
        )
    assert caught.value.reason == "below_threshold"
    assert {a.reason for a in relay.aborts.values()} == {"below_threshold"}
    assert "only 2 masked inputs arrived, the threshold is 3: nothing is revealed" in str(
        next(iter(relay.aborts.values()))
    )
    assert sent(relay, UnmaskResponse) == []


def test_below_the_threshold_of_shared_keys_no_owner_sends_its_input():
    game = Round(5, seed=17)
    relay = Relay(game.spec, game.layout)
    with pytest.raises(SecureAggregationAborted, match="only 2 owners shared their keys"):
        relay.run(
            game.owners(), game.updates, drop_after=dict.fromkeys(game.roster[:3], Stage.ADVERTISE)
        )
    assert sent(relay, MaskedInput) == []


def test_rounds_need_three_owners_and_a_threshold_of_more_than_half():
    ids = sorted(Identity.ephemeral().id for _ in range(4))
    with pytest.raises(UsageError, match="at least 3 owners, the roster has 2"):
        RoundSpec("r", tuple(ids[:2]), DIGEST, QUANTISER, 2).check()
    with pytest.raises(UsageError, match=r"\(3 to 4\), not 2"):
        RoundSpec("r", tuple(ids), DIGEST, QUANTISER, 2).check()
    RoundSpec("r", tuple(ids), DIGEST, QUANTISER, 3).check()
    game = Round(3)
    with pytest.raises(UsageError, match="at least 3 in all"):
        OwnerRound(
            game.identities[0], game.spec, expected_owners=game.roster[:2], model_digest=DIGEST
        )


def test_a_scientist_with_a_colluding_owner_needs_a_threshold_above_the_bound():
    # The stated limit, shown: 3 owners with threshold 2 (threshold_against(3) = 2) survive one
    # dropout, but a scientist working with owner C can tell A that B dropped and B that it
    # survived, and with C's shares of both kinds read B's update. threshold_against(3, 1) = 3.
    assert threshold_against(3) == 2 and threshold_against(3, colluders=1) == 3
    assert threshold_against(5) == 3 and threshold_against(5, colluders=2) == 4
    game = Round(3, seed=19)
    a, b, c = owners = game.owners()
    ads = [o.advertise() for o in owners]
    shares = [s for o in owners for s in o.share_keys(ads)]
    masked = {o.id: o.masked_input(game.updates[o.id], [s for s in shares if s.receiver == o.id])
              for o in owners}  # fmt: skip
    colluded = dict(c._held)  # C hands the scientist what it holds: both kinds, of everyone
    to_a = a.unmask(UnmaskRequest(game.spec.round_id, (a.id, c.id), (b.id,)))
    to_b = b.unmask(UnmaskRequest(game.spec.round_id, game.roster, ()))
    index = game.spec.index_of
    seed = crypto.combine({index(b.id): to_b.seed_shares[b.id], index(c.id): colluded[b.id][1]})
    key = crypto.combine({index(a.id): to_a.key_shares[b.id], index(c.id): colluded[b.id][0]})
    values = masked[b.id].values - crypto.mask(self_mask_key(seed, game.spec), game.layout.size)
    for other in (a, c):
        secret = crypto.agree(key, ads[game.roster.index(other.id)].mask_key)
        stream = crypto.mask(pairwise_mask_key(secret, game.spec, b.id, other.id), values.size)
        values = values - stream if b.id < other.id else values + stream
    read = QUANTISER.dequantise(values)
    assert np.abs(read - game.layout.flatten(game.updates[b.id])).max() < QUANTISER.error_bound(1)
    # an owner that fears one colluder asks for threshold_against(3, 1) and refuses this round
    with pytest.raises(SecureAggregationAborted, match="this owner requires at least 3"):
        OwnerRound(game.identities[0], dataclasses.replace(game.spec, round_id="r2"),
                   expected_owners=game.roster, model_digest=DIGEST, min_threshold=3)  # fmt: skip


def test_an_owner_refuses_a_threshold_of_half_the_roster_or_less():
    game = Round(3)
    bad = dataclasses.replace(game.spec, threshold=1)
    with pytest.raises(SecureAggregationAborted, match=r"\(parameters\).*\(2 to 3\), not 1"):
        game.owners(bad)


# ------------------------------------------------------------------------- a hostile relay


class Tampering(Relay):
    """Shows every owner but ``victim`` an altered advertisement of ``victim``."""

    def __init__(self, spec, layout, victim, alter):
        super().__init__(spec, layout)
        self.victim, self.alter = victim, alter

    def advertisements_for(self, receiver, ads):
        if receiver == self.victim:
            return ads
        return [self.alter(ad) if ad.owner == self.victim else ad for ad in ads]


def run_hostile(relay: Relay, game: Round, owners=None, reason: str = "", match: str = ""):
    with pytest.raises(SecureAggregationAborted) as caught:
        relay.run(owners or game.owners(), game.updates)
    assert caught.value.reason == reason, caught.value
    assert any(match in str(a) for a in relay.aborts.values()), [
        str(a) for a in relay.aborts.values()
    ]
    assert sent(relay, UnmaskResponse) == []
    assert_no_update_readable(relay, game)
    return relay


def test_a_swapped_mask_key_fails_its_signature():
    game = Round(3)
    attacker = crypto.public_bytes(crypto.new_key())
    relay = Tampering(game.spec, game.layout, game.roster[0],
                      lambda ad: dataclasses.replace(ad, mask_key=attacker))  # fmt: skip
    run_hostile(relay, game, reason="signature", match="not signed by its identity over this round")
    assert sent(relay, MaskedInput) == []
    assert {a.reason for o, a in relay.aborts.items() if o != game.roster[0]} == {"signature"}


def test_keys_signed_by_another_identity_in_an_owners_name_are_refused():
    game = Round(3)
    impostor = Identity.ephemeral("impostor")

    def forge(ad):
        forged = dataclasses.replace(ad, identity_key=impostor.public_key, signature=b"")
        return dataclasses.replace(
            forged, signature=impostor.sign(forged.signed_bytes(game.spec.digest))
        )

    relay = Tampering(game.spec, game.layout, game.roster[1], forge)
    run_hostile(relay, game, reason="signature", match="is not that owner's: keys swapped")


def test_a_forged_signature_is_refused():
    game = Round(3)
    relay = Tampering(game.spec, game.layout, game.roster[2],
                      lambda ad: dataclasses.replace(ad, signature=bytes(64)))  # fmt: skip
    run_hostile(relay, game, reason="signature", match="forged or swapped keys")


def test_a_fake_owner_in_the_roster_is_refused_by_every_owner():
    game = Round(3)
    fake = Identity.ephemeral("sybil")
    spec = dataclasses.replace(game.spec, roster=(*game.roster, fake.id), threshold=3)
    for identity in game.identities:
        with pytest.raises(
            SecureAggregationAborted, match=f"not expected: \\['{fake.id}'\\]"
        ) as caught:
            OwnerRound(identity, spec, expected_owners=game.roster, model_digest=DIGEST)
        assert caught.value.reason == "roster"


def test_keys_from_an_owner_outside_the_roster_are_refused():
    game = Round(3)
    fake = Identity.ephemeral("sybil")

    class Inserting(Relay):
        def advertisements_for(self, receiver, ads):
            sybil = dataclasses.replace(ads[0], owner=fake.id, identity_key=fake.public_key)
            return [*ads, sybil]

    run_hostile(Inserting(game.spec, game.layout), game, reason="roster",
                match=f"keys arrived from {fake.id}, who is not in the round's roster")  # fmt: skip


def test_different_rosters_shown_to_different_owners_abort_key_agreement():
    # A and B were told to expect {A, B, C}; C was told {A, B, C, D} and is shown that roster
    game = Round(3)
    extra = Identity.ephemeral("D")
    wider = tuple(sorted((*game.roster, extra.id)))
    c = game.identities[2]
    spec_c = dataclasses.replace(game.spec, roster=wider, threshold=3)
    owners = [*game.owners()[:2], OwnerRound(c, spec_c, expected_owners=wider, model_digest=DIGEST)]
    relay = Relay(game.spec, game.layout)
    relay.aggregator.add_advertisements = lambda ads: None  # type: ignore[method-assign]
    run_hostile(relay, game, owners, reason="roster", match="was shown a different round")

    # and with the round digest C's keys carry rewritten to A's and B's view: the signature fails
    spec2 = dataclasses.replace(game.spec, round_id="round-2")
    spec2_c = dataclasses.replace(spec_c, round_id="round-2")
    owners = [
        *game.owners(spec2)[:2],
        OwnerRound(c, spec2_c, expected_owners=wider, model_digest=DIGEST),
    ]
    relay = Tampering(spec2, game.layout, c.id,
                      lambda ad: dataclasses.replace(ad, round_digest=spec2.digest))  # fmt: skip
    relay.aggregator.add_advertisements = lambda ads: None  # type: ignore[method-assign]
    run_hostile(relay, game, owners, reason="signature", match="not signed by its identity")


def test_keys_replayed_from_an_earlier_round_are_refused():
    game = Round(3)
    first = Relay(game.spec, game.layout)
    first.run(game.owners(), game.updates)
    old = {ad.owner: ad for ad in sent(first, KeyAdvertisement)}
    spec2 = dataclasses.replace(game.spec, round_id="round-2")
    victim = game.roster[0]
    relay = Tampering(spec2, game.layout, victim, lambda ad: old[ad.owner])
    run_hostile(relay, game, game.owners(spec2), reason="replay",
                match="are for round 'round-1', this round is 'round-2'")  # fmt: skip
    # with the round id and digest rewritten, the signature (over round 1) fails
    spec3 = dataclasses.replace(game.spec, round_id="round-3")
    relay = Tampering(spec3, game.layout, victim, lambda ad: dataclasses.replace(
        old[ad.owner], round_id="round-3", round_digest=spec3.digest))  # fmt: skip
    run_hostile(relay, game, game.owners(spec3), reason="signature",
                match="not signed by its identity over this round")  # fmt: skip


def test_shares_replayed_from_an_earlier_round_or_altered_do_not_open():
    game = Round(3)
    first = Relay(game.spec, game.layout)
    first.run(game.owners(), game.updates)
    old = sent(first, EncryptedShare)

    class Replaying(Relay):
        def __init__(self, spec, layout, rewrite):
            super().__init__(spec, layout)
            self.rewrite = rewrite

        def shares_for(self, receiver, shares):
            return [self.rewrite(s) for s in old if s.receiver == receiver]

    spec2 = dataclasses.replace(game.spec, round_id="round-2")
    run_hostile(Replaying(spec2, game.layout, lambda s: s), game, game.owners(spec2),
                reason="replay", match="a share from")  # fmt: skip
    spec3 = dataclasses.replace(game.spec, round_id="round-3")
    relay = Replaying(spec3, game.layout, lambda s: dataclasses.replace(s, round_id="round-3"))
    run_hostile(relay, game, game.owners(spec3), reason="forged",
                match="does not open under the key agreed with it")  # fmt: skip
    assert sent(relay, MaskedInput) == []

    class Flipping(Relay):
        def shares_for(self, receiver, shares):
            first, *rest = shares
            flipped = bytes([first.ciphertext[0] ^ 1]) + first.ciphertext[1:]
            return [dataclasses.replace(first, ciphertext=flipped), *rest]

    spec4 = dataclasses.replace(game.spec, round_id="round-4")
    run_hostile(Flipping(spec4, game.layout), game, game.owners(spec4), reason="forged",
                match="forged, or replayed")  # fmt: skip


def test_an_owner_never_runs_a_round_id_twice():
    game = Round(3)
    Relay(game.spec, game.layout).run(game.owners(), game.updates)
    with pytest.raises(SecureAggregationAborted, match="round 'round-1' was run before") as caught:
        game.owners()
    assert caught.value.reason == "replay"


def test_an_owner_never_submits_one_update_twice():
    # the same update in rounds {A, B, C} and {A, B', C'} would give away B + C - B' - C'
    game = Round(3)
    Relay(game.spec, game.layout).run(game.owners(), game.updates)
    spec2 = dataclasses.replace(game.spec, round_id="round-2")
    again = game.roster[0]
    fresh = {o: {k: v * 0.5 for k, v in u.items()} for o, u in game.updates.items()}
    fresh[again] = game.updates[again]
    relay = Relay(spec2, game.layout)
    total = relay.run(game.owners(spec2), fresh)  # the others' sum: the one resubmitted is out
    assert relay.aborts[again].reason == "replay"
    assert "this update was submitted before, in round 'round-1'" in str(relay.aborts[again])
    assert sent(relay, UnmaskRequest)[0].dropped == (again,)
    exact = {k: sum(fresh[o][k] for o in game.roster[1:]) for k in game.layout.names}
    within_bound(total, exact, 2)


def test_a_round_on_a_model_an_owner_does_not_hold_is_refused():
    game = Round(3)
    other = model_digest(torch.nn.Linear(6, 3))
    with pytest.raises(SecureAggregationAborted, match="this owner holds") as caught:
        OwnerRound(game.identities[0], game.spec, expected_owners=game.roster, model_digest=other)
    assert caught.value.reason == "model"
    # an owner sent another model, and told a round that names it: the others refuse its keys
    odd = game.identities[0]
    spec_odd = dataclasses.replace(game.spec, model_digest=other)
    owners = [OwnerRound(odd, spec_odd, expected_owners=game.roster, model_digest=other),
              *game.owners()[1:]]  # fmt: skip
    relay = Relay(game.spec, game.layout)
    relay.aggregator.add_advertisements = lambda ads: None  # type: ignore[method-assign]
    run_hostile(relay, game, owners, reason="model", match="holds a different model")


class AskingBoth(Relay):
    """Claims one survivor dropped as well, to get both kinds of its shares."""

    def unmask_request_for(self, receiver, request):
        target = request.survivors[0]
        return dataclasses.replace(request, dropped=(*request.dropped, target))


def test_a_request_for_both_kinds_of_share_of_one_owner_is_refused():
    game = Round(3)
    relay = AskingBoth(game.spec, game.layout)
    run_hostile(relay, game, reason="both_kinds",
                match="together they would unmask a single owner's update")  # fmt: skip
    assert len(relay.aborts) == 3


def test_a_second_unmask_request_is_refused():
    game = Round(5, seed=18)
    owners = game.owners()
    relay = Relay(game.spec, game.layout)
    relay.run(owners, game.updates, drop_after={game.roster[0]: Stage.SHARE_KEYS})
    (request,) = sent(relay, UnmaskRequest)
    # now say the dropped owner survived and a survivor dropped: the other kind of share
    again = UnmaskRequest(request.round_id, (*request.survivors[1:], request.dropped[0]),
                          (request.survivors[0],))  # fmt: skip
    with pytest.raises(SecureAggregationAborted, match="a second unmask request") as caught:
        owners[1].unmask(again)
    assert caught.value.reason == "replay"
    with pytest.raises(SecureAggregationAborted):  # and stays aborted
        owners[1].unmask(again)


def test_an_unmask_request_that_misstates_who_took_part_is_refused():
    game = Round(3)
    owners = game.owners()
    ads = [o.advertise() for o in owners]
    shares = [s for o in owners for s in o.share_keys(ads)]
    for o in owners:
        o.masked_input(game.updates[o.id], [s for s in shares if s.receiver == o.id])
    partial = UnmaskRequest(game.spec.round_id, game.roster[:2], ())
    with pytest.raises(SecureAggregationAborted, match="not the owners this owner masked with"):
        owners[0].unmask(partial)
    counted_out = UnmaskRequest(game.spec.round_id, (game.roster[0], game.roster[2]),
                                (game.roster[1],))  # fmt: skip
    with pytest.raises(SecureAggregationAborted, match="counts this owner as dropped"):
        owners[1].unmask(counted_out)
    replayed = UnmaskRequest("round-0", game.roster, ())
    with pytest.raises(SecureAggregationAborted, match="is for round 'round-0'") as caught:
        owners[2].unmask(replayed)
    assert caught.value.reason == "replay"


def test_an_owner_revealing_a_wrong_share_cannot_skew_the_sum_unnoticed():
    # a lying owner (not the scientist): its seed share does not rebuild the committed seed
    game = Round(3)
    owners = game.owners()
    relay = Relay(game.spec, game.layout)
    ads = [o.advertise() for o in owners]
    relay.aggregator.add_advertisements(ads)
    shares = [s for o in owners for s in o.share_keys(ads)]
    for o in owners:
        relay.aggregator.add_masked_input(
            o.masked_input(game.updates[o.id], [s for s in shares if s.receiver == o.id])
        )
    request = relay.aggregator.unmask_request()
    responses = [o.unmask(request) for o in owners]
    liar = responses[0]
    wrong = {k: bytes(32) for k in liar.seed_shares}
    relay.aggregator.add_response(dataclasses.replace(liar, seed_shares=wrong))
    relay.aggregator.add_response(responses[1])
    with pytest.raises(SecureAggregationAborted, match="do not rebuild its seed") as caught:
        relay.aggregator.result()
    assert caught.value.reason == "shares"
    with pytest.raises(SecureAggregationAborted, match="did not answer what it was asked"):
        relay.aggregator.add_response(dataclasses.replace(responses[2], key_shares={"x": b""}))


def test_steps_out_of_order_abort():
    game = Round(3)
    owner = game.owners()[0]
    with pytest.raises(
        SecureAggregationAborted,
        match="asked to share keys while its next step is to advertise keys",
    ):
        owner.share_keys([])
    with pytest.raises(SecureAggregationAborted, match="share keys"):  # aborted stays aborted
        owner.advertise()


def test_the_abort_is_a_duet_error_with_its_reason_in_the_message():
    error = SecureAggregationAborted("it went wrong", reason="roster", owner="3fa2-91bc")
    assert isinstance(error, DuetError)
    assert str(error) == "secure aggregation aborted (roster): owner 3fa2-91bc: it went wrong"


# ------------------------------------------------------------------------- masked inputs look uniform


def chi_square_bytes(values: np.ndarray) -> float:
    counts = np.bincount(values.view(np.uint8), minlength=256).astype(np.float64)
    expected = counts.sum() / 256
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_a_masked_input_alone_is_indistinguishable_from_uniform(fill):
    size = 1 << 15  # 32,768 elements: 262,144 bytes
    game = Round(3)
    quantiser = Quantiser(clip=3.0 * size**0.5 + 1, fractional_bits=16)
    spec = dataclasses.replace(game.spec, quantiser=quantiser)
    updates = {o: torch.full((size,), fill, dtype=torch.float64) for o in game.roster}
    relay = Relay(spec, Layout.of(updates[game.roster[0]]))
    total = relay.run(game.owners(spec), updates)
    assert float((total - 3 * fill).abs().max()) < quantiser.error_bound(3)
    plain = quantiser.quantise(np.full(size, fill))
    assert chi_square_bytes(plain) > 10_000  # the test can tell a plain update
    for masked in sent(relay, MaskedInput):
        # 255 degrees of freedom: mean 255, deviation 22.6; 500 is 10 deviations out
        assert chi_square_bytes(masked.values) < 500
        bits = np.unpackbits(masked.values.view(np.uint8)).reshape(size, 64).sum(axis=0)
        # each of the 64 bit positions is set in half the elements: deviation 90.5; margin 10
        assert np.abs(bits - size / 2).max() < 905
        # the elements' mean, as a fraction of 2**64: 0.5, deviation 0.0016; margin 30
        assert (
            abs(float((masked.values >> np.uint64(11)).astype(np.float64).mean()) / 2**53 - 0.5)
            < 0.05
        )


def test_masked_zeros_and_masked_constants_have_the_same_byte_distribution():
    size = 1 << 15
    game = Round(3)
    quantiser = Quantiser(clip=1e4 * size**0.5 + 1, fractional_bits=16)
    spec = dataclasses.replace(game.spec, quantiser=quantiser)
    histograms = []
    for round_id, fill in (("zeros", 0.0), ("constants", 1e4)):
        run_spec = dataclasses.replace(spec, round_id=round_id)
        updates = {o: torch.full((size,), fill, dtype=torch.float64) for o in game.roster}
        relay = Relay(run_spec, Layout.of(updates[game.roster[0]]))
        relay.run(game.owners(run_spec), updates)
        values = sent(relay, MaskedInput)[0].values
        histograms.append(np.bincount(values.view(np.uint8), minlength=256).astype(np.float64))
    # chi-square test of homogeneity, 255 degrees of freedom: 500 is 10 deviations out
    both = histograms[0] + histograms[1]
    expected = [both * h.sum() / both.sum() for h in histograms]
    statistic = sum(((h - e) ** 2 / e).sum() for h, e in zip(histograms, expected, strict=True))
    assert statistic < 500


@pytest.mark.parametrize("fill", [0.0, 1e4])
def test_masked_inputs_over_many_rounds_look_uniform(fill):
    # fresh keys and seeds every round: 64 rounds of 128 elements, the same input each time (so
    # the owners keep no History, which would refuse an update submitted before)
    game = Round(3)
    quantiser = Quantiser(clip=1e4 * 128**0.5 + 1, fractional_bits=16)
    collected = []
    for number in range(64):
        spec = dataclasses.replace(game.spec, round_id=f"draw-{number}", quantiser=quantiser)
        updates = {o: torch.full((128,), fill, dtype=torch.float64) for o in game.roster}
        relay = Relay(spec, Layout.of(updates[game.roster[0]]))
        relay.run(game.owners(spec, remember=False), updates)
        collected.append(sent(relay, MaskedInput)[0].values)
    values = np.concatenate(collected)
    assert chi_square_bytes(values) < 500  # 255 degrees of freedom, 10 deviations out
    first = np.array([v[0] for v in collected])
    assert len(set(first.tolist())) == 64  # the same input never masks the same way twice
