"""Training entirely through pointers reaches what the same code reaches locally."""

from __future__ import annotations

import torch


def train_linear_regression(torch_ref, x, y, *, steps=60):
    torch_ref.manual_seed(0)
    model = torch_ref.nn.Linear(3, 1)
    optimizer = torch_ref.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch_ref.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def test_linear_regression_through_pointers_matches_local_training(pair):
    owner, scientist = pair
    generator = torch.Generator().manual_seed(42)
    x = torch.randn(64, 3, generator=generator)
    y = x @ torch.tensor([[2.0], [-1.0], [0.5]]) + 0.3
    x_entry = x.send(owner, tags=["x"], description="features")
    y_entry = y.send(owner, tags=["y"], description="targets")
    owner.requests.add_handler(
        name="loss", tags=["x", "y", "item"], derived_inputs=True, action="accept"
    )
    owner.requests.add_handler(name="weights", tags=["x", "y"], kind="tensor", action="accept")

    remote_model, remote_losses = train_linear_regression(
        scientist.torch, scientist.store[x_entry.id], scientist.store[y_entry.id]
    )
    final_remote = remote_losses[-1].get(request_block=True, name="loss", timeout_secs=30)
    weight = remote_model.weight.get(request_block=True, name="weights", timeout_secs=30)

    local_model, local_losses = train_linear_regression(torch, x, y)
    assert final_remote == local_losses[-1]
    assert final_remote < 0.01 < local_losses[0]
    assert torch.allclose(weight, local_model.weight.detach())
