"""The release boundary, attacked the way a hostile scientist would: nothing computed from the
owner's data comes back without an accepted request for exactly that value.

Each test names the way of getting data out that it closes. The owner publishes ``secret``
(tag "secret") and ``other`` (tag "other"); the scientist makes no request unless the test says.
"""

from __future__ import annotations

import gc

import pytest
import torch

import duet as sy
from duet.owner.handlers import HandlerWarning

SECRET = [11.0, 22.0, 33.0, 44.0]


@pytest.fixture
def duet():
    owner, scientist = sy.duet_pair()
    owner.secret = torch.tensor(SECRET)
    owner.other = torch.tensor([1.0, 2.0, 3.0, 4.0])
    owner.publish(owner.secret, tags=["secret"])
    owner.publish(owner.other, tags=["other"])
    yield owner, scientist
    scientist.close()
    owner.close()


def private(scientist, tag="secret"):
    return scientist.store[tag]


def denied(ptr):
    with pytest.raises(sy.PermissionDenied):
        ptr.get()
    return True


# ---------------------------------------------------------------- aliases and views


ALIASES = {
    "view": lambda t: t.view(-1),
    "detach": lambda t: t.detach(),
    "slice": lambda t: t[0:2],
    "reshape": lambda t: t.reshape(2, 2),
    "t": lambda t: t.view(2, 2).t(),
    "chunk": lambda t: t.chunk(2)[0],
    "split": lambda t: t.split(2)[1],
    "expand": lambda t: t.view(1, 4).expand(3, 4),
    "unsqueeze": lambda t: t.unsqueeze(0),
    "transpose": lambda t: t.view(2, 2).transpose(0, 1),
    "index": lambda t: t[1],
    "contiguous": lambda t: t.contiguous(),
    "float": lambda t: t.float(),
}
WRITES = {
    "add_": lambda mine, p: mine.add_(p),
    "copy_": lambda mine, p: mine.copy_(p),
    "setitem": lambda mine, p: mine.__setitem__(slice(None), p),
    "masked_fill_": lambda mine, p: mine.masked_fill_(p > 20, 1.0),
    "iadd": lambda mine, p: mine.__iadd__(p),
}


@pytest.mark.parametrize("alias", sorted(ALIASES))
@pytest.mark.parametrize("write", sorted(WRITES))
def test_an_alias_taken_before_a_private_write_is_private(duet, alias, write):
    _, scientist = duet
    mine = torch.zeros(4).send(scientist)
    view = ALIASES[alias](mine)
    assert view.get() is not None  # the scientist's own: released at once
    WRITES[write](mine, private(scientist))
    assert denied(view) and denied(mine)


@pytest.mark.parametrize("alias", ["view", "slice", "detach", "index"])
def test_a_private_write_through_an_alias_makes_the_base_private(duet, alias):
    _, scientist = duet
    mine = torch.zeros(4).send(scientist)
    ALIASES[alias](mine).add_(private(scientist)[1])
    assert denied(mine)


def test_a_view_of_my_own_tensor_is_mine_until_private_data_is_written(duet):
    _, scientist = duet
    mine = torch.arange(4.0).send(scientist)
    view = mine.view(2, 2)
    mine.add_(1)
    assert torch.equal(view.get(), torch.arange(1.0, 5.0).view(2, 2))


# ---------------------------------------------------------------- state held from before


class Net(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.fc = self.torch_ref.nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(x)


def train_one_step(scientist, model, optimizer):
    optimizer.zero_grad()
    loss = (model(private(scientist).view(1, 4)) ** 2).sum()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "Adadelta"])
