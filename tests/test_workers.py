"""PySyft 0.2's workers API: virtual workers, pointers that move, plain models sent with a local
optimizer, federated datasets and loaders, federated averaging."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import duet as sy


@pytest.fixture
def hook():
    return sy.TorchHook(torch)


@pytest.fixture
def bob(hook):
    worker = sy.VirtualWorker(hook, id="bob")
    yield worker
    worker.close()


@pytest.fixture
def alice(hook):
    worker = sy.VirtualWorker(hook, id="alice")
    yield worker
    worker.close()


class Net(nn.Module):
    """No randomness in forward: the same steps give the same weights here and there."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def make_data(n=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


# ---------------------------------------------------------------- pointers


def test_send_returns_a_pointer_with_its_location_and_get_moves_the_value_back(bob):
    dna = torch.tensor([0, 1, 2, 1, 2])
    ptr = dna.send(bob)
    assert isinstance(ptr, sy.Pointer)
    assert ptr.location is bob and ptr.id_at_location == ptr.id
    assert list(bob._objects) == [ptr.id_at_location]
    assert torch.equal(bob._objects[ptr.id], dna)
    assert torch.equal(ptr.get(), dna)
    assert bob._objects == {}  # moved back: the worker no longer holds it


def test_pointer_arithmetic_and_remote_autograd_on_a_worker(bob):
    a = torch.tensor([3.14, 6.28]).send(bob)
    b = torch.tensor([6.14, 3.28]).send(bob)
    c = a + b
    assert c.location is bob
    assert torch.allclose(c.get(), torch.tensor([9.28, 9.56]))
    train = torch.tensor([2.4, 6.2], requires_grad=True).send(bob)
    label = torch.tensor([2, 6.0]).send(bob)
    loss = (train - label).abs().sum()
    loss.backward()
    assert torch.equal(train.grad.get(), torch.tensor([1.0, 1.0]))
    assert torch.equal(train.get(), torch.tensor([2.4, 6.2]))


def test_get_after_a_remote_backward_brings_the_gradient_back_with_the_tensor(bob):
    x = torch.tensor([1.0, 2.0], requires_grad=True).send(bob)
    untouched = torch.tensor([4.0], requires_grad=True).send(bob)
    plain = torch.tensor([5.0]).send(bob)
    y = (x * torch.tensor([3.0, 4.0]).send(bob)).sum()
    y.backward()
    back = x.get()
    assert torch.equal(back, torch.tensor([1.0, 2.0])) and back.requires_grad and back.is_leaf
    assert torch.equal(back.grad, torch.tensor([3.0, 4.0]))  # as PySyft 0.2's x.get() had it
    assert x.id not in bob._objects  # moved back, gradient and all
    assert untouched.get().grad is None  # no backward reached it
    assert plain.get().grad is None
    # a local step with the gradient that came back
    with torch.no_grad():
        back -= 0.1 * back.grad
    assert torch.allclose(back, torch.tensor([0.7, 1.6]))


def test_a_models_get_brings_the_gradients_backward_gave_it(bob):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    unused = nn.Linear(2, 2)
    local = copy.deepcopy(model)
    data = torch.randn(4, 2)
    local(data).sum().backward()
    model.send(bob)
    unused.send(bob)
    model(data.send(bob)).sum().backward()
    model.get()
    unused.get()
    for sent, here in zip(model.parameters(), local.parameters(), strict=True):
        assert torch.allclose(sent.grad, here.grad)
    assert unused.weight.grad is None  # no backward reached it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.send(bob)
    optimizer.zero_grad()  # here, as torch does: the gradients are None
    model.get()
    assert all(p.grad is None for p in model.parameters())


def test_copy_stays_and_move_goes_to_the_other_worker(bob, alice):
    x = torch.arange(4.0).send(bob)
    duplicate = x.copy()
    assert duplicate.location is bob and duplicate.id != x.id
    moved = x.move(alice)
    assert moved.location is alice
    assert torch.equal(moved.get(), torch.arange(4.0))
    assert list(bob._objects) == [duplicate.id]
    assert torch.equal(duplicate.get(), torch.arange(4.0))


def test_values_on_two_workers_do_not_mix(bob, alice):
    model = Net().send(bob)
    x = torch.ones(2, 4).send(alice)
    with pytest.raises(sy.UsageError, match="values on different workers cannot be used together"):
        F.linear(x, model.fc1.weight)


def test_a_duets_pointers_keep_their_values_on_get(pair):
    _, scientist = pair
    x = torch.ones(2).send(scientist)
    x.get()
    assert torch.equal(x.get(), torch.ones(2))  # a duet's get copies; a worker's moves


