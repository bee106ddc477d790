"""The scientist's side: pointers, remote torch, remote Python values, errors and freeing."""

from __future__ import annotations

import gc
import time

import pytest
import torch

import duet as sy


def test_calls_return_pointers_at_once_with_ids_chosen_here(pair):
    _owner, scientist = pair
    x = torch.ones(3).send(scientist)
    before = scientist.client.actions_sent
    y = (x + 1) * 2
    assert isinstance(y, sy.Pointer) and y.id.startswith(scientist.client._prefix)
    assert torch.equal(y.get(), torch.full((3,), 4.0))
    assert scientist.client.actions_sent > before


def test_own_values_come_back_at_once_and_private_ones_need_a_request(pair):
    owner, scientist = pair
    mine = torch.tensor([1.0, 2.0]).send(scientist)
    assert torch.equal((mine * 10).get(), torch.tensor([10.0, 20.0]))
    theirs = scientist.store[torch.tensor([3.0]).send(owner).id]
    with pytest.raises(sy.PermissionDenied, match="request_block=True"):
        (mine.sum() + theirs).get()
    with pytest.raises(sy.PermissionDenied):
        theirs.get()


def test_remote_torch_creation_functions(pair):
    owner, scientist = pair
    rt = scientist.torch
    rt.manual_seed(7)
    remote = rt.randn(2, 3).get()  # one process shares torch's RNG: finish remotely first
    torch.manual_seed(7)
    assert torch.equal(remote, torch.randn(2, 3))
    assert torch.equal(rt.zeros(2).get(), torch.zeros(2))
    assert torch.equal(rt.ones(2, dtype=torch.int64).get(), torch.ones(2, dtype=torch.int64))
    assert torch.equal(rt.arange(5).get(), torch.arange(5))
    assert torch.equal(rt.tensor([[1, 2], [3, 4]]).get(), torch.tensor([[1, 2], [3, 4]]))
    has_cuda = rt.cuda.is_available()
    with pytest.raises(sy.PermissionDenied):  # facts about the owner's machine are the owner's
        has_cuda.get()
    owner.requests.add_handler(name="cuda_is_available", kind="bool", action="accept")
    assert has_cuda.get(request_block=True, name="cuda_is_available") is torch.cuda.is_available()


