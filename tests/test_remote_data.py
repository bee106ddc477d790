"""Remote data: the owner publishes a dataset, the scientist loads batches of it by pointer."""

from __future__ import annotations

import pytest
import torch

import duet as sy


@pytest.fixture
def published(pair):
    """An owner that published a 10-example dataset tagged "train"."""
    owner, scientist = pair
    x = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    y = torch.arange(10) % 2
    owner.publish(
        torch.utils.data.TensorDataset(x, y), tags=["train"], description="ten toy examples"
    )
    return owner, scientist, x, y


def test_scientist_sees_the_published_dataset_with_its_tags_and_description(published):
    _, scientist, _, _ = published
    dataset = scientist.store["train"]
    assert dataset.kind == "Dataset"
    assert dataset.meta["description"] == "ten toy examples"
    assert dataset.meta["fields"] == 2


def test_iterating_a_remote_loader_yields_batch_pointers_once_train_size_is_accepted(published):
    owner, scientist, x, y = published
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    owner.requests.add_handler(name="batch", max_elements=4 * 28 * 28, action="accept")
    loader = scientist.torch.utils.data.DataLoader(
        scientist.store["train"], batch_size=4, shuffle=False
    )
    batches = []
    for batch_idx, (data_ptr, target_ptr) in enumerate(loader):
        assert isinstance(data_ptr, sy.Pointer) and isinstance(target_ptr, sy.Pointer)
        batches.append((batch_idx, data_ptr, target_ptr))
    assert [i for i, _, _ in batches] == [0, 1, 2]
    _, last_data, last_target = batches[-1]
    assert torch.equal(last_data.get(request_block=True, name="batch", timeout_secs=10), x[8:])
    assert torch.equal(last_target.get(request_block=True, name="batch", timeout_secs=10), y[8:])
    assert [r.name for r in owner.requests.history].count("train_size") == 1


def test_len_of_a_remote_dataset_and_loader_is_a_train_size_request(published):
    owner, scientist, _, _ = published
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    dataset = scientist.store["train"]
    loader = scientist.torch.utils.data.DataLoader(dataset, batch_size=4, drop_last=True)
    assert len(dataset) == 10
    assert len(loader) == 2
    assert [r.name for r in owner.requests.history] == ["train_size", "train_size"]


def test_denied_train_size_makes_iteration_fail_with_a_clear_error(published):
    owner, scientist, _, _ = published
    owner.requests.add_handler(name="train_size", action="deny")
    loader = scientist.torch.utils.data.DataLoader(scientist.store["train"], batch_size=4)
    with (
        pytest.warns(sy.RequestWarning, match="denied"),
        pytest.raises(sy.RequestDenied, match="train_size"),
    ):
        for _ in loader:
            pass
    with pytest.warns(sy.RequestWarning), pytest.raises(sy.RequestDenied, match="train_size"):
        len(scientist.store["train"])
    assert (scientist.torch.ones(2) + 1).get().tolist() == [2.0, 2.0]  # the session goes on


def test_each_epoch_reuses_the_number_of_batches(published):
    owner, scientist, _, _ = published
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    loader = scientist.torch.utils.data.DataLoader(scientist.store["train"], batch_size=3)
    epochs = [sum(1 for _ in loader) for _ in range(3)]
    assert epochs == [4, 4, 4]
    assert len(owner.requests.history) == 1


def test_scientist_builds_a_dataset_from_published_tensors(pair):
    owner, scientist = pair
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    x_ptr = scientist.store[torch.randn(6, 2).send(owner, tags=["x"]).id]
    y_ptr = scientist.store[torch.zeros(6).send(owner, tags=["y"]).id]
    dataset = scientist.torch.utils.data.TensorDataset(x_ptr, y_ptr)
    loader = scientist.torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True)
    shapes = [data.shape for data, _ in loader]
    assert len(shapes) == 3
    with pytest.raises(sy.PermissionDenied):  # still the owner's data
        shapes[0].get()


def test_loader_settings_beyond_batching_are_refused_before_sending(published):
    _, scientist, _, _ = published
    dataset = scientist.store["train"]
    before = scientist.client.actions_sent
    with pytest.raises(sy.NotAllowed, match="num_workers"):
        scientist.torch.utils.data.DataLoader(dataset, num_workers=2)
    assert scientist.client.actions_sent == before
