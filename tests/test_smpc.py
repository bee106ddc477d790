"""Secret-shared tensors over VirtualWorkers, PySyft 0.2's API: fixed point, additive shares in
Z(2^64), arithmetic on shares (Beaver triples from a crypto provider), reconstruction.

The fixed-point error bound the tests hold results to, at f fractional bits (ulp = 2^-f):
encoding rounds to within ulp/2 per value; a sum adds its operands' errors; a product of x and
y (and each product in a matmul with inner size k) carries |x|·err(y) + |y|·err(x), plus at
most 2 ulp for the truncation (floor, and SecureML's or the provider's possible extra 1).
``bound`` below computes it; float32 decoding adds its own rounding (relative 2^-24).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import duet as sy
from duet.smpc import provider as dealer

ULP = 2.0**-16


@pytest.fixture
def hook():
    return sy.TorchHook(torch)


@pytest.fixture
def workers(hook):
    made = {name: sy.VirtualWorker(hook, id=name) for name in ("bob", "alice", "bill", "carol")}
    yield made
    for worker in made.values():
        worker.close()


def bound(*magnitudes_and_counts: tuple[float, float, int]) -> float:
    """The error bound of a product-like result: for each (|x| max, |y| max, inner size k),
    k·(|x| + |y|)·ulp/2 + 2 ulp, plus float32's relative rounding of the largest result."""
    total = 0.0
    for x, y, k in magnitudes_and_counts:
        total += k * (x + y) * ULP / 2 + 2 * ULP + k * x * y * 2.0**-23
    return total


def decoded(shared):
    return shared.get().float_precision()


def holders_of(workers, count):
    return [workers["bob"], workers["alice"], workers["bill"]][:count]


# ---------------------------------------------------------------- fixed point


def test_fix_precision_round_trips_within_half_an_ulp_and_refuses_values_out_of_range():
    x = torch.tensor([0.1, -2.5, 3.14159, 0.0, -1e-6, 12345.678])
    fixed = x.fix_precision()
    assert fixed.child.dtype == torch.int64 and fixed.precision_fractional == 16
    assert torch.equal(fixed.child[:2], torch.tensor([round(0.1 * 2**16), -(5 << 15)]))
    assert (fixed.float_precision() - x).abs().max() <= ULP / 2 + 1e-3 * 2.0**-10
    assert fixed.float_prec().dtype == torch.float32
    assert torch.tensor([1, -3]).fix_prec().float_prec().tolist() == [1.0, -3.0]
    eight = x.fix_precision(precision_fractional=8)
    assert (eight.float_precision() - x).abs().max() <= 2.0**-9 + 1e-3

    with pytest.raises(sy.UsageError, match=r"out of the fixed-point range: \|x\| < 2\^46"):
        torch.tensor([1.0, 2.0**46]).fix_precision()
    with pytest.raises(sy.UsageError, match="out of the fixed-point range"):
        torch.tensor([2**50]).fix_precision()
    with pytest.raises(sy.UsageError, match="inf or nan"):
        torch.tensor([float("nan")]).fix_precision()
    with pytest.raises(sy.UsageError, match="precision_fractional=40 is out of range"):
        x.fix_precision(precision_fractional=40)
    with pytest.raises(sy.UsageError, match="binary"):
        x.fix_precision(base=10)
    with pytest.raises(sy.UsageError, match="already"):
        fixed.fix_precision()


def test_local_fixed_point_arithmetic_matches_float_within_the_bound():
    x, y = torch.tensor([[1.5, -2.25], [0.3, 4.0]]), torch.tensor([[0.5, 1.0], [-1.0, 0.125]])
    fx, fy = x.fix_precision(), y.fix_precision()
    assert torch.allclose((fx + fy).float_precision(), x + y, atol=ULP)
    assert torch.allclose((fx - fy).float_precision(), x - y, atol=ULP)
    assert torch.allclose((fx * fy).float_precision(), x * y, atol=bound((4, 1, 1)))
    assert torch.allclose(fx.mm(fy).float_precision(), x @ y, atol=bound((4, 1, 2)))
    assert torch.allclose((fx / 2).float_precision(), x / 2, atol=ULP)
    assert torch.allclose(fx.sum().float_precision(), x.sum(), atol=2 * ULP)


# ---------------------------------------------------------------- sharing