# ---------------------------------------------------------------- models and local optimizers


@pytest.mark.parametrize(
    "options",
    [
        {"lr": 0.1},
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True},
        {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "maximize": True},
    ],
    ids=["sgd", "nesterov-decay", "momentum-maximize"],
)
def test_local_optimizer_made_before_send_steps_the_remote_model_as_local_training_does(
    bob, options
):
    torch.manual_seed(0)
    local = Net()
    remote = copy.deepcopy(local)
    local_opt = torch.optim.SGD(local.parameters(), **options)
    remote_opt = torch.optim.SGD(remote.parameters(), **options)
    x, y = make_data()
    x_ptr, y_ptr = x.send(bob), y.send(bob)
    parameters = list(remote.parameters())
    assert remote.send(bob) is remote
    assert [type(p).__name__ for p in remote.parameters()] == ["RemoteParameter"] * 4
    losses = []
    for _ in range(4):
        local_opt.zero_grad()
        local_loss = F.nll_loss(local(x), y)
        local_loss.backward()
        local_opt.step()
        remote_opt.zero_grad()
        loss = F.nll_loss(remote(x_ptr), y_ptr)
        loss.backward()
        remote_opt.step()
        losses.append(loss.get().item())
        assert losses[-1] == local_loss.item()
    assert remote.get() is remote
    assert [p for p in remote.parameters()] == parameters  # the same objects, here again
    assert all(type(p) is nn.Parameter for p in parameters)
    assert_same_weights(local, remote)
    if options.get("momentum"):  # the optimizer's state is on the worker it was made on
        assert all(isinstance(s["momentum_buffer"], sy.Pointer) for s in remote_opt.state.values())


def test_seed_001_loop_sends_and_gets_the_model_every_batch_like_local_training(hook):
    workers = [sy.VirtualWorker(hook, id=name) for name in ("grapevine", "westside")]
    try:
        x, y = make_data(n=40)
        federated = torch.utils.data.TensorDataset(x, y).federate(tuple(workers))
        loader = sy.FederatedDataLoader(federated, batch_size=8, shuffle=True)
        assert len(loader) == 6  # 20 each: 3 batches per worker
        torch.manual_seed(0)
        model = Net()
        local = copy.deepcopy(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        local_optimizer = torch.optim.SGD(local.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(7)
        loader.generator = generator
        seen = []
        for data, target in loader:
            seen.append(data.location.id)
            model = model.send(data.location)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
            model.get()
            # the same batch, here
            local_optimizer.zero_grad()
            F.nll_loss(local(data.copy().get()), target.copy().get()).backward()
            local_optimizer.step()
            assert loss.get().item() > 0
        assert seen == ["grapevine"] * 3 + ["westside"] * 3
        assert_same_weights(local, model)
        del data, target, loss
        for worker in workers:  # only the federated data is left
            assert len(worker._objects) == 2
    finally:
        for worker in workers:
            worker.close()


def test_a_model_sent_where_it_is_stays_and_sent_elsewhere_moves(bob, alice):
    model = Net()
    before = copy.deepcopy(model)
    model.send(bob)
    held = len(bob._objects)
    model.send(bob)
    assert len(bob._objects) == held  # no second copy
    model.send(alice)
    assert model.fc1.weight.location is alice
    assert bob._objects == {}
    model.get()
    assert_same_weights(before, model)


def test_layers_run_remotely_in_one_call_and_the_models_forward_here(bob):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model.send(bob)
    x = torch.ones(2, 4).send(bob)
    bob.client.flush()
    sent = bob.client.actions_sent
    out = model(x)
    bob.client.flush()
    assert isinstance(out, sy.Pointer)
    assert bob.client.actions_sent - sent == 1  # one call of the whole Sequential
    local = copy.deepcopy(model.get())
    assert torch.equal(out.get(), local(torch.ones(2, 4)))


def test_train_and_eval_reach_the_worker_and_buffers_come_back(bob):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 2))
    local = copy.deepcopy(model)
    x, _ = make_data()
    model.send(bob)
    model(x.send(bob))  # training mode: batch statistics, dropout
    local(x)
    model.eval()
    local.eval()
    out = model(x.send(bob))
    assert torch.equal(out.get(), local(x))  # eval mode: running statistics, no dropout
    model.get()
    assert torch.equal(model[1].running_mean, local[1].running_mean)
    assert model[1].num_batches_tracked.item() == 1


