"""Training on secret-shared tensors (duet/smpc/autograd.py, gradients.py, optimizer.py):
PySyft 0.2's Part 12, "Train an Encrypted Neural Network on Encrypted Data", as written, and
``backward()`` on shares against torch's autograd.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.optim as optim
from torch import nn
from torch.nn import functional as F

import duet as sy
from duet.smpc.optimizer import SharedParameter


@pytest.fixture
def workers():
    hook = sy.TorchHook(torch)
    made = {name: sy.VirtualWorker(hook, id=name) for name in ("bob", "alice", "bill", "james")}
    yield made
    for worker in made.values():
        worker.close()


def holders_of(workers, count):
    return [workers["bob"], workers["alice"], workers["bill"]][:count]


class Net(nn.Module):
    """Part 12's toy model, with the deterministic weights its last cell gives for comparing
    with plaintext training."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 2)
        self.fc2 = nn.Linear(2, 1)
        with torch.no_grad():
            self.fc1.weight.set_(torch.tensor([[0.0738, -0.2109], [-0.1579, 0.3174]]))
            self.fc1.bias.set_(torch.tensor([0.0, 0.1]))
            self.fc2.weight.set_(torch.tensor([[-0.5368, 0.7050]]))
            self.fc2.bias.set_(torch.tensor([-0.0343]))

    def forward(self, x):
        x = self.fc1(x)
        x = F.relu(x)
        x = self.fc2(x)
        return x