def test_shares_live_on_their_workers_and_get_reconstructs_and_deletes_them(workers):
    bob, alice, carol = workers["bob"], workers["alice"], workers["carol"]
    x = torch.tensor([0.5, -1.25, 3.0])
    shared = x.fix_precision().share(bob, alice, crypto_provider=carol)
    assert shared.locations == [bob, alice] and shared.shape == torch.Size([3])
    assert [p.location for p in shared.child.values()] == [bob, alice]
    bobs = list(bob._objects.values())
    alices = list(alice._objects.values())
    assert len(bobs) == 1 and len(alices) == 1 and carol._objects == {}
    assert bobs[0].dtype == torch.int64
    assert not torch.equal(bobs[0], x.fix_precision().child)  # a share, not the secret
    assert torch.equal(bobs[0] + alices[0], x.fix_precision().child)  # they add up (mod 2^64)

    # results hold shares of their own: reconstructing one leaves its inputs' shares in place
    for result in (shared + 1, shared - torch.ones(3), shared / 1, shared * 2, shared.sum()):
        result.get()
    assert len(bob._objects) == 1 and len(alice._objects) == 1

    back = shared.get()
    assert isinstance(back, sy.FixedPrecisionTensor)
    assert torch.allclose(back.float_precision(), x, atol=ULP)
    assert bob._objects == {} and alice._objects == {}  # the shares are gone
    with pytest.raises(sy.UsageError, match="shares are gone"):
        shared.get()
    assert "reconstructed" in repr(shared)


def test_shares_come_from_the_operating_system_not_torch_generator(workers):
    bob, alice = workers["bob"], workers["alice"]
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        np.random.seed(0)
        shared = torch.tensor([7, 7, 7]).share(bob, alice)
        draws.append(shared.child["bob"].get())
    assert not torch.equal(draws[0], draws[1])


@pytest.mark.parametrize("count", [2, 3])
def test_integer_sharing_is_exact(workers, count):
    holders = holders_of(workers, count)
    provider = workers["carol"]
    a = torch.tensor([[3, -7], [2**40, 5]])
    b = torch.tensor([[-2, 4], [1, 9]])
    x = a.share(*holders, crypto_provider=provider)
    y = b.share(*holders, crypto_provider=provider)
    assert torch.equal((x + y).get(), a + b)
    assert torch.equal((x - y).get(), a - b)
    assert torch.equal((x * y).get(), a * b)
    assert torch.equal(x.mm(y).get(), a @ b)
    assert torch.equal((x * 3 + 10 - b).get(), a * 3 + 10 - b)
    assert torch.equal(x.sum().get(), a.sum())
    assert torch.equal(x.sum(0).get(), a.sum(0))
    quotient = (x / 4).get() - torch.div(a, 4, rounding_mode="floor")
    assert ((quotient == 0) | (quotient == 1)).all()  # floor, or one more
    if count == 2:
        quotient = (x / 3).get() - torch.div(a, 3, rounding_mode="floor")
        assert ((quotient == 0) | (quotient == 1)).all()
    else:
        with pytest.raises(sy.UsageError, match="fixed precision unless the divisor is a power"):
            x / 3


