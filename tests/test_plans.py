"""Plans: a step recorded once and replayed by the owner from one small message per run."""

from __future__ import annotations

import gc

import pytest
import torch

import duet as sy
from duet.protocol.messages import Call, DefinePlan, RunPlan


def make_step(scientist, model, optimizer):
    def step(data, target):
        optimizer.zero_grad()
        loss = scientist.torch.nn.functional.mse_loss(model(data), target)
        loss.backward()
        optimizer.step()
        return loss

    return step


def test_a_planned_step_trains_exactly_like_the_unplanned_one(pair):
    _, scientist = pair
    rt = scientist.torch
    torch.manual_seed(3)
    initial = torch.nn.Linear(4, 1)
    batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(5)]
    results = []
    for planned in (False, True):
        model = initial.send(scientist)
        optimizer = rt.optim.SGD(model.parameters(), lr=0.1)
        step = make_step(scientist, model, optimizer)
        if planned:
            step = scientist.plan(step)
        losses = [step(x.send(scientist), y.send(scientist)) for x, y in batches]
        results.append(([loss.get().item() for loss in losses], model.get().weight.detach()))
    (plain_losses, plain_weight), (plan_losses, plan_weight) = results
    assert plain_losses == plan_losses
    assert torch.equal(plain_weight, plan_weight)


def test_each_run_is_one_message_and_leaves_no_temporaries(pair):
    owner, scientist = pair
    rt = scientist.torch
    model = rt.nn.Linear(4, 1)
    optimizer = rt.optim.SGD(model.parameters(), lr=0.1)
    step = scientist.plan(make_step(scientist, model, optimizer))
    x, y = torch.randn(8, 4).send(scientist), torch.randn(8, 1).send(scientist)
    step(x, y)
    scientist.sync(timeout_secs=10)
    baseline = len(owner.objects.peer_objects(owner.client_id))
    sent = []
    original = scientist.client.enqueue

    def counting(build):
        sent.append(build)
        original(build)

    scientist.client.enqueue = counting
    try:
        for _ in range(20):
            step(x, y)
    finally:
        scientist.client.enqueue = original
    assert len(sent) == 20  # one RunPlan a step
    gc.collect()
    scientist.sync(timeout_secs=10)
    scientist.sync(timeout_secs=10)
    assert len(owner.objects.peer_objects(owner.client_id)) <= baseline


def test_a_plan_cannot_wait_or_capture_local_tensors(pair):
    _, scientist = pair
    x = torch.ones(2).send(scientist)
    with pytest.raises(sy.UsageError, match="cannot wait"):
        scientist.plan(lambda a: (a + 1).get())(x)
    with pytest.raises(sy.UsageError, match="send them first"):
        scientist.plan(lambda a: a + torch.ones(2))(x)
    with pytest.raises(sy.NotAllowed):
        scientist.plan(lambda a: a.numpy())(x)
    assert torch.equal(scientist.plan(lambda a: a * 3)(x).get(), torch.full((2,), 3.0))


def test_a_hostile_plan_is_checked_against_the_allowlist_when_it_runs(pair):
    _, scientist = pair
    client = scientist.client
    x = torch.ones(2).send(scientist)
    plan_id, out = client.new_id(), client.new_id()
    client.enqueue(
        lambda enc: DefinePlan(
            id=plan_id, inputs=["in"], outputs=["r"],
            calls=[Call(op="torch.load", args=[{"$": "ref", "id": "in"}], result="r")],
        )
    )  # fmt: skip
    client.enqueue(lambda enc: RunPlan(plan=plan_id, inputs=[x.id], outputs=[out]))
    with pytest.raises(sy.NotAllowed, match=r"torch\.load"):
        client.pointer(out, None, {}, owned=True).get()
    assert torch.equal((x + 1).get(), torch.full((2,), 2.0))


def test_failures_inside_a_plan_reach_the_outputs_with_the_op_named(pair):
    _, scientist = pair
    step = scientist.plan(lambda a: (a @ a).sum())
    with pytest.raises(sy.RemoteError, match="matmul"):
        step(torch.ones(2, 3).send(scientist)).get()
    assert step(torch.ones(2, 2).send(scientist)).get().item() == 8.0
