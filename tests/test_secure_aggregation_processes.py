"""Secure aggregation over real duets (issue 20): a signaling server and three owner processes
on 127.0.0.1, each with a shard of scikit-learn's digits, this test process the scientist. Each
owner allows the federation only with secure aggregation, with the roster the test told every
owner (``--secure``); each round its trained model stays on its machine and only its masked,
quantised update leaves.

What is compared: each owner process writes down the update it fixed for each round (and the
trained weights it came from: ``--record``, the test's window, nothing the scientist receives);
the test computes plain FedAvg of those very updates and checks the secure global model
against it within the quantisation bound, and checks that no value the scientist's clients
received holds any owner's update or trained weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from duet import federated as fl
from duet.errors import SecureAggregationAborted
from duet.federated import Outcome
from duet.federated import secure as secure_module
from duet.protocol.messages import Reply
from duet.protocol.secagg_messages import SecAggUnmask
from duet.runtime import run

from .processes import UNIT
from .test_federated_processes import Owners

torch.set_num_threads(1)
NAMES = ["north", "south", "east"]
SETTINGS = fl.SecureAggregation(clip=1e4, fractional_bits=16, step_timeout_secs=UNIT / 3)
TRAINING = fl.LocalTraining(epochs=1, batch_size=32, optimizer_options={"lr": 0.1})


@pytest.fixture
def owners():
    made = Owners()
    yield made
    made.stop()


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def start_secure(owners: Owners, tmp_path, **extra: list[str]):
    owners.start(
        NAMES, **{n: ["--secure", "--record", str(tmp_path), *extra.get(n, [])] for n in NAMES}
    )
    roster = ",".join(a.owner_id for a in owners.addresses)
    for process in owners.processes.values():
        process.send(f"roster {roster}")
    for process in owners.processes.values():
        process.event("event", "allowed", UNIT)
    return owners.join()


class Received:
    """Every Reply the scientist's clients received, with its frame's buffers (as bytes)."""

    def __init__(self, sessions) -> None:
        self.replies: list[tuple[str, Reply, list[bytes]]] = []
        for name, session in sessions.items():
            client = session.client
            original = client.on_messages

            def on_messages(messages, buffers, original=original, name=name):
                kept = [bytes(b) for b in buffers]
                for message in messages:
                    if isinstance(message, Reply):
                        self.replies.append((name, message, kept))
                original(messages, buffers)

            client.on_messages = on_messages

    def buffers(self) -> list[bytes]:
        return [b for _, _, buffers in self.replies for b in buffers]


def recorded(tmp_path, shard: int, round_: int) -> dict:
    return torch.load(tmp_path / f"shard{shard}-{round_}.pt")


def fedavg(previous: dict, records: list[dict]) -> dict:
    """Plain FedAvg of the owners' own updates: the previous global weights plus the sum of
    ``samples * (trained - global)`` over the sum of samples."""
    total = sum(r["samples"] for r in records)
    return {
        k: previous[k].double() + sum(r["update"][k] for r in records) / total
        for k in records[0]["update"]
    }


def check_records(previous: dict, records: list[dict]) -> None:
    """Each owner's update is samples * (its trained weights - the global model it was sent),
    and none was clipped (so FedAvg's value is what the sum stands for)."""
    for r in records:
        for k, update in r["update"].items():
            expected = r["samples"] * (r["trained"][k].double() - previous[k].double())
            torch.testing.assert_close(update, expected, rtol=0, atol=0)
        norm = float(torch.cat([u.reshape(-1) for u in r["update"].values()]).norm())
        assert 0 < norm < SETTINGS.clip, norm


def assert_close_to(state: dict, expected: dict, owners: int, samples: int) -> None:
    bound = SETTINGS.spec("x", tuple(f"o{i}" for i in range(3)), b"").quantiser.error_bound(owners)
    for k, value in expected.items():
        # the quantisation bound on the mean, plus float32's rounding of the stored weight
        atol = bound / samples + 1e-6 * (1 + float(value.abs().max()))
        torch.testing.assert_close(state[k].double(), value, rtol=0, atol=atol)


def assert_nothing_leaked(received: Received, records: list[dict]) -> None:
    """No buffer holds an owner's trained weights or update, raw; no uint64 vector received
    reads, dequantised, as any one owner's update."""
    buffers = received.buffers()
    assert buffers, "the scientist received no buffers at all"
    size = sum(u.numel() for u in records[0]["update"].values())
    masked = [b for b in buffers if len(b) == 8 * size]
    assert masked, "no masked input arrived"
    for r in records:
        for k, weights in r["trained"].items():
            if weights.numel() >= 16:
                raw = weights.contiguous().numpy().tobytes()
                assert not any(raw in b for b in buffers), k
        flat = torch.cat([u.reshape(-1) for u in r["update"].values()]).numpy()
        assert not any(flat.tobytes() in b for b in buffers)
        for b in masked:
            values = np.frombuffer(b, dtype=np.int64).astype(np.float64) / 2**16
            assert np.abs(values - flat).max() > 1e6  # uniform in the ring: far from it
    for _, reply, _ in received.replies:  # and in the headers: nothing float-like per owner
        text = json.dumps(reply.value, default=str)
        assert "trained" not in text and '"update"' not in text


@pytest.mark.timeout(240)
def test_three_owners_sum_securely_match_fedavg_and_a_hostile_scientist_gets_aborts(
    owners, tmp_path, monkeypatch
):
    sessions = start_secure(owners, tmp_path)
    received = Received(sessions)
    model = small_model()
    states = [{k: v.clone() for k, v in model.state_dict().items()}]
    fed = fl.Federation(
        model, sessions, data="digits", training=TRAINING, min_owners=2, show="none",
        secure_aggregation=SETTINGS, round_timeout_secs=3 * UNIT,
        on_round=lambda _: states.append({k: v.clone() for k, v in model.state_dict().items()}),
    )  # fmt: skip
    history = fed.fit(rounds=2)
    print("\n".join(r.summary() for r in history))

    for round_, report in enumerate(history, 1):
        assert report.counted and report.secure and report.included == NAMES, report.summary()
        records = [recorded(tmp_path, i, round_) for i in range(3)]
        check_records(states[round_ - 1], records)
        samples = sum(r["samples"] for r in records)
        assert [report.owners[n].samples for n in NAMES] == [r["samples"] for r in records]
        assert_close_to(states[round_], fedavg(states[round_ - 1], records), 3, samples)
    every = [recorded(tmp_path, i, r) for i in range(3) for r in (1, 2)]
    assert_nothing_leaked(received, every)
    for name in NAMES:  # the one request: the sample count; updates left without one
        assert owners.decisions(name) == [("federated samples", "accepted")]

    # a hostile scientist: a second unmask request for a finished round is refused
    north = fed.members[0]
    roster = sorted(a.owner_id for a in owners.addresses)
    again = north.aio.exchange(
        lambda rid: SecAggUnmask(
            rid=rid, federation="federated", round_id=f"federated {fed._run} round 2",
            survivors=roster[:2], dropped=roster[2:],
        ),
        timeout_secs=UNIT, what="a second unmask request",
    )  # fmt: skip
    with pytest.raises(SecureAggregationAborted, match="second unmask request") as caught:
        run(again, timeout_secs=UNIT, what="a second unmask request")
    assert caught.value.reason == "replay"

    # ... and so is an unmask request asking for both kinds of share of one owner
    def both_kinds(**fields):
        fields["dropped"] = [*fields["dropped"], fields["survivors"][0]]
        return SecAggUnmask(**fields)

    monkeypatch.setattr(secure_module, "SecAggUnmask", both_kinds)
    mark = len(received.replies)
    third = fed.fit(rounds=1)[-1]
    print(third.summary())
    assert not third.counted and "(both_kinds)" in third.note, third.summary()
    assert all(r.outcome is Outcome.ABORTED for r in third.owners.values())
    assert all(torch.equal(v, states[2][k]) for k, v in model.state_dict().items())
    for _, reply, _ in received.replies[mark:]:  # no owner revealed a share
        assert "seed_shares" not in json.dumps(reply.value, default=str)
    assert_nothing_leaked(received, [recorded(tmp_path, i, 3) for i in range(3)])


@pytest.mark.timeout(240)
def test_an_owner_killed_after_key_agreement_leaves_the_round_to_the_survivors(owners, tmp_path):
    sessions = start_secure(owners, tmp_path, east=["--die-at-input"])
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fed = fl.Federation(
        model, sessions, data="digits", training=TRAINING, min_owners=2, show="none",
        secure_aggregation=SETTINGS, round_timeout_secs=3 * UNIT,
    )  # fmt: skip
    (report,) = fed.fit(rounds=1)
    print(report.summary())

    assert report.counted and report.secure and report.included == ["north", "south"]
    east = report.owners["east"]
    assert east.outcome is Outcome.DROPPED and "after key agreement" in east.reason, east
    records = [recorded(tmp_path, i, 1) for i in range(2)]  # north's and south's
    check_records(before, records)
    samples = sum(r["samples"] for r in records)
    assert_close_to(model.state_dict(), fedavg(before, records), 2, samples)

    # the next round's roster is short of an owner: not started, nothing asked of anyone
    after = {k: v.clone() for k, v in model.state_dict().items()}
    second = fed.fit(rounds=1)[-1]
    print(second.summary())
    assert not second.counted and "every owner of the roster" in second.note
    assert all(torch.equal(v, after[k]) for k, v in model.state_dict().items())