@pytest.mark.parametrize("count", [2, 3])
def test_fixed_point_arithmetic_on_shares_matches_plaintext_within_the_bound(workers, count):
    holders = holders_of(workers, count)
    provider = workers["carol"]
    generator = torch.Generator().manual_seed(count)
    a = torch.randn(5, 4, generator=generator) * 3
    b = torch.randn(4, 6, generator=generator) * 3
    c = torch.randn(5, 4, generator=generator)
    ma, mb, mc = (float(t.abs().max()) for t in (a, b, c))

    def shared(t):
        return t.fix_precision().share(*holders, crypto_provider=provider)

    x, y, z = shared(a), shared(b), shared(c)
    assert (decoded(x + z) - (a + c)).abs().max() <= ULP
    assert (decoded(x - z) - (a - c)).abs().max() <= ULP
    assert (decoded(-x) - (-a)).abs().max() <= ULP / 2
    assert (decoded(x * z) - a * c).abs().max() <= bound((ma, mc, 1))
    assert (decoded(x.mm(y)) - a @ b).abs().max() <= bound((ma, mb, 4))
    assert (decoded(x @ y) - a @ b).abs().max() <= bound((ma, mb, 4))
    assert (decoded(x.sum()) - a.sum()).abs().max() <= 20 * ULP / 2 + 1e-5
    assert (decoded(x.sum(1)) - a.sum(1)).abs().max() <= 4 * ULP / 2 + 1e-5
    # with public values: an int, a float, a tensor
    assert (decoded(x + 2) - (a + 2)).abs().max() <= ULP / 2
    assert (decoded(1.5 - x) - (1.5 - a)).abs().max() <= ULP
    assert (decoded(x + c) - (a + c)).abs().max() <= ULP
    assert (decoded(x * 3) - a * 3).abs().max() <= 3 * ULP / 2 + 1e-5
    assert (decoded(x * 0.75) - a * 0.75).abs().max() <= bound((ma, 0.75, 1))
    assert (decoded(x * c) - a * c).abs().max() <= bound((ma, mc, 1))
    assert (decoded(x.mm(b)) - a @ b).abs().max() <= bound((ma, mb, 4))
    assert (decoded(c.t() @ x) - c.t() @ a).abs().max() <= bound((mc, ma, 5))
    assert (decoded(x / 2) - a / 2).abs().max() <= ULP
    assert (decoded(x / 3) - a / 3).abs().max() <= bound((ma, 1 / 3, 1))
    # a public fixed-point tensor on either side; a public operand that broadcasts the shape
    two = torch.tensor([2.0]).fix_precision()
    assert (decoded(two * x) - 2 * a).abs().max() <= 2 * ULP
    assert (decoded(x + two) - (a + 2)).abs().max() <= ULP
    wide = x + torch.ones(2, 5, 4)
    assert wide.shape == torch.Size([2, 5, 4])
    assert (decoded(wide.view(10, 4)) - (a + 1).expand(2, 5, 4).reshape(10, 4)).abs().max() <= ULP
    # a chain: (x * z + 1) @ y / 4
    expected = (a * c + 1) @ b / 4
    error = bound((ma, mc, 1)) * 4 * mb + bound((ma * mc + 1, mb, 4)) + ULP
    assert (decoded((x * z + 1).mm(y) / 4) - expected).abs().max() <= error


def test_truncation_among_three_holders_is_exact_to_one_ulp_over_the_whole_range(workers):
    holders = holders_of(workers, 3)
    provider = workers["carol"]
    # products up to 2^28 (|z| < 2^60 encoded), both signs, and tiny ones
    a = torch.tensor([2.0**14, -(2.0**14), 3.0, -0.001, 1e-4, 1234.5, -4321.0], dtype=torch.float64)
    b = torch.tensor(
        [2.0**14 - 1, 2.0**14 - 1, -7.5, 0.002, 1e-4, -0.5, 2.0**10], dtype=torch.float64
    )
    for _ in range(5):  # fresh masks each time
        x = a.fix_precision().share(*holders, crypto_provider=provider)
        y = b.fix_precision().share(*holders, crypto_provider=provider)
        product = (x * y).get().child
        exact = torch.div(
            a.fix_precision().child * b.fix_precision().child, 2**16, rounding_mode="floor"
        )
        assert ((product - exact) >= 0).all() and ((product - exact) <= 1).all()