def test_state_taken_before_training_is_private_after(duet, opt_name):
    _, scientist = duet
    model = Net(torch).send(scientist)
    optimizer = getattr(scientist.torch.optim, opt_name)(model.parameters(), lr=0.1)
    # an own step first: gradients and optimizer state exist before the owner's data arrives
    (model(torch.ones(1, 4).send(scientist)) ** 2).sum().backward()
    optimizer.step()
    state = model.state_dict()
    params = model.parameters()
    weight = model.fc.weight
    grad = model.fc.weight.grad
    opt_state = optimizer.state_dict()
    held = [state, params, weight]
    for ptr in held:
        assert ptr.get() is not None  # all the scientist's own so far
    before = opt_state.get()
    old_grad = grad.get()
    train_one_step(scientist, model, optimizer)
    for ptr in held:
        assert denied(ptr)
    # zero_grad() let go of the old gradient tensor: it still holds the scientist's own values
    assert torch.equal(grad.get(), old_grad)
    assert denied(model.fc.weight.grad)
    # the optimizer's state dict is a copy: what it held before training it still holds
    after = opt_state.get()
    assert repr(after) == repr(before)
    assert denied(optimizer.state_dict())
    assert denied(model.pointer)


def test_a_gradient_held_before_a_private_backward_is_private(duet):
    _, scientist = duet
    w = torch.ones(4, requires_grad=True).send(scientist)
    (w * 2).sum().backward()
    grad = w.grad
    assert torch.equal(grad.get(), torch.full((4,), 2.0))
    (w * private(scientist)).sum().backward()  # accumulates into the same tensor
    assert denied(grad) and denied(w.grad)


# ---------------------------------------------------------------- containers


def private_number(scientist):
    return private(scientist)[0].item()


CONTAINER_WRITES = {
    "append": lambda s, xs: xs.append(private_number(s)),
    "extend": lambda s, xs: xs.extend(private(s).tolist()),
    "insert": lambda s, xs: xs.insert(0, private_number(s)),
    "setitem": lambda s, xs: xs.__setitem__(0, private_number(s)),
    "iadd": lambda s, xs: xs.__iadd__(private(s).tolist()),
    "pop_at_private_index": lambda s, xs: xs.pop((private(s)[0] > 0).long().item()),
    "insert_at_private_index": lambda s, xs: xs.insert((private(s)[0] > 0).long().item(), 7),
    "setitem_at_private_index": lambda s, xs: xs.__setitem__((private(s)[0] > 0).long().item(), 9),
}


@pytest.mark.parametrize("write", sorted(CONTAINER_WRITES))
def test_a_list_written_with_private_data_is_private(duet, write):
    _, scientist = duet
    mine = scientist.python.List([1, 2, 3])
    alias = scientist.python.List([mine])[0]
    assert mine.get() == [1, 2, 3]
    CONTAINER_WRITES[write](scientist, mine)
    assert denied(mine) and denied(alias)


@pytest.mark.parametrize(
    "write",
    ["setitem", "update", "private_key", "pop_private_key"],
)
def test_a_dict_written_with_private_data_is_private(duet, write):
    _, scientist = duet
    mine = scientist.python.Dict({"a": 1, "b": 2})
    number = private_number(scientist)
    if write == "setitem":
        mine["a"] = number
    elif write == "update":
        mine.update(scientist.python.Dict({"c": number}))
    elif write == "private_key":
        mine[number] = 1
    else:
        key = scientist.python.Dict({True: "a", False: "b"})[(private(scientist)[0] > 0).item()]
        mine.pop(key)
    assert denied(mine) and denied(mine.keys())


def test_private_data_far_inside_a_container_is_found(duet):
    _, scientist = duet
    big = scientist.python.List(list(range(20_000)))
    big.append(private(scientist))
    assert denied(big)
    nested = scientist.python.List([])
    inner = nested
    for _ in range(10):
        deeper = scientist.python.List([])
        inner.append(deeper)
        inner = deeper
    inner.append(private_number(scientist))
    assert denied(nested)
    keyed = scientist.python.Dict({})
    keyed[private(scientist)[1].item()] = "x"
    assert denied(keyed)


def test_a_container_deeper_than_the_walk_is_private(duet):
    _, scientist = duet
    nested = [0]
    for _ in range(100):
        nested = [nested]
    with pytest.raises(sy.ProtocolError):  # refused at the wire: no deep values at all
        scientist.python.List(nested).get()
    chain = scientist.python.List([])
    for _ in range(70):  # built remotely, one level at a time
        chain = scientist.python.List([chain])
    assert denied(chain)  # too deep to see through: private, never "clean"