def test_plain_torch_functions_over_lists_of_pointers_run_on_the_owner(pair):
    """torch.cat([a, b]) hands torch's dispatch a list: the pointers inside it are found."""
    _, scientist = pair
    a = scientist.torch.tensor([1.0, 2.0])
    b = scientist.torch.tensor([3.0])
    joined = torch.cat([a, b])
    assert isinstance(joined, sy.Pointer)
    assert torch.equal(joined.get(), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(torch.stack((a[:1], b)).get(), torch.tensor([[1.0], [3.0]]))


def test_tensor_methods_and_operators_match_local_torch(pair):
    _, scientist = pair
    local = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    x = local.send(scientist)
    cases = {
        "add": (x + 1, local + 1), "rsub": (1 - x, 1 - local), "mul": (x * x, local * local),
        "div": (x / 2, local / 2), "matmul": (x @ x.t(), local @ local.t()), "neg": (-x, -local),
        "lt": (x < 0, local < 0), "eq": (x == 1.0, local == 1.0), "index": (x[0, 1:], local[0, 1:]),
        "sum": (x.sum(), local.sum()), "mean": (x.mean(dim=1), local.mean(dim=1)),
        "std": (x.std(), local.std()), "max": (x.max(), local.max()), "argmax": (x.argmax(dim=1), local.argmax(dim=1)),
        "view": (x.view(3, 2), local.view(3, 2)), "reshape": (x.reshape(-1), local.reshape(-1)),
        "flatten": (x.flatten(), local.flatten()), "long": (x.long(), local.long()),
        "float": (x.long().float(), local.long().float()), "torch.flatten": (scientist.torch.flatten(x), torch.flatten(local)),
        "detach": (x.detach(), local.detach()), "pow": (x**2, local**2),
    }  # fmt: skip
    for name, (remote, expected) in cases.items():
        got = remote.get()
        assert torch.equal(got, expected), name
    values, indices = x.max(dim=1)
    assert torch.equal(values.get(), local.max(dim=1).values)
    assert torch.equal(indices.get(), local.max(dim=1).indices)
    assert x.item if False else x[0, 0].item().get() == 1.0


def test_in_place_ops_change_the_remote_tensor(pair):
    _, scientist = pair
    x = torch.zeros(3).send(scientist)
    x.add_(2)
    x[0] = 7.0
    x *= 2
    assert torch.equal(x.get(), torch.tensor([14.0, 4.0, 4.0]))


def test_remote_autograd_gives_gradient_pointers(pair):
    _, scientist = pair
    w = scientist.torch.tensor([1.0, 2.0, 3.0]).requires_grad_()
    loss = (w * w).sum()
    loss.backward()
    grad = w.grad
    assert isinstance(grad, sy.Pointer)
    assert torch.equal(grad.get(), torch.tensor([2.0, 4.0, 6.0]))
    assert w.requires_grad.get() is True


def test_nn_layers_functional_and_optimizers(pair):
    _, scientist = pair
    rt = scientist.torch
    rt.manual_seed(0)
    model = rt.nn.Sequential(
        rt.nn.Linear(4, 8), rt.nn.ReLU(), rt.nn.Dropout(0.0), rt.nn.Linear(8, 3)
    )
    conv = rt.nn.Sequential(rt.nn.Conv2d(1, 2, 3), rt.nn.BatchNorm2d(2), rt.nn.MaxPool2d(2),
                            rt.nn.Dropout2d(0.1), rt.nn.Flatten(), rt.nn.BatchNorm1d(8))  # fmt: skip
    assert conv(rt.randn(4, 1, 6, 6)).shape.get() == torch.Size([4, 8])
    x = rt.randn(5, 4)
    target = rt.tensor([0, 1, 2, 0, 1])
    for loss_name in ("nll_loss", "cross_entropy"):
        out = rt.nn.functional.log_softmax(model(x), dim=1)
        loss = getattr(rt.nn.functional, loss_name)(out, target)
        assert loss.item().get() > 0
    for opt in (rt.optim.SGD(model.parameters(), lr=0.1), rt.optim.Adam(model.parameters(), lr=0.01),
                rt.optim.Adadelta(model.parameters(), lr=1.0)):  # fmt: skip
        scheduler = rt.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        before = rt.nn.functional.mse_loss(model(x), rt.zeros(5, 3)).item().get()
        for _ in range(5):
            opt.zero_grad()
            rt.nn.functional.mse_loss(model(x), rt.zeros(5, 3)).backward()
            opt.step()
            scheduler.step()
        after = rt.nn.functional.mse_loss(model(x), rt.zeros(5, 3)).item().get()
        assert after < before
    assert rt.nn.functional.l1_loss(x, x).get() == 0
    assert rt.nn.functional.softmax(x, dim=1).sum(dim=1).get().allclose(torch.ones(5))
    assert rt.nn.functional.relu(-rt.ones(2)).get().sum() == 0
    assert torch.equal(rt.nn.functional.dropout(rt.ones(3), p=0.0).get(), torch.ones(3))


def test_tensor_dataset_and_data_loader(pair):
    owner, scientist = pair
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    rt = scientist.torch
    dataset = rt.utils.data.TensorDataset(rt.arange(10.0).view(10, 1), rt.arange(10))
    loader = rt.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)
    assert len(loader) == 3
    batches = [(data.get(), target.get()) for data, target in loader]
    assert [len(t) for _, t in batches] == [4, 4, 2]
    assert torch.equal(batches[2][1], torch.tensor([8, 9]))
    with pytest.raises(sy.NotAllowed, match="num_workers"):
        rt.utils.data.DataLoader(dataset, batch_size=4, num_workers=2).get()


def test_python_values_with_in_place_arithmetic(pair):
    _, scientist = pair
    py = scientist.python
    acc = py.Float(0)
    for value in (1.5, 2.5):
        acc += torch.tensor(value).send(scientist).item()
    assert acc.get() == 4.0
    assert (
        py.Int(3).get() == 3
        and py.Bool(True).get() is True
        and py.String("ab").upper().get() == "AB"
    )
    lst = py.List([1, 2])
    lst.append(3)
    assert lst.get() == [1, 2, 3] and len(lst) == 3
    d = py.Dict({"a": 1})
    d["b"] = 2
    assert d.get() == {"a": 1, "b": 2} and d["b"].get() == 2
    assert py.Tuple([1, 2]).get() == (1, 2)


def test_item_is_a_pointer_to_a_number(pair):
    _, scientist = pair
    item = torch.tensor([2.5]).send(scientist).sum().item()
    assert isinstance(item, sy.Pointer) and item.get() == 2.5


def test_failed_remote_op_raises_remote_error_naming_the_op_and_owner_serves_on(pair):
    _, scientist = pair
    a, b = scientist.torch.ones(2, 3), scientist.torch.ones(4, 5)
    bad = a @ b
    later = (bad + 1).sum()  # depends on the failure
    with pytest.raises(
        sy.RemoteError, match=r"Tensor.__matmul__.*shapes cannot be multiplied"
    ) as info:
        later.get()
    assert info.value.op == "Tensor.__matmul__" and info.value.remote_type == "RuntimeError"
    assert torch.equal((a + 1).get(), torch.full((2, 3), 2.0))


