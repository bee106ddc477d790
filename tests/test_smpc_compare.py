"""Comparisons on secret-shared tensors (duet/smpc/compare.py): ``< <= > >= == !=`` against
shared and public values, ``relu``, ``abs``, ``max`` / ``argmax`` / ``min`` / ``argmin``, and a
ReLU MLP's encrypted inference on held-out digits.

The protocol's claims, each tested here: results equal plaintext exactly (0/1, on edge cases:
zero, one ulp, equal values, the ends of the fixed-point range, every sign of the ring's
extremes); what the holders open is uniform whatever the secret; the masks come from the
operating system, not torch's generator; the provider deals but never holds anything.
"""

from __future__ import annotations

import gc
import math
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import duet as sy
from duet.smpc import compare, shared
from duet.smpc.shared import SharedTensor

ULP = 2.0**-16
EDGE = 2.0**46 - 1  # the largest magnitude fix_precision() takes at 16 bits (|x| < 2^46)


@pytest.fixture
def workers():
    hook = sy.TorchHook(torch)
    made = {name: sy.VirtualWorker(hook, id=name) for name in ("bob", "alice", "bill", "carol")}
    yield made
    for worker in made.values():
        worker.close()


def holders_of(workers, count):
    return [workers["bob"], workers["alice"], workers["bill"]][:count]


def values_and_partners():
    """Pairs covering the edge cases: equal values, 0 against +-1 ulp, both signs, the ends of
    the range, and random values of every magnitude."""
    generator = torch.Generator().manual_seed(7)
    edge = [
        (0.0, 0.0), (0.0, ULP), (ULP, 0.0), (-ULP, 0.0), (0.0, -ULP), (1.5, 1.5), (-2.0, -2.0),
        (-1.0, 1.0), (1.0, -1.0), (EDGE, EDGE), (-EDGE, -EDGE), (EDGE, -EDGE), (-EDGE, EDGE),
        (EDGE, EDGE - 1), (-EDGE, -EDGE + 1), (3.0, 3.0 + ULP), (-7.25, -7.25 - ULP),
    ]  # fmt: skip
    a = torch.tensor([p for p, _ in edge], dtype=torch.float64)
    b = torch.tensor([q for _, q in edge], dtype=torch.float64)
    scale = 10.0 ** torch.randint(-4, 12, (200,), generator=generator).double()
    ra = torch.randn(200, generator=generator, dtype=torch.float64) * scale
    rb = torch.where(
        torch.rand(200, generator=generator) < 0.2,
        ra,  # a fifth equal
        torch.randn(200, generator=generator, dtype=torch.float64) * scale,
    )
    a, b = torch.cat([a, ra]), torch.cat([b, rb])
    # compare what the encodings say: rounding to 16 bits may make two values equal
    fa, fb = a.fix_precision(), b.fix_precision()
    return fa, fb


COMPARISONS = {
    "<": (lambda x, y: x < y),
    "<=": (lambda x, y: x <= y),
    ">": (lambda x, y: x > y),
    ">=": (lambda x, y: x >= y),
    "==": (lambda x, y: x == y),
    "!=": (lambda x, y: x != y),
}


def opened(result):
    return result.get().float_precision()


@pytest.mark.parametrize("count", [2, 3])
def test_comparisons_equal_plaintext_on_edge_cases_against_shared_and_public_values(workers, count):
    holders = holders_of(workers, count)
    provider = workers["carol"]
    fa, fb = values_and_partners()
    a, b = fa.child, fb.child  # the encodings: exact plaintext to compare with
    x = fa.share(*holders, crypto_provider=provider)
    y = fb.share(*holders, crypto_provider=provider)
    for symbol, op in COMPARISONS.items():
        expected = op(a, b).double()
        assert torch.equal(opened(op(x, y)).double(), expected), symbol  # shared, shared
        assert torch.equal(opened(op(x, fb)).double(), expected), symbol  # a public fixed tensor
    # public numbers on either side, and torch's functions
    floats = fa.float_precision().double()
    assert torch.equal(opened(x > 0).double(), (floats > 0).double())
    assert torch.equal(opened(0 < x).double(), (floats > 0).double())
    assert torch.equal(opened(x <= 1.5).double(), (floats <= 1.5).double())
    assert torch.equal(opened(torch.gt(x, y)).double(), (a > b).double())
    assert torch.equal(opened(torch.zeros(len(a)) >= x).double(), (floats <= 0).double())
    assert torch.equal(opened(x.eq(y)).double(), (a == b).double())