# ---------------------------------------------------------------- derived iterables


def test_a_loader_over_my_dataset_yields_what_was_written_into_it(duet):
    owner, scientist = duet
    # the loader's length reads a dataset written with the owner's data: the owner cannot
    # tell it depends on shapes only, so a length handler would not release it; this one does
    owner.requests.add_handler(tags=["secret"], kind="int", max_elements=1, action="accept")
    rt = scientist.torch
    data = torch.zeros(4, 1).send(scientist)
    loader = rt.utils.data.DataLoader(rt.utils.data.TensorDataset(data), batch_size=4)
    early = iter(loader)  # an iterator taken before the write
    data.view(-1).add_(private(scientist))
    batch = next(iter(loader))
    assert denied(batch) and denied(next(early))


# ---------------------------------------------------------------- big graphs


def test_a_backward_through_a_long_graph_labels_the_gradients(duet):
    _, scientist = duet
    w = torch.ones(4, requires_grad=True).send(scientist)
    x = w * private(scientist)
    for _ in range(50_000):  # no walk of the graph: the owner does not need one
        x = x + 1
    x.sum().backward()
    assert denied(w.grad)
    del x
    gc.collect()
    scientist.sync(timeout_secs=60)
    assert torch.equal((torch.ones(2).send(scientist) * 2).get(), torch.full((2,), 2.0))


# ---------------------------------------------------------------- errors


def test_errors_of_private_ops_are_not_told_at_once(duet):
    owner, scientist = duet
    mine = torch.zeros(3).send(scientist)
    index = (private(scientist) * 10_000).long()  # values like 110000
    failed = mine[index]
    scientist.sync(timeout_secs=10)
    assert not scientist.client.notices  # no failure notice
    with pytest.raises(sy.PermissionDenied) as denied_failure:
        failed.get()
    with pytest.raises(sy.PermissionDenied) as denied_value:
        (private(scientist) + 1).get()
    # a private failure and a private value answer alike
    assert (
        denied_failure.value.args[0].split(" depends")[1]
        == denied_value.value.args[0].split(" depends")[1]
    )
    # ops on a private failure fail privately too, and the owner can release the error
    later = failed + 1
    handle = later.request(name="what happened")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request.kind == "error" and "110000" in str(request.value)
    request.accept()
    with pytest.raises(sy.RemoteError, match="out of bounds"):
        handle.wait(timeout_secs=10)


def test_errors_of_my_own_ops_are_told_at_once_with_detail(duet):
    _, scientist = duet
    mine = torch.zeros(3).send(scientist)
    bad = mine[torch.tensor([5]).send(scientist)]
    with pytest.raises(sy.RemoteError, match="index 5 is out of bounds"):
        bad.get()