def test_owner_can_redact_error_details():
    owner, scientist = sy.duet_pair(redact_errors=True)
    try:
        with pytest.raises(sy.RemoteError, match="redacts") as info:
            (scientist.torch.ones(2, 3) @ scientist.torch.ones(4, 5)).get()
        assert "shapes" not in str(info.value) and info.value.op == "Tensor.__matmul__"
    finally:
        scientist.close()
        owner.close()


def test_unknown_remote_path_is_refused_here_and_nothing_is_sent(pair):
    owner, scientist = pair
    with pytest.raises(sy.NotAllowed, match=r"torch\.load"):
        scientist.torch.load("/etc/passwd")
    with pytest.raises(sy.NotAllowed):
        scientist.torch.ones(1).numpy()
    with pytest.raises(sy.NotAllowed):
        scientist.torch.ones(1).member("__class__")  # `member` is for remote models only
    scientist.sync(timeout_secs=10)
    assert scientist.client.failures == {}  # the owner never saw the refused calls
    assert owner.link().service.actions_run == 2  # just the two ones()


def test_dropping_pointers_frees_the_owners_copies_but_not_published_data(pair):
    owner, scientist = pair
    published = torch.ones(3).send(owner)
    ptr = scientist.store[published.id]
    results = [ptr * i for i in range(50)]
    scientist.sync(timeout_secs=10)
    assert len(owner.objects.peer_objects(owner.client_id)) >= 50
    del results, ptr
    gc.collect()
    scientist.sync(timeout_secs=10)  # flushes the deletes and waits for them
    scientist.sync(timeout_secs=10)
    assert owner.objects.peer_objects(owner.client_id) == []
    assert owner.store[0].id == published.id and torch.equal(owner.store[0].value, torch.ones(3))


def test_bool_of_a_pointer_is_a_clear_error(pair):
    _, scientist = pair
    with pytest.raises(sy.UsageError, match="get"):
        if scientist.torch.ones(1) > 0:
            pass


def test_a_model_sent_by_the_scientist_runs_remotely(pair):
    _, scientist = pair
    torch.manual_seed(1)
    local = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    remote = local.send(scientist)
    x = torch.randn(4, 3)
    assert torch.allclose(remote(x.send(scientist)).get(), local(x))
    back = remote.get()
    assert isinstance(back, torch.nn.Sequential) and torch.equal(back[0].weight, local[0].weight)


def test_blocking_calls_time_out_with_a_clear_error(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.ones(1).send(owner).id]
    handle = ptr.request(name="never answered")
    started = time.monotonic()
    with pytest.raises(sy.DuetTimeout, match="never answered"):
        handle.wait(timeout_secs=0.2)
    assert time.monotonic() - started < 30


def test_a_tensor_changed_right_after_sending_arrives_as_it_was_sent(pair):
    _, scientist = pair
    for _ in range(50):
        tensor = torch.zeros(1000)
        ptr = tensor.send(scientist)
        total = ptr + tensor
        tensor.add_(1)
        assert ptr.sum().get().item() == 0.0 and total.sum().get().item() == 0.0


def test_a_flood_of_actions_never_queues_more_than_a_window_on_the_owner(pair):
    from duet.scientist.client import FLUSH_AT, MAX_MARKS, WINDOW_ACTIONS

    owner, scientist = pair
    service = owner.link().service
    x = scientist.torch.zeros(1)
    scientist.sync(timeout_secs=10)
    start = service.actions_run
    most_behind = 0
    for issued in range(1, 6 * WINDOW_ACTIONS + 1):
        x = x + 1
        if issued % 97 == 0:
            most_behind = max(most_behind, issued - (service.actions_run - start))
    assert most_behind <= (MAX_MARKS + 1) * WINDOW_ACTIONS + FLUSH_AT
    assert x.get().item() == 6 * WINDOW_ACTIONS


def test_plain_torch_calls_on_pointers_run_on_the_owner(pair):
    _, scientist = pair
    x = torch.arange(6.0).view(2, 3)
    ptr = x.send(scientist)
    flat = torch.flatten(ptr, 1)
    assert isinstance(flat, sy.Pointer) and torch.equal(flat.get(), torch.flatten(x, 1))
    log_probs = torch.nn.functional.log_softmax(ptr, dim=1)
    target = torch.tensor([2, 0]).send(scientist)
    loss = torch.nn.functional.nll_loss(log_probs, target)
    expected = torch.nn.functional.nll_loss(
        torch.nn.functional.log_softmax(x, dim=1), torch.tensor([2, 0])
    )
    assert torch.allclose(loss.get(), expected)
    with pytest.raises(sy.NotAllowed, match="no remote counterpart"):
        torch.cumprod(ptr, 0)
    with pytest.raises(sy.UsageError, match="cannot be pickled"):
        torch.save(ptr, "/tmp/never-written.pt")