def test_integer_sharings_compare_exactly_and_give_integer_bits(workers):
    bob, alice, carol = workers["bob"], workers["alice"], workers["carol"]
    a = torch.tensor([25, -3, 0, 2**61, -(2**61), 7])
    b = torch.tensor([5, -3, 1, 2**61 - 1, 2**61, 7])
    x = a.share(bob, alice, crypto_provider=carol)
    y = b.share(bob, alice, crypto_provider=carol)
    assert torch.equal((x > y).get(), (a > b).long())
    assert torch.equal((x == y).get(), (a == b).long())
    assert torch.equal((x <= 7).get(), (a <= 7).long())
    assert torch.equal(x.max().get(), a.max())
    assert torch.equal(x.argmax().get(), a.argmax())
    assert torch.equal((x.sum() > y.sum()).get(), (a.sum() > b.sum()).long())  # single values


@pytest.mark.parametrize("count", [2, 3])
def test_the_sign_is_exact_for_every_element_of_the_ring(workers, count):
    """The primitive: the top bit, for any int64 including the ring's two ends and values one
    step from a power of two (where a wrong borrow would show)."""
    holders = holders_of(workers, count)
    raw = [0, 1, -1, 2**63 - 1, -(2**63), 2**62, -(2**62), 2**62 - 1, 1 - 2**62]
    raw += [(1 << k) - 1 for k in range(1, 63, 7)] + [-(1 << k) for k in range(1, 63, 7)]
    encoded = torch.tensor(raw, dtype=torch.int64)
    x = SharedTensor.from_secret(
        encoded,
        holders,
        crypto_provider=workers["carol"],
        precision_fractional=0,
        dtype=torch.int64,
        options={},
    )
    assert torch.equal(compare.sign_bit(x).get(), (encoded < 0).long())


@pytest.mark.parametrize("count", [2, 3])
def test_relu_abs_max_and_argmax_equal_torch_on_shares(workers, count):
    holders = holders_of(workers, count)
    provider = workers["carol"]
    generator = torch.Generator().manual_seed(count)
    plain = (torch.randn(4, 5, 3, generator=generator, dtype=torch.float64) * 100).round() / 8
    plain[0, 0] = torch.tensor([2.0, 2.0, -1.0])  # ties: the first index wins, as in torch
    plain[1, :, 2] = -EDGE
    plain[2, 3] = 0.0
    x = plain.fix_precision().share(*holders, crypto_provider=provider)
    assert torch.equal(opened(x.relu()), F.relu(plain))
    assert torch.equal(opened(F.relu(x)), F.relu(plain))
    assert torch.equal(opened(torch.relu(x)), F.relu(plain))
    assert torch.equal(opened(nn.ReLU()(x)), F.relu(plain))
    assert torch.equal(opened(x.abs()), plain.abs())
    assert torch.equal(opened(abs(x)), plain.abs())
    assert float(opened(x.max())) == float(plain.max())
    assert float(opened(x.min())) == float(plain.min())
    assert int(opened(x.argmax())) == int(plain.argmax())
    assert int(opened(x.argmin())) == int(plain.argmin())
    for dim in (0, 1, 2, -1):
        values, indices = x.max(dim=dim)
        expected = plain.max(dim=dim)
        assert torch.equal(opened(values), expected.values), dim
        assert torch.equal(opened(indices).long(), expected.indices), dim
        assert torch.equal(opened(x.argmax(dim)).long(), plain.argmax(dim)), dim
        assert torch.equal(opened(x.min(dim).values), plain.min(dim).values), dim
        assert torch.equal(opened(x.argmin(dim)).long(), plain.argmin(dim)), dim
    values, indices = torch.max(x, 1, keepdim=True)
    assert torch.equal(opened(values), plain.max(1, keepdim=True).values)
    assert torch.equal(opened(torch.argmax(x, dim=2)).long(), plain.argmax(dim=2))
    in_place = plain.fix_precision().share(*holders, crypto_provider=provider)
    assert torch.relu_(in_place) is in_place  # torch.relu_, nn.ReLU(inplace=True)
    assert torch.equal(opened(in_place), F.relu(plain))
    one = torch.tensor([[3.5]]).fix_precision().share(*holders, crypto_provider=provider)
    assert torch.equal(opened(one.max(dim=1).indices), torch.tensor([0.0]))