@pytest.mark.parametrize("redact", [False, True])
def test_whether_a_private_op_failed_cannot_be_read_bit_by_bit(redact):
    """Index by the k-th bit of a private value: the failures must tell nothing."""

    def observe(secret_value):
        owner, scientist = sy.duet_pair(redact_errors=redact)
        try:
            owner.publish(torch.tensor([secret_value]), tags=["secret"])
            p = scientist.store["secret"]
            mine = torch.zeros(1).send(scientist)
            seen = []
            for k in range(8):
                bit = (p.long() // 2**k) % 2  # 0 or 1
                probe = mine[bit]  # index 1 fails, index 0 works
                try:
                    probe.get()
                    seen.append("ok")
                except sy.DuetError as exc:
                    seen.append(type(exc).__name__)
            scientist.sync(timeout_secs=10)
            seen.append(len(scientist.client.notices))
            return seen
        finally:
            scientist.close()
            owner.close()

    assert observe(0b10110101) == observe(0b01001010)


# ---------------------------------------------------------------- what is reviewed is released


def test_the_reviewed_snapshot_is_what_is_released(duet):
    owner, scientist = duet
    summary = private(scientist).mean().unsqueeze(0) + torch.zeros(4).send(scientist)
    handle = summary.request(name="mean", reason="summary")
    request = owner.requests.wait_for_request(timeout_secs=10)
    reviewed = request.value.clone()
    summary.copy_(private(scientist))  # overwritten in place after the owner looked
    scientist.sync(timeout_secs=10)
    request.accept()
    released = handle.wait(timeout_secs=10)
    assert torch.equal(released, reviewed) and torch.allclose(released, torch.full((4,), 27.5))


def test_a_list_reviewed_with_one_element_releases_one(duet):
    owner, scientist = duet
    values = scientist.python.List([])
    values.append(private(scientist)[0].item())
    handle = values.request(name="first")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request.value == [11.0] and request.elements == 1
    for i in (1, 2, 3):
        values.append(private(scientist)[i].item())
    scientist.sync(timeout_secs=10)
    request.accept()
    assert handle.wait(timeout_secs=10) == [11.0]


# ---------------------------------------------------------------- handlers name what they release


def test_a_tag_handler_does_not_release_values_that_also_depend_on_other_data(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["other"], action="accept")
    laundered = private(scientist) + private(scientist, "other") * 0
    with pytest.warns(sy.RequestWarning, match="timed out"):  # the handler did not release it
        assert laundered.get(request_block=True, name="only other", timeout_secs=0.2) is None
    plain = private(scientist, "other") * 2
    assert torch.equal(
        plain.get(request_block=True, name="x", timeout_secs=10), torch.tensor([2.0, 4, 6, 8])
    )


def test_op_tags_release_only_what_that_op_made(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["secret", "__len__"], action="accept")
    assert private(scientist).len().get(request_block=True, name="n", timeout_secs=10) == 4
    with pytest.warns(sy.RequestWarning):
        assert private(scientist).get(request_block=True, name="n", timeout_secs=0.2) is None
    with pytest.warns(sy.RequestWarning):
        assert (private(scientist) * 1).get(request_block=True, name="n", timeout_secs=0.2) is None


def test_kind_and_size_bound_what_a_named_handler_releases(duet):
    owner, scientist = duet
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    assert private(scientist).len().get(request_block=True, name="train_size") == 4
    with pytest.warns(sy.RequestWarning):  # a whole batch under the same name: not released
        assert (
            private(scientist).get(request_block=True, name="train_size", timeout_secs=0.2) is None
        )


def test_an_accept_handler_keyed_only_by_name_warns(duet):
    owner, _ = duet
    with pytest.warns(HandlerWarning, match="scientist chooses request names"):
        owner.requests.add_handler(name="loss", action="accept")
    owner.requests.add_handler(name="loss", action="deny")  # denying by name is safe: no warning


def test_the_request_table_shows_what_is_released(duet):
    owner, scientist = duet
    ptr = private(scientist).mean()
    ptr.request(name="avg", reason="cohort mean")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert (request.tags, request.op, request.kind, request.elements) == (
        ["secret"],
        "mean",
        "tensor",
        1,
    )
    table = owner.requests.pandas
    row = table.iloc[0]
    assert row["Tags"] == ["secret"] and row["Op"] == "mean" and row["Elements"] == 1
    request.deny()


# ---------------------------------------------------------------- the owner's objects are read-only


def test_the_owners_published_tensors_cannot_be_changed(duet):
    owner, scientist = duet
    secret = private(scientist)
    for attempt in (secret.zero_(), secret.add_(1)):
        with pytest.raises(sy.NotAllowed, match="read-only"):  # named directly: told at once
            attempt.get()
    secret.view(-1).zero_()  # through a view: refused too (privately)
    secret[0:2].fill_(0)
    secret.__setitem__(0, 5.0)
    scientist.sync(timeout_secs=10)
    assert torch.equal(owner.secret, torch.tensor(SECRET))


def test_the_owners_published_model_cannot_be_changed(duet):
    owner, scientist = duet
    model = torch.nn.Linear(4, 1)
    model.eval()
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    owner.publish(model, tags=["model"])
    remote = scientist.store["model"]
    fresh = torch.nn.Linear(4, 1)
    remote.load_state_dict(fresh.state_dict())
    remote.train()
    remote.zero_grad()
    opt = scientist.torch.optim.SGD(remote.parameters(), lr=1.0)
    out = remote(torch.ones(1, 4).send(scientist))  # using it is fine
    out.sum().backward()  # writing its gradients is not
    opt.step()
    copy = remote.copy()  # a copy of its own is the scientist's to train
    copy(torch.ones(1, 4).send(scientist)).sum().backward()
    scientist.torch.optim.SGD(copy.parameters(), lr=1.0).step()
    scientist.sync(timeout_secs=10)
    assert not model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, kept[name])
    assert model.weight.grad is None