def test_gradients_are_none_where_local_torch_leaves_them_none(bob):
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.unused = nn.Linear(4, 2)

        def forward(self, x):
            return self.used(x)

    model = TwoHeads().send(bob)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1)
    unused_before = model.unused.weight.copy().get()
    assert model.used.weight.grad is None
    model(torch.ones(1, 4).send(bob)).sum().backward()
    grad = model.used.weight.grad
    assert isinstance(grad, torch.Tensor) and grad.shape == (2, 4) and not grad.is_sparse
    assert model.unused.weight.grad is None
    optimizer.step()  # weight decay would change the unused layer if it were stepped
    assert torch.equal(model.unused.weight.copy().get(), unused_before)
    optimizer.zero_grad()
    assert model.used.weight.grad is None
    with torch.no_grad():
        model(torch.ones(1, 4).send(bob))
    assert model.used.weight.grad is None  # no_grad uses give no gradient
    state = model.state_dict()  # detached pointers: autograd records nothing
    assert isinstance(state["used.weight"], sy.Pointer)
    assert model.used.weight.grad is None
    model.get()
    assert model.used.weight.grad is None


def test_parameter_metadata_is_answered_here_and_values_need_a_get(bob):
    model = Net().send(bob)
    weight = model.fc1.weight
    assert weight.shape == (8, 4) and weight.dtype == torch.float32 and weight.requires_grad
    assert weight.is_leaf and weight.location is bob and weight.id_at_location
    assert "on bob" in repr(weight)
    with pytest.raises(sy.UsageError, match=r"model\.get"):
        bool(weight)
    with pytest.raises(sy.UsageError, match=r"model\.get"):
        copy.deepcopy(model)
    with pytest.raises(sy.NotAllowed):
        torch.fft.fft(weight)


def test_set_and_copy_of_remote_parameters_as_in_seed_004(bob):
    local_model = Net()
    remote_model = Net().send(bob)
    with torch.no_grad():
        for new, remote in zip(local_model.parameters(), remote_model.parameters(), strict=True):
            remote.set_(new.send(remote.location))
        averaged = [remote.copy().get() for remote in remote_model.parameters()]
    for new, value in zip(local_model.parameters(), averaged, strict=True):
        assert torch.equal(new, value)
    remote_model.get()
    assert_same_weights(local_model, remote_model)


def test_sy_module_goes_to_a_worker_the_same_way(bob):
    class SyNet(sy.Module):
        def __init__(self, torch_ref):
            super().__init__(torch_ref=torch_ref)
            self.fc = self.torch_ref.nn.Linear(4, 2)

        def forward(self, x):
            return self.torch_ref.nn.functional.log_softmax(self.fc(x), dim=1)

    model = SyNet(torch)
    assert model.send(bob) is model
    out = model(torch.ones(1, 4).send(bob)).get()
    assert model.get() is model and torch.equal(out, model(torch.ones(1, 4)))


def test_models_with_tied_weights_are_refused(bob):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    with pytest.raises(sy.UsageError, match="tied weights"):
        model.send(bob)
    assert type(model[0].weight) is nn.Parameter


# ---------------------------------------------------------------- data spread over workers


def test_federate_splits_a_dataset_over_workers_and_the_loader_yields_located_batches(bob, alice):
    x, y = make_data(n=10)
    federated = torch.utils.data.TensorDataset(x, y).federate(bob, alice)
    assert isinstance(federated, sy.FederatedDataset)
    assert federated.workers == ["bob", "alice"] and len(federated) == 10
    assert len(federated["bob"]) == 5 and federated[alice].location is alice
    loader = sy.FederatedDataLoader(federated, batch_size=2)
    assert len(loader) == 6
    batches = [(d.location.id, d.get(), t.get()) for d, t in loader]
    assert [where for where, _, _ in batches] == ["bob"] * 3 + ["alice"] * 3
    assert torch.equal(torch.cat([d for _, d, _ in batches]), x)
    assert torch.equal(torch.cat([t for _, _, t in batches]), y)
    rounds = list(sy.FederatedDataLoader(federated, batch_size=2, drop_last=True,
                                         iter_per_worker=True))  # fmt: skip
    assert [sorted(r) for r in rounds] == [["alice", "bob"]] * 2


def test_torchvision_datasets_federate_with_their_transform(bob, alice):
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    fake = datasets.FakeData(size=6, image_size=(1, 4, 4), num_classes=3,
                             transform=transforms.ToTensor())  # fmt: skip
    federated = fake.federate((bob, alice))
    data, target = next(iter(sy.FederatedDataLoader(federated, batch_size=3)))
    assert torch.equal(data.get(), torch.stack([fake[i][0] for i in range(3)]))
    assert target.get().tolist() == [fake[i][1] for i in range(3)]


