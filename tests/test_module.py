"""sy.Module: one model class that trains here, and on the owner's side once sent."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from torch import nn

import duet as sy


class SyNet(sy.Module):
    """The tutorial's network, scaled down to 8x8 images."""

    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.conv1 = self.torch_ref.nn.Conv2d(1, 4, 3, 1)
        self.dropout = self.torch_ref.nn.Dropout2d(0.25)
        self.fc1 = self.torch_ref.nn.Linear(4 * 3 * 3, 16)
        self.fc2 = self.torch_ref.nn.Linear(16, 3)

    def forward(self, x):
        x = self.torch_ref.nn.functional.relu(self.conv1(x))
        x = self.torch_ref.nn.functional.max_pool2d(x, 2)
        x = self.dropout(x)
        x = self.torch_ref.flatten(x, 1)
        x = self.torch_ref.nn.functional.relu(self.fc1(x))
        return self.torch_ref.nn.functional.log_softmax(self.fc2(x), dim=1)


class MLP(sy.Module):
    """No randomness in forward: the same steps give the same weights here and there."""

    def __init__(self, torch_ref, hidden=8):
        super().__init__(torch_ref=torch_ref)
        self.hidden = hidden
        self.fc1 = self.torch_ref.nn.Linear(4, hidden)
        self.fc2 = self.torch_ref.nn.Linear(hidden, 3)

    def forward(self, x):
        return self.torch_ref.nn.functional.log_softmax(self.fc2(self.features(x)), dim=1)

    def features(self, x):  # a helper method, run with remote layers too
        return self.torch_ref.nn.functional.relu(self.fc1(x))