def test_powers_reshaping_and_torch_functions_on_shares(workers):
    holders = holders_of(workers, 3)
    provider = workers["carol"]
    a = torch.tensor([[0.5, -1.5, 2.0], [1.25, -0.75, 3.0]])
    x = a.fix_precision().share(*holders, crypto_provider=provider)
    assert (decoded(x**2) - a**2).abs().max() <= bound((3, 3, 1))
    assert (decoded(x**3) - a**3).abs().max() <= 3 * 9 * bound((3, 3, 1))
    assert (decoded(x**1) - a).abs().max() <= ULP / 2
    assert torch.allclose(decoded(x.view(3, 2)), a.view(3, 2), atol=ULP)
    assert torch.allclose(decoded(x.t()), a.t(), atol=ULP)
    assert torch.allclose(decoded(x.reshape(-1)), a.reshape(-1), atol=ULP)
    assert torch.allclose(decoded(x.flatten()), a.flatten(), atol=ULP)
    assert torch.allclose(decoded(x[1]), a[1], atol=ULP)
    assert torch.allclose(decoded(x[:, 1:]), a[:, 1:], atol=ULP)
    assert torch.allclose(decoded(x.unsqueeze(0).squeeze(0)), a, atol=ULP)
    assert torch.allclose(decoded(x.transpose(0, 1).permute(1, 0)), a, atol=ULP)
    assert x.view(3, 2).shape == torch.Size([3, 2])
    # torch's own functions and a tensor on the left
    w, b = torch.randn(4, 3), torch.randn(4)
    assert (decoded(F.linear(x, w, b)) - F.linear(a, w, b)).abs().max() <= bound((3, 3, 3)) + ULP
    assert torch.allclose(decoded(torch.ones(3) + x), 1 + a, atol=ULP)
    assert torch.allclose(decoded(torch.ones(3) - x), 1 - a, atol=ULP)
    assert torch.allclose(decoded(torch.full((3,), 2.0) * x), 2 * a, atol=2 * ULP)
    assert torch.allclose(decoded(torch.add(x, x)), 2 * a, atol=ULP)
    assert torch.allclose(decoded(torch.sum(x)), a.sum(), atol=6 * ULP)
    assert torch.equal(decoded(F.relu(x)), F.relu(a))  # comparisons: test_smpc_compare.py
    with pytest.raises(sy.UsageError, match="exp is not defined on shared tensors"):
        torch.exp(x)
    with pytest.raises(sy.UsageError, match="power >= 1"):
        x**0.5


def test_a_tensor_shared_in_part_10s_way_averages_two_workers_parameters(workers):
    bob, alice, james = workers["bob"], workers["alice"], workers["carol"]
    models = [nn.Linear(3, 2), nn.Linear(3, 2)]
    for model, worker in zip(models, (bob, alice), strict=True):
        model.send(worker)
    params = [list(m.parameters()) for m in models]
    new_params = []
    for param_i in range(len(params[0])):
        spdz_params = []
        for remote_index in range(2):
            spdz_params.append(
                params[remote_index][param_i]
                .copy()
                .get()
                .fix_precision()
                .share(bob, alice, crypto_provider=james)
            )
        new_param = (spdz_params[0] + spdz_params[1]).get().float_precision() / 2
        new_params.append(new_param)
    for model in models:
        model.get()
    for i, (p, q) in enumerate(zip(models[0].parameters(), models[1].parameters(), strict=True)):
        assert torch.allclose(new_params[i], (p.detach() + q.detach()) / 2, atol=ULP)


# ---------------------------------------------------------------- the shares look uniform

CHI_SQUARE_LIMIT = 600.0  # 255 degrees of freedom: mean 255, sd 22.6; 600 is 15 sd out


def byte_counts(tensor: torch.Tensor) -> Counter:
    return Counter(tensor.numpy().astype("<i8").tobytes())


def chi_square_uniform(counts: Counter) -> float:
    total = sum(counts.values())
    expected = total / 256
    return sum((counts.get(v, 0) - expected) ** 2 / expected for v in range(256))


def chi_square_same(first: Counter, second: Counter) -> float:
    """Two histograms drawn from one distribution? (homogeneity, 255 degrees of freedom)"""
    n1, n2 = sum(first.values()), sum(second.values())
    statistic = 0.0
    for v in range(256):
        o1, o2 = first.get(v, 0), second.get(v, 0)
        e1, e2 = (o1 + o2) * n1 / (n1 + n2), (o1 + o2) * n2 / (n1 + n2)
        statistic += (o1 - e1) ** 2 / e1 + (o2 - e2) ** 2 / e2
    return statistic


@pytest.mark.parametrize("count", [2, 3])
def test_each_share_alone_is_uniform_and_independent_of_the_secret(workers, count):
    holders = holders_of(workers, count)
    n = 20_000  # 160,000 bytes per share
    zeros = torch.zeros(n).fix_precision().share(*holders)
    large = torch.full((n,), 2.0**45).fix_precision().share(*holders)
    for zero_share, large_share in zip(zeros.shares, large.shares, strict=True):
        z, big = zero_share.get(), large_share.get()
        z_counts, big_counts = byte_counts(z), byte_counts(big)
        assert chi_square_uniform(z_counts) < CHI_SQUARE_LIMIT
        assert chi_square_uniform(big_counts) < CHI_SQUARE_LIMIT
        assert chi_square_same(z_counts, big_counts) < CHI_SQUARE_LIMIT
        # and the top bit (the sign) is a fair coin in both: the secret's sign does not show
        for share in (z, big):
            negatives = int((share < 0).sum())
            assert abs(negatives - n / 2) < 8 * math.sqrt(n / 4)