# ---------------------------------------------------------------- what the holders see

CHI_SQUARE_LIMIT = 600.0  # 255 degrees of freedom: mean 255, sd 22.6; 600 is 15 sd out


def byte_counts(values: list[torch.Tensor]) -> Counter:
    """Byte histogram of the distinct values opened. A protocol opens some values more than
    once (the same masked operand in two products), and counting a value twice doubles its
    weight in the statistic: with repeats kept, uniform openings scored 440-560 against a
    limit of 600, a test that failed now and then without anything being wrong."""
    distinct = torch.unique(torch.cat([value.reshape(-1) for value in values]))
    return Counter(distinct.numpy().astype("<i8").tobytes())


def chi_square_uniform(counts: Counter) -> float:
    total = sum(counts.values())
    expected = total / 256
    return sum((counts.get(v, 0) - expected) ** 2 / expected for v in range(256))


def chi_square_same(first: Counter, second: Counter) -> float:
    n1, n2 = sum(first.values()), sum(second.values())
    statistic = 0.0
    for v in range(256):
        o1, o2 = first.get(v, 0), second.get(v, 0)
        e1, e2 = (o1 + o2) * n1 / (n1 + n2), (o1 + o2) * n2 / (n1 + n2)
        statistic += (o1 - e1) ** 2 / e1 + (o2 - e2) ** 2 / e2
    return statistic


def recording_openings(monkeypatch):
    """Every value the holders open to each other: the masked input (compare.py) and the
    Beaver openings (shared.py)."""
    log: dict[str, list[torch.Tensor]] = {"masked": [], "beaver": []}

    def recorder(kind, original):
        def record(pieces):
            value = original(pieces)
            log[kind].append(value.clone())
            return value

        return record

    monkeypatch.setattr(compare, "open_value", recorder("masked", compare.open_value))
    monkeypatch.setattr(shared, "open_value", recorder("beaver", shared.open_value))
    return log


@pytest.mark.parametrize("count", [2, 3])
def test_every_value_opened_during_a_comparison_is_uniform_whatever_the_secret(
    workers, count, monkeypatch
):
    holders = holders_of(workers, count)
    provider = workers["carol"]
    n = 4_000
    zeros = torch.zeros(n).fix_precision().share(*holders, crypto_provider=provider)
    large = torch.full((n,), 2.0**45).fix_precision().share(*holders, crypto_provider=provider)
    seen = {}
    for name, secret in (("zeros", zeros), ("large", large)):
        log = recording_openings(monkeypatch)
        result = secret > 0
        monkeypatch.undo()
        result.get()  # the reconstruction is not the protocol's: not recorded
        seen[name] = log
        assert len(log["masked"]) == 1 and log["masked"][0].shape == (n,)
        assert len(log["beaver"]) == 16  # 8 rounds of products, two openings each
    for kind in ("masked", "beaver"):
        zero_counts = byte_counts(seen["zeros"][kind])
        large_counts = byte_counts(seen["large"][kind])
        assert chi_square_uniform(zero_counts) < CHI_SQUARE_LIMIT, kind
        assert chi_square_uniform(large_counts) < CHI_SQUARE_LIMIT, kind
        assert chi_square_same(zero_counts, large_counts) < CHI_SQUARE_LIMIT, kind
    # the masked value's top bit (where the secret's sign would be) is a fair coin for both
    for name in ("zeros", "large"):
        negatives = int((seen[name]["masked"][0] < 0).sum())
        assert abs(negatives - n / 2) < 8 * math.sqrt(n / 4), name


def test_comparison_masks_come_from_the_operating_system_not_torch_generator(workers, monkeypatch):
    bob, alice, carol = workers["bob"], workers["alice"], workers["carol"]
    draws = []
    for _ in range(2):
        x = torch.tensor([1.0, 2.0, 3.0]).fix_precision().share(bob, alice, crypto_provider=carol)
        torch.manual_seed(0)
        log = recording_openings(monkeypatch)
        x.gt(0)
        monkeypatch.undo()
        draws.append(log["masked"][0])
    assert not torch.equal(draws[0], draws[1])


