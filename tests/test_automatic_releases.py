"""The owner's automatic decisions release exactly what they name, attacked as a hostile
scientist would: op tags bound to the published object itself, lengths that are shapes, sizes
that count every number that leaves, quotas that stop a handler rather than deny, and the
federation's handlers.

Each owner ends its handlers with one that denies everything else, so a request that the
handler under test does not release comes back "denied" at once.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import duet as sy
from duet import federated as fl
from duet.owner.handlers import AS_SENT

AGES = [34.0, 51.0, 29.0, 62.0, 45.0, 38.0]


@pytest.fixture
def duet():
    owner, scientist = sy.duet_pair()
    owner.publish(torch.tensor(AGES), tags=["ages"], description="ages of patients")
    features = torch.arange(24.0).view(8, 3)
    owner.publish(torch.utils.data.TensorDataset(features, torch.arange(8) % 2), tags=["digits"])
    yield owner, scientist
    scientist.close()
    owner.close()


def deny_the_rest(owner):
    owner.requests.add_handler(action="deny")


def decide(ptr, name="asked"):
    """The owner's answer: ("accepted", value) or ("denied", None)."""
    handle = ptr.request(name=name, reason="test", timeout_secs=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        value = handle.wait(timeout_secs=60)
    return handle.status, value


def released(ptr, name="asked"):
    status, value = decide(ptr, name)
    return value if status == "accepted" else None


# ---------------------------------------------------------------- op tags


def test_an_op_tag_releases_that_op_of_the_published_object_as_a_whole(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages", "mean"], action="accept")
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    mean = sum(AGES) / len(AGES)
    assert released(ages.mean()).item() == pytest.approx(mean)
    assert released(ages.mean().item()) == pytest.approx(mean)  # the same number, as a float
    assert released(scientist.torch.mean(ages)).item() == pytest.approx(mean)


ATTACKS = {
    "reshape then mean(dim=1)": lambda ages: ages.reshape(6, 1).mean(dim=1),  # all six ages
    "mean(dim=0, keepdim)": lambda ages: ages.view(6, 1).mean(dim=0, keepdim=True),
    "slice then mean": lambda ages: ages[0:1].mean(),
    "index then mean": lambda ages: ages[2].mean(),
    "view then mean": lambda ages: ages.view(2, 3).mean(),
    "a computation then mean": lambda ages: (ages * (ages > 40)).mean(),
    "mean with dim": lambda ages: ages.mean(0),
    "torch.mean with dim": lambda ages: ages.view(3, 2).mean(1),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_op_tag_does_not_release_that_op_at_the_end_of_another_computation(duet, attack):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages", "mean"], action="accept")
    deny_the_rest(owner)
    assert decide(ATTACKS[attack](scientist.store["ages"])) == ("denied", None)


def test_a_value_written_since_it_was_made_is_no_longer_what_the_op_tag_names(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages", "mean"], action="accept")
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    mean = ages.mean()
    mean.zero_()
    mean.add_(ages[3])  # now ages[3], still "made by mean" from ages
    assert decide(mean) == ("denied", None)
    alias = ages.mean()
    alias.view(1).copy_(ages[1:2])  # through a view: the same storage
    assert decide(alias) == ("denied", None)
    copy = ages.mean().clone()  # a conversion of a whole mean is that mean
    assert released(copy).item() == pytest.approx(sum(AGES) / len(AGES))


def test_derived_inputs_lets_an_op_tag_match_any_computation_the_owner_allows(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages", "mean"], derived_inputs=True, action="accept")
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    assert released(ages[0:2].mean()).item() == pytest.approx((AGES[0] + AGES[1]) / 2)
    assert decide(ages.sum()) == ("denied", None)  # still only values made by mean


# ---------------------------------------------------------------- lengths


def test_a_length_handler_releases_the_published_objects_length(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages", "__len__"], kind="int", action="accept")
    owner.requests.add_handler(tags=["digits", "__len__"], kind="int", action="accept")
    deny_the_rest(owner)
    assert released(scientist.store["ages"].len()) == len(AGES)
    digits = scientist.store["digits"]
    assert released(digits.len()) == 8
    loader = scientist.torch.utils.data.DataLoader(digits, batch_size=3, shuffle=True)
    assert released(loader.len()) == 3  # a loader over it: ceil(8 / 3) batches


def test_a_length_computed_from_the_datas_values_is_not_a_length_of_the_data(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages", "__len__"], kind="int", action="accept")
    owner.requests.add_handler(
        tags=["digits", "__len__"], kind="int", derived_inputs=True, action="accept"
    )
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    rt = scientist.torch
    for i in range(3):  # each of these was one age, exactly
        assert decide(rt.arange(ages[i].long().item()).len()) == ("denied", None)
    assert decide(ages[ages > 40].len()) == ("denied", None)  # how many ages pass 40
    assert decide(rt.zeros(ages.sum().long().item()).len()) == ("denied", None)
    digits = scientist.store["digits"]
    # derived inputs, but still a length of values: the batch size came from the data
    size = digits[0][0][1].long().item()
    loader = rt.utils.data.DataLoader(digits, batch_size=size)
    assert decide(loader.len()) == ("denied", None)
    # a length of something made from shapes alone: what derived_inputs allows
    assert released(rt.zeros(digits.len()).len()) == 8


# ---------------------------------------------------------------- sizes


def test_max_elements_counts_a_strings_characters(duet):
    owner, scientist = duet
    owner.requests.add_handler(name="loss", max_elements=1, action="accept")
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    text = scientist.python.String(ages.tolist())  # every age, as one string
    assert decide(text, "loss") == ("denied", None)
    assert released(ages.sum().item(), "loss") == sum(AGES)  # one number: what it names
    assert decide(ages[0:2].tolist(), "loss") == ("denied", None)  # two leaves


def test_layer_settings_computed_from_the_data_count_as_elements(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages"], kind="module", max_elements=10, action="accept")
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    nn = scientist.torch.nn
    slopes = [nn.LeakyReLU(ages[i].item()) for i in range(6)]  # the ages as layer settings
    leaky = nn.Sequential(nn.Linear(3, 2), *slopes)  # 8 weights + 6 settings from the data
    x = ages[0:3].view(1, 3)
    trained = leaky.copy()
    (trained(x) ** 2).sum().backward()
    assert decide(trained) == ("denied", None)
    # only slopes from the data and no weights at all
    assert decide(nn.Sequential(*slopes)) == ("denied", None)
    # the same shape of model with settings of the scientist's own: its 8 weights only
    plain = nn.Sequential(nn.Linear(3, 2), nn.LeakyReLU(0.1))
    optimizer = scientist.torch.optim.SGD(plain.parameters(), lr=0.1)
    (plain(x) ** 2).sum().backward()
    optimizer.step()
    model = released(plain)
    assert isinstance(model, torch.nn.Sequential) and model[1].negative_slope == 0.1


def test_a_containers_leaves_and_an_errors_text_are_counted(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages"], max_elements=4, action="accept")
    deny_the_rest(owner)
    ages = scientist.store["ages"]
    pair = scientist.python.List([ages[0:3], ages[3:6]])  # two tensors of 3: 6 leaves
    assert decide(pair) == ("denied", None)
    assert released(scientist.python.List([ages[0:2], ages[2:4]])) is not None
    failed = ages.view(int(AGES[0]), -1)  # fails, and its message names the data
    assert decide(failed) == ("denied", None)


# ---------------------------------------------------------------- quotas


def test_a_handler_whose_quota_is_spent_hands_the_request_on_and_says_why(duet):
    owner, scientist = duet
    owner.requests.add_handler(tags=["ages"], element_quota=2, action="accept")
    ages = scientist.store["ages"]
    assert released(ages[0:2]) is not None
    handle = ages[2:3].request(name="third", timeout_secs=30)
    request = owner.requests.wait_for_request(timeout_secs=30)  # not denied: it waits
    assert request is not None and request.name == "third"
    assert "quota of 2 elements is spent" in request.note
    request.accept()
    assert handle.wait(timeout_secs=30).tolist() == [AGES[2]]
    told = [r.note for r in scientist.requests if r.name == "third"]
    assert "quota of 2 elements is spent" in told[0]
    # a later handler decides what a spent one does not
    owner.requests.add_handler(tags=["ages"], action="deny")
    assert decide(ages[3:4]) == ("denied", None)


# ---------------------------------------------------------------- federations


def federation_owner(**kw):
    owner, scientist = sy.duet_pair()
    x = torch.arange(32.0).view(8, 4)
    owner.publish(torch.utils.data.TensorDataset(x, torch.arange(8) % 2), tags=["data"])
    handlers = fl.allow_federated_training(owner, "data", model_elements=10, **kw)
    deny_the_rest(owner)
    return owner, scientist, handlers


def test_a_federations_sample_count_is_the_datasets_length_never_a_value():
    owner, scientist, _ = federation_owner(rounds=[1])
    try:
        data = scientist.store["data"]
        pixel = data[0][0][1].long().item()
        fake = scientist.torch.arange(pixel).len()  # a pixel value, named as the count
        assert decide(fake, "federated samples") == ("denied", None)
        assert released(data.len(), "federated samples") == 8
        # its quota is one count: the next one waits for the owner (then the catch-all)
        assert decide(data.len(), "federated samples") == ("denied", None)
    finally:
        scientist.close()
        owner.close()


def test_a_federations_update_has_the_architecture_it_was_sent_with_and_nothing_more():
    owner, scientist, _ = federation_owner()
    try:
        data = scientist.store["data"]
        nn = scientist.torch.nn
        x, y = data[0][0].view(1, 4), data[0][1].view(1)
        sent = torch.nn.Sequential(torch.nn.Linear(4, 2)).send(scientist)  # 10 weights
        scientist.torch.nn.functional.cross_entropy(sent(x), y).backward()
        assert isinstance(released(sent, "federated round 1 update"), torch.nn.Sequential)
        # the same weights, with 4 of the data's values as layer settings
        smuggler = nn.Sequential(nn.Linear(4, 2), *[nn.LeakyReLU(x[0][i].item()) for i in range(4)])
        assert decide(smuggler, "federated round 2 update") == ("denied", None)
        # a model sent with settings of the scientist's own, trained: released as sent
        other = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.LeakyReLU(0.5)).send(scientist)
        other(x).sum().backward()
        assert released(other, "federated round 3 update")[1].negative_slope == 0.5
        copied = other.copy()  # not the model sent: it has no declared architecture
        assert decide(copied, "federated round 4 update") == ("denied", None)
    finally:
        scientist.close()
        owner.close()


def test_an_owner_named_architecture_is_the_only_one_released():
    model = torch.nn.Linear(4, 2)
    owner, scientist, _ = federation_owner(model=model)
    try:
        data = scientist.store["data"]
        right = torch.nn.Linear(4, 2).send(scientist)
        right(data[0][0].view(1, 4)).sum().backward()
        assert released(right, "federated round 1 update") is not None
        wrong = torch.nn.Linear(2, 3).send(scientist)  # 9 weights, another architecture
        wrong(data[0][0][0:2].view(1, 2)).sum().backward()
        assert decide(wrong, "federated round 1 update") == ("denied", None)
        small = torch.nn.Sequential(torch.nn.Linear(4, 2)).send(scientist)  # same weights
        small(data[0][0].view(1, 4)).sum().backward()
        assert decide(small, "federated round 2 update") == ("denied", None)
    finally:
        scientist.close()
        owner.close()


def test_one_federations_handlers_never_decide_anothers_requests():
    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.arange(8.0), tags=["data"])
        fl.allow_federated_training(owner, "data", model_elements=10, rounds=[1])
        data = scientist.store["data"]
        loss = data.sum().item()
        # another federation's loss: no handler of the first one decides it, it waits
        handle = loss.request(name="other round 1 loss", timeout_secs=30)
        request = owner.requests.wait_for_request(timeout_secs=30)
        assert request is not None and request.name == "other round 1 loss"
        request.deny()
        with pytest.warns(sy.RequestWarning, match="denied"):
            handle.wait(timeout_secs=30)
        # the first federation's own loss is released
        assert released(loss, "federated round 1 loss") == 28.0
        with pytest.raises(sy.UsageError, match="federation named 'federated'"):
            fl.allow_federated_training(owner, "data", model_elements=10)
        fl.allow_federated_training(owner, "data", model_elements=10, federation="other")
        assert released(data.mean().item(), "other round 1 loss") == 3.5
    finally:
        scientist.close()
        owner.close()


def test_architecture_takes_a_model_or_as_sent_and_says_what_else_is_wrong(duet):
    owner, _ = duet
    handler = owner.requests.add_handler(architecture=AS_SENT, tags=["ages"])
    assert handler["architecture"] == AS_SENT
    with pytest.raises(sy.UsageError, match="architecture is a model"):
        owner.requests.add_handler(architecture=3)
    with pytest.raises(sy.UsageError, match="not a regular expression"):
        owner.requests.add_handler(name_pattern="(", tags=["ages"])