def test_the_provider_deals_seeds_and_one_correction_whose_shares_make_a_triple():
    for parties in (2, 3, 5):
        x_shape, y_shape = torch.Size([3, 4]), torch.Size([4, 2])
        dealings = dealer.deal_triple(parties, x_shape, y_shape, torch.matmul)
        assert all(len(d.seed) == 32 for d in dealings)
        assert [list(d.corrections) for d in dealings[:-1]] == [[]] * (parties - 1)
        assert [t.shape for t in dealings[-1].corrections.values()] == [torch.Size([3, 2])]
        triples = [dealer.triple_of(d, x_shape, y_shape, torch.Size([3, 2])) for d in dealings]
        a = sum(t.a for t in triples)
        b = sum(t.b for t in triples)
        c = sum(t.c for t in triples)
        assert torch.equal(a @ b, c)
        assert len({bytes(d.seed) for d in dealings}) == parties


# ---------------------------------------------------------------- refused clearly


def test_refusals_name_the_mistake_and_the_fix(workers, hook):
    bob, alice, bill, carol = (workers[n] for n in ("bob", "alice", "bill", "carol"))
    x = torch.tensor([1.0, 2.0]).fix_precision()
    with pytest.raises(sy.UsageError, match="crypto provider 'bob' is also a share holder"):
        x.share(bob, alice, crypto_provider=bob)
    with pytest.raises(sy.UsageError, match="crypto_provider must be a worker"):
        x.share(bob, alice, crypto_provider=hook)
    with pytest.raises(sy.UsageError, match="crypto_provider must be a worker"):
        x.share(bob, alice, crypto_provider="me")
    with pytest.raises(sy.UsageError, match="2 or more workers"):
        x.share(bob)
    with pytest.raises(sy.UsageError, match="distinct"):
        x.share(bob, bob)
    with pytest.raises(sy.UsageError, match=r"holders must be sy\.VirtualWorker"):
        x.share(bob, "alice")
    with pytest.raises(sy.UsageError, match=r"x\.fix_precision\(\)\.share"):
        torch.tensor([1.5]).share(bob, alice)
    with pytest.raises(sy.UsageError, match="gradients need fixed precision"):
        torch.tensor([1, 2]).share(bob, alice, crypto_provider=carol, requires_grad=True)

    no_provider = x.share(bob, alice)
    with pytest.raises(sy.UsageError, match=r"shared \* shared needs a crypto provider"):
        no_provider * no_provider
    with pytest.raises(sy.UsageError, match="shared @ shared needs a crypto provider"):
        torch.ones(2, 2).fix_precision().share(bob, alice).mm(
            torch.ones(2, 2).fix_precision().share(bob, alice)
        )
    three = x.share(bob, alice, bill)
    with pytest.raises(sy.UsageError, match="among 3 holders needs a crypto provider"):
        three * 0.5

    on_bob_alice = x.share(bob, alice, crypto_provider=carol)
    on_bob_bill = x.share(bob, bill, crypto_provider=carol)
    with pytest.raises(sy.UsageError, match="shared among different workers"):
        on_bob_alice + on_bob_bill
    with pytest.raises(sy.UsageError, match="shared among different workers"):
        on_bob_alice * on_bob_bill
    coarse = torch.tensor([1.0, 2.0]).fix_precision(precision_fractional=8)
    with pytest.raises(sy.UsageError, match="precision mismatch"):
        on_bob_alice + coarse.share(bob, alice, crypto_provider=carol)
    with pytest.raises(sy.UsageError, match="precision mismatch"):
        on_bob_alice + torch.tensor([1, 2]).share(bob, alice, crypto_provider=carol)
    with pytest.raises(sy.UsageError, match="precision mismatch"):
        on_bob_alice * coarse
    with pytest.raises(sy.UsageError, match="a float cannot meet an integer sharing"):
        torch.tensor([1]).share(bob, alice) + 0.5
    with pytest.raises(sy.UsageError, match="share it among the same workers"):
        on_bob_alice + torch.tensor([1.0, 1.0]).send(bob)

    for compare in (
        lambda: no_provider > no_provider,
        lambda: no_provider <= 1,
        lambda: no_provider == no_provider,
        lambda: no_provider.max(),
        lambda: no_provider.relu(),
    ):
        with pytest.raises(sy.UsageError, match="comparisons on shared values need a crypto"):
            compare()
    with pytest.raises(sy.UsageError, match="secret"):
        bool(on_bob_alice)
    with pytest.raises(sy.UsageError, match="public positive int"):
        on_bob_alice / on_bob_alice
    with pytest.raises(sy.UsageError, match="public positive int"):
        on_bob_alice / 0
    with pytest.raises(sy.UsageError, match=r"x.get\(\).float_precision\(\)"):
        on_bob_alice.float_precision()
    with pytest.raises(sy.UsageError, match="shared already"):
        on_bob_alice.share(bob, alice)