def test_the_provider_deals_but_holds_nothing_and_holders_keep_only_their_shares(workers):
    bob, alice, carol = workers["bob"], workers["alice"], workers["carol"]
    x = torch.tensor([1.0, -2.0]).fix_precision().share(bob, alice, crypto_provider=carol)
    results = [x > 0, x.relu(), x.max(), x.abs()]
    assert carol._objects == {}  # the provider's seeds and corrections go to the holders
    for result in results:
        result.get()
    del results
    gc.collect()
    # every temporary of the protocol (masks, bits, triples, openings) is gone again
    assert len(bob._objects) == 1 and len(alice._objects) == 1
    assert torch.equal(x.get().float_precision(), torch.tensor([1.0, -2.0]))


def test_comparisons_refuse_what_they_cannot_do_safely(workers):
    bob, alice, bill, carol = (workers[n] for n in ("bob", "alice", "bill", "carol"))
    x = torch.tensor([1.0, 2.0]).fix_precision()
    with pytest.raises(sy.UsageError, match="crypto provider 'bob' is also a share holder"):
        x.share(bob, alice, crypto_provider=bob)
    without = x.share(bob, alice)
    with pytest.raises(sy.UsageError, match="comparisons on shared values need a crypto"):
        without.gt(0)
    with pytest.raises(sy.UsageError, match="comparisons on shared values need a crypto"):
        without.relu()
    on_bob_alice = x.share(bob, alice, crypto_provider=carol)
    with pytest.raises(sy.UsageError, match="shared among different workers"):
        on_bob_alice.lt(x.share(bob, bill, crypto_provider=carol))
    with pytest.raises(sy.UsageError, match="a float cannot meet an integer sharing"):
        torch.tensor([1]).share(bob, alice, crypto_provider=carol).lt(0.5)
    with pytest.raises(sy.UsageError, match="out of the fixed-point range"):
        on_bob_alice.lt(2.0**50)
    with pytest.raises(sy.UsageError, match="inf or nan"):
        on_bob_alice.gt(float("nan"))
    with pytest.raises(sy.UsageError, match="the truth of a shared tensor is secret"):
        bool(on_bob_alice > 0)
    with pytest.raises(sy.UsageError, match="not defined for str"):
        on_bob_alice.gt("1")
    with pytest.raises(sy.UsageError, match="empty"):
        torch.zeros(0).fix_precision().share(bob, alice, crypto_provider=carol).max()
    with pytest.raises(sy.UsageError, match="sigmoid is not defined on shared tensors"):
        torch.sigmoid(on_bob_alice)


# ---------------------------------------------------------------- a ReLU MLP on shares


def digits_split():
    """scikit-learn's digits (bundled, no download), pixels scaled to [0, 1]: 1,400 rows to
    train on, 397 held out (as in test_smpc.py)."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target)
    return (features[:1400], labels[:1400]), (features[1400:], labels[1400:])


class ReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def test_encrypted_inference_of_a_relu_mlp_matches_plaintext_on_held_out_digits(workers):
    (train_rows, train_labels), (test_rows, truth) = digits_split()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: torch's pool would oversubscribe
    try:
        torch.manual_seed(0)
        model = ReluNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(300):
            optimizer.zero_grad()
            F.cross_entropy(model(train_rows), train_labels).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        plain = model(test_rows)

    model_owner, data_owner, provider = workers["bob"], workers["alice"], workers["carol"]
    model.fix_precision().share(model_owner, data_owner, crypto_provider=provider)
    rows = test_rows.fix_precision().share(model_owner, data_owner, crypto_provider=provider)
    logits = model(rows)
    predicted = logits.argmax(dim=1).get().float_precision().long()  # argmax on shares too
    logits = logits.get().float_precision()

    plain_predicted = plain.argmax(1)
    plain_accuracy = float((plain_predicted == truth).float().mean())
    shared_accuracy = float((predicted == truth).float().mean())
    assert len(truth) == 397 and plain_accuracy > 0.9
    assert int((predicted != plain_predicted).sum()) == 0  # no prediction differs
    assert abs(shared_accuracy - plain_accuracy) <= 1e-3
    assert (logits - plain).abs().max() < 0.01