def make_data(n=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def train(model, torch_ref, loader, *, lr=0.1):
    optimizer = torch_ref.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for data, target in loader:
        optimizer.zero_grad()
        loss = torch_ref.nn.functional.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        losses.append(loss)
    return losses


def twin(model):
    """An independent local copy with the same weights."""
    copy = type(model)(torch)
    copy.load_state_dict(model.state_dict())
    return copy


def test_sy_module_is_an_ordinary_local_model_that_trains():
    torch.manual_seed(0)
    model = SyNet(torch)
    assert isinstance(model, nn.Module) and model.is_local
    assert [name for name, _ in model.named_children()] == ["conv1", "dropout", "fc1", "fc2"]
    x = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    assert torch.equal(model(x), model(x))


def test_sent_model_runs_forward_on_the_owner_and_matches_local_output(pair):
    owner, scientist = pair
    owner.requests.add_handler(name="output", kind="tensor", action="accept")
    torch.manual_seed(0)
    local = SyNet(torch).eval()
    x = torch.randn(5, 1, 8, 8)
    x_ptr = scientist.store[x.send(owner, tags=["images"]).id]

    remote = local.send(scientist)
    assert not remote.is_local
    remote.eval()
    output = remote(x_ptr)
    assert isinstance(output, sy.Pointer)
    fetched = output.get(request_block=True, name="output", reason="compare", timeout_secs=10)
    assert torch.allclose(fetched, local(x), atol=1e-6)


def test_owner_receives_layers_and_weights_but_not_the_models_code(pair):
    owner, scientist = pair
    local = SyNet(torch)
    actions = scientist.client.actions_sent
    remote = local.send(scientist)
    scientist.sync()
    assert scientist.client.actions_sent - actions == 2  # one put of the whole model, one sync
    container = owner.held(remote.pointer.id).value
    assert type(container) is nn.Module  # a plain container: SyNet's forward stays here
    assert [type(c) for c in container.children()] == [
        nn.Conv2d,
        nn.Dropout2d,
        nn.Linear,
        nn.Linear,
    ]
    for name, value in local.state_dict().items():
        assert torch.equal(container.state_dict()[name], value)


def test_remote_training_gives_the_same_weights_as_local_training(pair):
    owner, scientist = pair
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    owner.requests.add_handler(name="model_download", kind="module", action="accept")
    x, y = make_data()
    owner.publish(torch.utils.data.TensorDataset(x, y), tags=["train"], description="toy set")

    torch.manual_seed(0)
    local = MLP(torch)
    reference = twin(local)
    remote = local.send(scientist)
    dataset_ptr = scientist.store["train"]
    loader_ptr = scientist.torch.utils.data.DataLoader(dataset_ptr, batch_size=8, shuffle=False)
    remote_losses = train(remote, scientist.torch, loader_ptr)
    assert len(remote_losses) == 3

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    train(reference, torch, loader)
    trained = remote.get(request_block=True, name="model_download", timeout_secs=10)
    assert isinstance(trained, MLP) and trained.is_local and trained.hidden == 8
    for name, value in reference.state_dict().items():
        assert torch.allclose(trained.state_dict()[name], value, atol=1e-6), name
    assert not torch.allclose(trained.fc1.weight, local.fc1.weight)  # it did train


def test_downloading_a_trained_model_is_one_request(pair, capsys):
    owner, scientist = pair
    owner.requests.add_handler(name="model_download", kind="module", action="accept")
    x, y = make_data()
    x_ptr = scientist.store[x.send(owner).id]
    y_ptr = scientist.store[y.send(owner).id]
    remote = MLP(torch).send(scientist)
    train(remote, scientist.torch, [(x_ptr, y_ptr)])

    before = len(owner.requests.history)
    trained = remote.get(
        request_block=True, name="model_download", reason="keep the model", timeout_secs=10,
        verbose=True,
    )  # fmt: skip
    assert "model_download" in capsys.readouterr().out  # verbose says what was asked
    requests = owner.requests.history[before:]
    assert [(r.name, r.status.value) for r in requests] == [("model_download", "accepted")]
    assert isinstance(trained, MLP)


def test_denied_download_returns_none_with_a_warning(pair):
    owner, scientist = pair
    owner.requests.add_handler(name="model_download", action="deny")
    x, y = make_data()
    remote = MLP(torch).send(scientist)
    x_ptr = scientist.store[x.send(owner).id]
    y_ptr = scientist.store[y.send(owner).id]
    train(remote, scientist.torch, [(x_ptr, y_ptr)])
    with pytest.warns(sy.RequestWarning, match="denied"):
        assert remote.get(request_block=True, name="model_download", timeout_secs=10) is None
    assert owner.held(remote.pointer.id) is not None  # the model stays with the owner


def test_model_trained_on_private_data_cannot_be_read_without_a_request(pair):
    owner, scientist = pair
    x, y = make_data()
    remote = MLP(torch).send(scientist)
    train(remote, scientist.torch, [(scientist.store[x.send(owner).id], y.send(scientist))])
    with pytest.raises(sy.PermissionDenied):
        remote.get()


def test_untouched_sent_model_comes_back_without_a_request(pair):
    owner, scientist = pair
    local = MLP(torch, hidden=5)
    back = local.send(scientist).get()
    assert isinstance(back, MLP) and back.hidden == 5
    assert len(owner.requests.history) == 0
    for name, value in local.state_dict().items():
        assert torch.equal(back.state_dict()[name], value)


def test_train_and_eval_switch_the_remote_model(pair):
    owner, scientist = pair
    remote = SyNet(torch).send(scientist)
    container = lambda: owner.held(remote.pointer.id).value  # noqa: E731
    assert remote.eval() is remote and not remote.training
    scientist.sync()
    assert not container().training and not container().dropout.training
    remote.train()
    scientist.sync()
    assert remote.training and container().dropout.training


def test_zero_grad_clears_the_remote_gradients(pair):
    _, scientist = pair
    remote = MLP(torch).send(scientist)
    x, y = make_data()
    loss = scientist.torch.nn.functional.nll_loss(remote(x.send(scientist)), y.send(scientist))
    loss.backward()
    assert remote.fc1.weight.grad.abs().sum().get() > 0
    remote.zero_grad()
    assert remote.fc1.weight.grad.get() is None  # torch sets gradients to None


def test_remote_optimizer_updates_the_remote_parameters(pair):
    _, scientist = pair
    local = MLP(torch)
    remote = local.send(scientist)
    parameters = remote.parameters()
    assert isinstance(parameters, sy.Pointer) and parameters.kind == "List"
    optimizer = scientist.torch.optim.Adam(parameters, lr=0.01)
    x, y = make_data()
    loss = scientist.torch.nn.functional.nll_loss(remote(x.send(scientist)), y.send(scientist))
    loss.backward()
    optimizer.step()
    trained = remote.get()  # trained on the scientist's own data: no request needed
    assert not torch.allclose(trained.fc2.bias, local.fc2.bias)


def test_nested_sy_modules_and_module_lists_run_their_own_forward_remotely(pair):
    _, scientist = pair

    class Block(sy.Module):
        scale = 0.5  # class settings and static helpers work in a remote forward too

        def __init__(self, torch_ref):
            super().__init__(torch_ref=torch_ref)
            self.fc = self.torch_ref.nn.Linear(4, 4)

        @staticmethod
        def residual(out, x):
            return out + x

        def forward(self, x):
            return self.residual(self.torch_ref.relu(self.fc(x)) * self.scale, x)

    class Net(sy.Module):
        def __init__(self, torch_ref):
            super().__init__(torch_ref=torch_ref)
            self.blocks = nn.ModuleList([Block(torch_ref), Block(torch_ref)])
            self.head = self.torch_ref.nn.Linear(4, 2)

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    local = Net(torch)
    x = torch.randn(3, 4)
    output = local.send(scientist)(x.send(scientist))
    assert torch.allclose(output.get(), local(x), atol=1e-6)


def test_state_dict_and_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = SyNet(torch)
    other = SyNet(torch)
    other.load_state_dict(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], value)

    path = tmp_path / "synet.pt"
    model.save(path)
    restored = SyNet(torch)
    restored.load(path)
    x = torch.randn(2, 1, 8, 8)
    model.eval(), restored.eval()
    assert torch.equal(restored(x), model(x))