# ---------------------------------------------------------------- the random number generator


def test_a_private_seed_makes_random_draws_private_until_reseeded(duet):
    _, scientist = duet
    rt = scientist.torch
    rt.manual_seed(private(scientist)[0].long().item())
    assert denied(rt.randn(3))
    rt.manual_seed(0)
    assert torch.equal(
        rt.randn(3).get(), torch.randn(3, generator=torch.Generator().manual_seed(0))
    )


@pytest.mark.parametrize("flag", [True, 1, 2.0, "yes"])
def test_a_layer_working_in_place_by_any_true_flag_labels_its_input(duet, flag):
    # Dropout(inplace=1) overwrites its input as inplace=True does: drawn from a generator
    # whose state the owner's data chose, the input is then the owner's (every flag but False
    # counts; the owner cannot tell what torch makes of the others)
    _, scientist = duet
    rt = scientist.torch
    rt.manual_seed(private(scientist)[0].long().item())
    x = torch.ones(8).send(scientist)
    rt.nn.Dropout(0.5, inplace=flag)(x)
    assert denied(x)
    mine = torch.ones(8).send(scientist)
    rt.nn.Dropout(0.5, inplace=False)(mine)
    assert mine.get().tolist() == [1.0] * 8  # not written: still the scientist's own


def test_the_scientist_does_not_draw_from_the_owners_generator(duet):
    _, scientist = duet
    torch.manual_seed(1234)  # the owner's own seed (this process is the owner too)
    expected = torch.randn(5)
    torch.manual_seed(1234)
    assert not torch.equal(scientist.torch.randn(5).get(), expected)
    assert torch.equal(torch.randn(5), expected)  # and the owner's stream is untouched


# ---------------------------------------------------------------- quotas tell nothing


def test_whether_my_own_allocation_fits_does_not_depend_on_private_sizes():
    def fits(threshold):
        owner, scientist = sy.duet_pair(max_bytes=10_000)
        try:
            owner.publish(torch.arange(1000.0), tags=["secret"])
            p = scientist.store["secret"]
            big = p[p > threshold]  # a private size: 4 * (999 - threshold) bytes
            mine = scientist.torch.zeros(2000)  # 8000 bytes of the scientist's own
            scientist.sync(timeout_secs=10)
            try:
                mine.get()
                return "fits"
            except sy.QuotaExceeded:
                return "refused"
            finally:
                del big
        finally:
            scientist.close()
            owner.close()

    assert fits(10) == fits(990) == "fits"


def test_the_demo_owners_handlers_release_nothing_else_under_their_names():
    from duet.demo.owner import add_handlers

    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.arange(64.0).view(8, 8), tags=["digits-train"])
        add_handlers(owner.requests)
        raw = scientist.store["digits-train"] * 1  # a whole batch of the owner's data
        for name in ("train_size", "model_download", "cuda_is_available"):
            with pytest.warns(sy.RequestWarning, match="timed out"):
                assert raw.get(request_block=True, name=name, timeout_secs=0.2) is None
        assert scientist.store["digits-train"].len().get(request_block=True, name="train_size") == 8
        model = torch.nn.Linear(8, 1).send(scientist)
        model(scientist.store["digits-train"]).sum().backward()
        scientist.torch.optim.SGD(model.parameters(), lr=0.1).step()
        assert model.get(request_block=True, name="model_download", timeout_secs=10) is not None
    finally:
        scientist.close()
        owner.close()