def test_federated_avg_averages_models_and_state_dicts(hook):
    a, b = Net(), Net()
    averaged = sy.utils.federated_avg({"a": a, "b": b})
    assert isinstance(averaged, Net) and averaged is not a
    for key, value in averaged.state_dict().items():
        assert torch.allclose(value, (a.state_dict()[key] + b.state_dict()[key]) / 2)
    weighted = sy.utils.federated_avg(
        {"a": a.state_dict(), "b": b.state_dict()}, weights={"a": 3, "b": 1}
    )
    assert torch.allclose(weighted["fc1.bias"], 0.75 * a.fc1.bias + 0.25 * b.fc1.bias)
    worker = sy.VirtualWorker(hook, id="carol")
    try:
        with pytest.raises(sy.UsageError, match=r"model\.get"):
            sy.utils.federated_avg({"a": a.send(worker), "b": b})
    finally:
        worker.close()


# ---------------------------------------------------------------- the owner keeps control


def test_data_the_owner_published_on_a_worker_keeps_its_requests(bob):
    x, y = make_data(n=8)
    x_ptr = bob.store[x.send(bob.owner, tags=["x"]).id]
    y_ptr = bob.store[y.send(bob.owner, tags=["y"]).id]
    assert x_ptr.location is bob
    with pytest.raises(sy.PermissionDenied):
        (x_ptr * 2).get()
    model = Net().send(bob)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.nll_loss(model(x_ptr), y_ptr)
    loss.backward()
    optimizer.step()
    with pytest.raises(sy.PermissionDenied):
        loss.get()
    with pytest.raises(sy.PermissionDenied):
        model.get()  # weights trained on the owner's data: a request
    assert model.fc1.weight.location is bob  # still there
    with pytest.raises(sy.PermissionDenied):
        model.fc1.weight.copy().get()
    bob.owner.requests.add_handler(name="trained", kind="module", action="accept")
    assert model.get(request_block=True, name="trained", reason="keep it") is model
    assert type(model.fc1.weight) is nn.Parameter
    assert len(bob.owner.store) == 2  # the owner's data stays where it is


def test_a_federated_dataset_of_owners_data_trains_but_releases_only_through_requests(bob, alice):
    x, y = make_data(n=12)
    shares = []
    for worker, part in ((bob, slice(0, 6)), (alice, slice(6, 12))):
        x_ptr = worker.store[x[part].send(worker.owner, tags=["x"]).id]
        y_ptr = worker.store[y[part].send(worker.owner, tags=["y"]).id]
        shares.append(sy.BaseDataset(x_ptr, y_ptr))
    federated = sy.FederatedDataset(shares)
    assert federated.workers == ["bob", "alice"] and len(federated) == 12
    for worker in (bob, alice):
        worker.owner.requests.add_handler(name="loss", kind="float", action="accept")
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    released, where = [], None
    for data, target in sy.FederatedDataLoader(federated, batch_size=3, shuffle=True):
        if where is not None and where is not data.location:
            with pytest.raises(sy.PermissionDenied, match="bring the model back first"):
                model.send(data.location)  # moving weights learned from bob's data: a release
            where.owner.requests.add_handler(name="model", kind="module", action="accept")
            model.get(request_block=True, name="model", reason="on to the next owner")
        model.send(data.location)
        where = data.location
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        with pytest.raises(sy.PermissionDenied):
            loss.get()
        released.append(loss.item().get(request_block=True, name="loss", reason="progress"))
    assert len(released) == 4 and all(value > 0 for value in released)
    with pytest.raises(sy.PermissionDenied):
        model.get()
    alice.owner.requests.add_handler(name="model", kind="module", action="accept")
    assert model.get(request_block=True, name="model") is model


def test_workers_stop_their_threads_when_closed(hook):
    before = set(threading.enumerate())
    workers = [sy.VirtualWorker(hook, id=f"w{i}") for i in range(3)]
    for worker in workers:
        torch.ones(1).send(worker).get()
    started = [
        t for t in set(threading.enumerate()) - before
        if t.name.startswith("duet-") and t.name != "duet-loop"
    ]  # fmt: skip
    assert started
    for worker in workers:
        worker.close()
    for thread in started:
        thread.join(30)
        assert not thread.is_alive(), thread.name
    assert all(not w.connected for w in workers)