def test_sending_to_the_owner_publishes_the_model(pair):
    owner, _ = pair
    entry = SyNet(torch).send(owner, tags=["model"], description="the owner's own model")
    assert isinstance(entry.value, SyNet) and entry.tags == ["model"]


def test_plain_sequential_still_travels_as_a_module_pointer(pair):
    _, scientist = pair
    model = nn.Sequential(nn.Linear(4, 2), nn.ReLU())
    pointer = model.send(scientist)
    assert isinstance(pointer, sy.Pointer) and pointer.kind == "Module"
    x = torch.randn(3, 4)
    assert torch.allclose(pointer(x.send(scientist)).get(), model(x))


def test_a_remote_model_cannot_be_sent_again(pair):
    _, scientist = pair
    remote = MLP(torch).send(scientist)
    with pytest.raises(sy.UsageError, match="already on the owner's side"):
        remote.send(scientist)


def test_a_local_model_can_be_deep_copied():
    model = MLP(torch, hidden=6)
    copy = deepcopy(model)
    assert copy.torch_ref is torch and copy.hidden == 6
    assert copy.fc1.weight is not model.fc1.weight
    assert torch.equal(copy.fc1.weight, model.fc1.weight)
    with torch.no_grad():
        copy.fc1.weight.add_(1)
    assert not torch.equal(copy.fc1.weight, model.fc1.weight)


def test_training_the_local_model_right_after_send_does_not_change_what_was_sent(pair):
    _, scientist = pair
    for _ in range(20):
        local = MLP(torch)
        before = local.state_dict()
        before = {k: v.clone() for k, v in before.items()}
        remote = local.send(scientist)
        with torch.no_grad():
            for parameter in local.parameters():
                parameter.add_(1.0)
        sent = remote.get().state_dict()
        assert all(torch.equal(sent[k], v) for k, v in before.items())