def plaintext_losses(epochs: int) -> list[float]:
    data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    target = torch.tensor([[0], [0], [1], [1.0]])
    model = Net()
    opt = optim.SGD(params=model.parameters(), lr=0.1)
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = ((model(data) - target) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("count", [2, 3])
def test_pysyft_part_12_trains_an_encrypted_network_on_encrypted_data_as_written(workers, count):
    holders = holders_of(workers, count)
    james = workers["james"]
    # the notebook's cells, with its workers
    data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    target = torch.tensor([[0], [0], [1], [1.0]])
    model = Net()

    data = data.fix_precision().share(*holders, crypto_provider=james, requires_grad=True)
    target = target.fix_precision().share(*holders, crypto_provider=james, requires_grad=True)
    model = model.fix_precision().share(*holders, crypto_provider=james, requires_grad=True)
    assert "requires_grad" in repr(data)

    opt = optim.SGD(params=model.parameters(), lr=0.1).fix_precision()

    losses = []
    for _ in range(20):
        # 1) erase previous gradients (if they exist)
        opt.zero_grad()
        # 2) make a prediction
        pred = model(data)
        # 3) calculate how much we missed
        loss = ((pred - target) ** 2).sum()
        # 4) figure out which weights caused us to miss
        loss.backward()
        # 5) change those weights
        opt.step()
        # 6) print our progress
        losses.append(loss.get().float_precision())

    assert all(loss.shape == torch.Size([]) for loss in losses)
    shared = [float(loss) for loss in losses]
    plain = plaintext_losses(20)
    assert shared[-1] < shared[0] / 20  # the loss goes down: 1.95 -> 0.004
    assert all(later < earlier for earlier, later in itertools.pairwise(shared[:11]))
    # the same training in plaintext from the same weights: 16 fractional bits, each epoch's
    # loss within 1e-3 (measured: within 1e-4)
    assert max(abs(s - p) for s, p in zip(shared, plain, strict=True)) < 1e-3
    # the weights are still leaves on shares, and the model lists them for the optimiser
    assert all(isinstance(p, SharedParameter) for p in model.parameters())
    assert [tuple(p.shape) for p in model.parameters()] == [(2, 2), (2,), (1, 2), (1,)]
    assert model.fc1.weight.is_leaf and model.fc1.weight.grad is not None
    opt.zero_grad()
    assert model.fc1.weight.grad is None


@pytest.mark.parametrize("count", [2, 3])
def test_gradients_on_shares_equal_torch_autograd(workers, count):
    holders = holders_of(workers, count)
    provider = workers["james"]
    generator = torch.Generator().manual_seed(count)
    a = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    w = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    b = torch.randn(4, generator=generator, dtype=torch.float64)
    scale = torch.randn(5, 4, generator=generator, dtype=torch.float64)

    def computation(x, weight, bias):
        hidden = F.relu(F.linear(x, weight, bias))  # t(), @, a broadcast +
        mixed = hidden * scale - 0.5 * hidden / 2  # public tensor and float, / int
        squared = (mixed.t() @ x) ** 2  # a matmul of two tracked values, a power
        return squared.sum(0).sum() + (weight * weight).sum() - x.sum(1).sum()

    leaves = [t.clone().requires_grad_(True) for t in (a, w, b)]
    computation(*leaves).backward()
    expected = [t.grad for t in leaves]

    shared = [
        t.fix_precision().share(*holders, crypto_provider=provider, requires_grad=True)
        for t in (a, w, b)
    ]
    loss = computation(*shared)
    loss.backward()
    for name, tensor, grad in zip(("x", "weight", "bias"), shared, expected, strict=True):
        got = tensor.grad.get().float_precision()
        assert got.shape == grad.shape
        # fixed point's rounding through two products and a square, relative to the largest
        # gradient (about 50 here): measured within 3e-5 of it, held to 2e-4
        assert (got - grad).abs().max() < 2e-4 * max(1.0, float(grad.abs().max())), name
    # gradients accumulate across backward() calls, as torch's do
    weight = shared[1]
    first = torch.randn(3, generator=generator, dtype=torch.float64)
    weight.grad = None
    for _ in range(2):
        (weight.sum(0) * first).sum().backward()
    assert torch.allclose(weight.grad.get().float_precision(), 2 * first.expand(4, 3), atol=1e-3)


def test_training_on_shares_refuses_what_it_cannot_differentiate_or_optimise(workers):
    bob, alice, james = workers["bob"], workers["alice"], workers["james"]
    x = (
        torch.ones(2, 2)
        .fix_precision()
        .share(bob, alice, crypto_provider=james, requires_grad=True)
    )
    with pytest.raises(sy.UsageError, match="needs a single value"):
        (x * 2).backward()
    plain = torch.ones(2).fix_precision().share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.UsageError, match="does not require grad"):
        plain.sum().backward()
    with pytest.raises(sy.UsageError, match=r"indexing \(x\[...\]\) on a shared tensor that"):
        x[0]
    with pytest.raises(sy.UsageError, match=r"max\(\) on a shared tensor that requires grad"):
        x.max()
    with pytest.raises(sy.UsageError, match=r"abs\(\) on a shared tensor that requires grad"):
        x.abs()
    with pytest.raises(sy.UsageError, match="2-D matrices only"):
        torch.ones(2, 2, 2).fix_precision().share(
            bob, alice, crypto_provider=james, requires_grad=True
        ).matmul(torch.ones(2, 2))
    with pytest.raises(sy.UsageError, match="gradients need fixed precision"):
        torch.tensor([1, 2]).share(bob, alice, crypto_provider=james, requires_grad=True)
    with pytest.raises(sy.UsageError, match="in-place relu on a shared tensor that requires"):
        F.relu(x, inplace=True)
    # comparisons have no gradient (as in torch) and leave the graph alone
    assert not (x > 0).requires_grad

    model = (
        nn.Linear(2, 1).fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    )
    with pytest.raises(sy.UsageError, match=r"supports plain optim\.SGD"):
        optim.Adam(model.parameters(), lr=0.1).fix_precision()
    with pytest.raises(sy.UsageError, match="SGD with momentum on shares is not supported"):
        optim.SGD(model.parameters(), lr=0.1, momentum=0.9).fix_precision()
    with pytest.raises(sy.UsageError, match="takes a shared model's parameters"):
        optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1).fix_precision()
    with pytest.raises(sy.UsageError, match="shared already"):
        model.share(bob, alice, crypto_provider=james)
    # torch's own optimiser, not converted, fails clearly rather than doing nothing
    unconverted = optim.SGD(model.parameters(), lr=0.1)
    rows = torch.ones(3, 2).fix_precision().share(bob, alice, crypto_provider=james)
    model(rows).sum().backward()
    with pytest.raises(sy.UsageError, match=r"torch's own optimiser cannot update shared"):
        unconverted.step()
    assert model.weight.grad is not None
    model.zero_grad()  # torch's, through the SharedParameters
    assert model.weight.grad is None and model.bias.grad is None
    assert "SharedParameter(shape=(1, 2), shared among bob, alice)" in repr(
        list(model.parameters())
    )