# ---------------------------------------------------------------- PySyft 0.2, Part 9


def test_pysyft_part_9_encrypted_programs_run_as_written(hook):
    bob = sy.VirtualWorker(hook, id="bob")
    alice = sy.VirtualWorker(hook, id="alice")
    bill = sy.VirtualWorker(hook, id="bill")
    crypto_provider = sy.VirtualWorker(hook, id="crypto_provider")
    try:
        assert bob._objects == {}
        x = torch.tensor([25]).share(bob, alice, bill)
        bobs_share = list(bob._objects.values())[0]  # noqa: RUF015 (as written)
        alices_share = list(alice._objects.values())[0]  # noqa: RUF015 (as written)
        bills_share = list(bill._objects.values())[0]  # noqa: RUF015 (as written)
        assert torch.equal(bobs_share + alices_share + bills_share, torch.tensor([25]))
        assert torch.equal(x.get(), torch.tensor([25]))

        x = torch.tensor([25]).share(bob, alice)
        y = torch.tensor([5]).share(bob, alice)
        z = x + y
        assert torch.equal(z.get(), torch.tensor([30]))
        z = x - y
        assert torch.equal(z.get(), torch.tensor([20]))

        x = torch.tensor([25]).share(bob, alice, crypto_provider=crypto_provider)
        y = torch.tensor([5]).share(bob, alice, crypto_provider=crypto_provider)
        z = x * y
        assert torch.equal(z.get(), torch.tensor([125]))

        x = torch.tensor([[1, 2], [3, 4]]).share(bob, alice, crypto_provider=crypto_provider)
        y = torch.tensor([[2, 0], [0, 2]]).share(bob, alice, crypto_provider=crypto_provider)
        z = x.mm(y)
        assert torch.equal(z.get(), torch.tensor([[2, 4], [6, 8]]))

        # the fixed-point section
        x = torch.tensor([0.1, 0.2, 0.3]).fix_prec().share(bob, alice)
        y = x + x
        y = y.get().float_prec()
        assert torch.allclose(y, torch.tensor([0.2, 0.4, 0.6]), atol=ULP)

        # comparisons (SecureNN in PySyft; compare.py here)
        x = torch.tensor([25]).share(bob, alice, crypto_provider=crypto_provider)
        y = torch.tensor([5]).share(bob, alice, crypto_provider=crypto_provider)
        z = x > y
        assert torch.equal(z.get(), torch.tensor([1]))
    finally:
        for worker in (bob, alice, bill, crypto_provider):
            worker.close()


# ---------------------------------------------------------------- encrypted inference (MLaaS)


