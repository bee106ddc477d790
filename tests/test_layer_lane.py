"""The executor's lane for a call of one of the scientist's own lone layers
(``Executor._layer_call``: ``conv1(x)``, ``dropout1(x)``, ``fc1(x)`` in a ``sy.Module``'s
forward) leaves the owner exactly as the general way does: the same results and draws, failures,
notices and quota, the same label on every entry and on the state it reaches, the same handles
each entry stands for, the same generator and graph labels (``observe`` compares them all). It
takes no layer that holds layers, writes (buffers in training, ``inplace``), is named by a
handle or has settings that depend on the owner's data, or is named by another scientist."""

from __future__ import annotations

import pytest
import torch

import duet as sy
from tests.test_fast_lane import spy_lane
from tests.test_function_lane import _private, observe

LANE = "_layer_call"


def _images(s, rt):
    # a batch of the owner's data in a tensor of the scientist's, image-shaped
    return _private(s, rt, None).repeat(2, 4).reshape(2, 1, 4, 4)


def _forward_and_step(s, rt, x):
    F = rt.nn.functional
    conv = rt.nn.Conv2d(1, 2, 2)
    drop = rt.nn.Dropout(0.5)  # training: draws from the scientist's generator
    fc = rt.nn.Linear(18, 2)
    params = list(conv.parameters()) + list(fc.parameters())
    optimizer = rt.optim.SGD(params, lr=0.1)
    images = _images(s, rt)
    hidden = drop(F.relu(conv(images)))
    out = F.log_softmax(fc(rt.flatten(hidden, 1)), dim=1)
    loss = F.nll_loss(out, s.store["labels"] * 1)
    loss.backward()
    optimizer.step()  # the weights now hold the owner's data
    own = torch.ones(2, 1, 4, 4).send(s)
    again = conv(own)  # the scientist's own input, the owner's weights
    dropped = drop(x)  # the scientist's own: a draw after private ones
    return [hidden, out, loss, again, dropped, rt.rand(2)]


def _dropout_modes(s, rt, x):
    drop = rt.nn.Dropout(0.5)
    drop.eval()  # hands back its input: writes through the result write the input
    private = _private(s, rt, x)
    same = drop(private)
    same.add_(1)
    own = drop(x)
    own.mul_(2)
    drop.train()
    drawn = drop(x)
    return [private, same, x, own, drawn, rt.rand(3)]


def _layers_that_write_or_hold_layers(s, rt, x):
    private = _private(s, rt, x)
    norm = rt.nn.BatchNorm1d(4)  # training: its running statistics are written
    stack = rt.nn.Sequential(rt.nn.Linear(4, 4), rt.nn.ReLU())
    in_place = rt.nn.ReLU(inplace=True)
    return [
        norm(private.repeat(2, 1)),
        norm.running_mean,
        stack(x),
        in_place(x),
        x,
        rt.nn.Dropout(0.5, inplace=1)(x),  # works in place as True does
        x,
    ]


def _private_settings(s, rt, x):
    private = _private(s, rt, x)
    drop = rt.nn.Dropout(0.5)
    drop.train(private.sum() > 0)  # whether it draws is the owner's
    flat = rt.nn.Flatten()
    return [drop(x), flat(private), rt.rand(2)]


def _failures(s, rt, x):
    private = _private(s, rt, x)
    fc = rt.nn.Linear(4, 3)
    drop = rt.nn.Dropout(0.5)
    wide = rt.nn.Linear(4, 1000)
    return [
        fc(x.reshape(8, 1)),  # the scientist's own: told at once
        fc(private.reshape(4, 1)),  # on the owner's data: a private failure
        drop(x, "bogus"),
        drop(x.long()),  # after the generator may have been touched
        wide(x.repeat(5000, 1)),  # more than the owner allows (40 MB)
        drop(x),
        rt.rand(2),
    ]


def _a_layer_alone(s, rt, x):
    # the only op on the owner's data is the layer's call (may it hand its input on, work in
    # place? whether a later backward pass runs may depend on it: the graph label)
    return [rt.nn.Linear(4, 2)(_private(s, rt, x))]


def _a_layer_chosen_privately(s, rt, x):
    private = _private(s, rt, x)
    layers = s.python.List([rt.nn.Linear(4, 2), rt.nn.Linear(4, 2)])
    chosen = layers[(private[0][0] > 0).long().item()]  # which layer: the owner's
    return [chosen(x), rt.rand(2)]


PROGRAMS = {
    "a layer alone": _a_layer_alone,
    "a layer chosen privately": _a_layer_chosen_privately,
    "forward and step": _forward_and_step,
    "dropout modes": _dropout_modes,
    "layers that write or hold layers": _layers_that_write_or_hold_layers,
    "private settings": _private_settings,
    "failures": _failures,
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_layer_lane_leaves_the_owner_as_the_general_way_does(name, monkeypatch):
    with_lane = observe(True, PROGRAMS[name], monkeypatch, name=LANE)
    without = observe(False, PROGRAMS[name], monkeypatch, name=LANE)
    assert with_lane == without


def test_the_layer_lane_takes_a_models_lone_layers_and_nothing_else(monkeypatch):
    taken = spy_lane(monkeypatch, LANE)
    observe(True, _forward_and_step, monkeypatch)
    # conv, dropout and linear on the owner's data, then conv and dropout on the scientist's
    assert len(taken) == 5
    taken.clear()
    observe(True, _layers_that_write_or_hold_layers, monkeypatch)
    assert taken == []
    observe(True, _private_settings, monkeypatch)
    assert len(taken) == 1  # Flatten's settings are public; the dropout's flag is not
    taken.clear()
    observe(True, _a_layer_chosen_privately, monkeypatch)
    assert taken == []


def test_a_truthy_inplace_flag_labels_what_the_layer_writes():
    # Dropout(inplace=1) works in place as inplace=True does: the input it overwrote with
    # draws from a generator the owner's data chose is the owner's, not the scientist's
    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.tensor([3.0]), tags=["secret"])
        rt = scientist.torch
        x = torch.ones(8).send(scientist)
        rt.rand((scientist.store["secret"] > 2).sum())  # how much it drew is the owner's
        rt.nn.Dropout(0.5, inplace=1)(x)
        with pytest.raises(sy.PermissionDenied, match="depends on the owner's private data"):
            x.get(timeout_secs=30)
    finally:
        scientist.close()
        owner.close()


def test_a_scientist_calls_no_other_scientists_layer_through_the_lane(monkeypatch):
    taken = spy_lane(monkeypatch, LANE)
    owner, alice = sy.duet_pair()
    alice_id = owner.client_id  # (the only scientist yet)
    try:
        _, bob = sy.duet_pair(owner=owner)
        try:
            layer = alice.torch.nn.Linear(2, 2)
            alice.sync(timeout_secs=30)
            forged = bob.client.pointer(layer.id, "Module", {}, owned=False)  # alice's id
            x = torch.ones(1, 2).send(bob)
            with pytest.raises(sy.DuetError, match="does not exist"):
                forged(x).get(timeout_secs=30)
            assert taken == []  # refused the general way, which says it does not exist
            assert layer(torch.ones(1, 2).send(alice)).get(timeout_secs=30).shape == (1, 2)
            assert len(taken) == 1 and taken[0][0] == alice_id  # alice's own call
        finally:
            bob.close()
    finally:
        alice.close()
        owner.close()