def digits_split():
    """scikit-learn's digits (bundled, no download), pixels scaled to [0, 1]: 1,400 rows to
    train on, 397 held out."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target)
    return (features[:1400], labels[:1400]), (features[1400:], labels[1400:])


def trained(model, rows, labels, *, steps=300, lr=0.05):
    """Full-batch Adam, on one thread (on a shared machine torch's pool oversubscribes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(rows), labels).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model


def test_encrypted_inference_of_a_linear_model_matches_plaintext_on_held_out_digits(hook):
    (train_rows, train_labels), (test_rows, truth) = digits_split()
    torch.manual_seed(0)
    linear = trained(nn.Linear(64, 10), train_rows, train_labels)
    weight = linear.weight.detach().t().contiguous()  # 64 x 10
    bias = linear.bias.detach()

    model_owner = sy.VirtualWorker(hook, id="model_owner")
    data_owner = sy.VirtualWorker(hook, id="data_owner")
    crypto_provider = sy.VirtualWorker(hook, id="crypto_provider")
    try:
        holders = (model_owner, data_owner)
        # the model owner shares its model, the data owner its rows: neither sees the other's
        shared_weight = weight.fix_precision().share(*holders, crypto_provider=crypto_provider)
        shared_bias = bias.fix_precision().share(*holders, crypto_provider=crypto_provider)
        shared_rows = test_rows.fix_precision().share(*holders, crypto_provider=crypto_provider)
        logits = (shared_rows.mm(shared_weight) + shared_bias).get().float_precision()
    finally:
        for worker in (model_owner, data_owner, crypto_provider):
            worker.close()

    plain = test_rows @ weight + bias
    rows = plain.shape[0]
    error = bound((1.0, float(weight.abs().max()), 64)) + ULP
    assert (logits - plain).abs().max() <= error
    plain_accuracy = float((plain.argmax(1) == truth).float().mean())
    shared_accuracy = float((logits.argmax(1) == truth).float().mean())
    assert plain_accuracy > 0.9 and rows == 397
    assert abs(shared_accuracy - plain_accuracy) <= 1e-3


class SquareNet(nn.Module):
    """A small MLP for encrypted inference: a square activation needs no comparison."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.fc1(x)
        x = x * x
        return self.fc2(x)


def test_encrypted_inference_of_a_shared_mlp_with_square_activation_on_digits(hook):
    (train_rows, train_labels), (test_rows, truth) = digits_split()
    torch.manual_seed(0)
    model = trained(SquareNet(), train_rows, train_labels, lr=0.01)
    with torch.no_grad():
        plain = model(test_rows)

    model_owner = sy.VirtualWorker(hook, id="model_owner")
    data_owner = sy.VirtualWorker(hook, id="data_owner")
    crypto_provider = sy.VirtualWorker(hook, id="crypto_provider")
    try:
        model.fix_precision().share(model_owner, data_owner, crypto_provider=crypto_provider)
        assert list(model.parameters()) == []
        assert isinstance(model.fc1.weight, sy.SharedTensor)
        rows = test_rows.fix_precision().share(
            model_owner, data_owner, crypto_provider=crypto_provider
        )
        logits = model(rows).get().float_precision()
    finally:
        for worker in (model_owner, data_owner, crypto_provider):
            worker.close()

    plain_accuracy = float((plain.argmax(1) == truth).float().mean())
    shared_accuracy = float((logits.argmax(1) == truth).float().mean())
    assert plain_accuracy > 0.9
    assert abs(shared_accuracy - plain_accuracy) <= 1e-3
    assert (logits - plain).abs().max() < 0.05  # 32 squared hidden units, each within ~1e-3


def test_a_model_must_be_fixed_before_it_is_shared_and_layers_with_buffers_are_refused(workers):
    bob, alice, carol = workers["bob"], workers["alice"], workers["carol"]
    with pytest.raises(sy.UsageError, match="fix the model first"):
        nn.Linear(2, 2).share(bob, alice, crypto_provider=carol)
    with pytest.raises(sy.UsageError, match="has buffers"):
        nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).fix_precision()
    relu_net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with torch.no_grad():
        expected = relu_net(torch.ones(1, 2))
    relu_net.fix_precision().share(bob, alice, crypto_provider=carol)
    x = torch.ones(1, 2).fix_precision().share(bob, alice, crypto_provider=carol)
    assert (decoded(relu_net(x)) - expected).abs().max() <= bound((1, 1, 2)) + ULP
    with pytest.raises(sy.UsageError, match="shared already"):
        relu_net.share(bob, alice, crypto_provider=carol)


def test_the_readme_example_runs_as_written_and_prints_what_it_says():
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Secret-shared tensors\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    lines, expected = [], []
    for line in code.splitlines():  # a line whose comment shows a value prints it
        expression, _, comment = line.partition("# tensor(")
        if comment:
            lines.append(f"print({expression.strip()})")
            expected.append("tensor(" + comment.strip())
        else:
            lines.append(line)
    run = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == expected
