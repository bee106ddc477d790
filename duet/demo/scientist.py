"""The demo's data scientist: the Duet tutorial's training loop, as written, on the owner's digits."""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable

import torch

import duet as sy
from duet.scientist.library import RemoteLibrary
from duet.scientist.pointer import Pointer


class SyNet(sy.Module):
    """The tutorial's CNN: two convolutions, then 9216 -> 128 -> 10."""

    def __init__(self, torch_ref: types.ModuleType | RemoteLibrary):
        super().__init__(torch_ref=torch_ref)
        self.conv1 = self.torch_ref.nn.Conv2d(1, 32, 3, 1)
        self.conv2 = self.torch_ref.nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = self.torch_ref.nn.Dropout2d(0.25)
        self.dropout2 = self.torch_ref.nn.Dropout(0.5)
        self.fc1 = self.torch_ref.nn.Linear(9216, 128)
        self.fc2 = self.torch_ref.nn.Linear(128, 10)

    # a batch of images here, or a pointer to one when the model runs on the owner's side
    def forward(self, x: torch.Tensor | Pointer) -> torch.Tensor | Pointer:
        x = self.torch_ref.nn.functional.relu(self.conv1(x))
        x = self.torch_ref.nn.functional.relu(self.conv2(x))
        x = self.torch_ref.nn.functional.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = self.torch_ref.flatten(x, 1)
        x = self.torch_ref.nn.functional.relu(self.fc1(x))
        x = self.fc2(self.dropout2(x))
        return self.torch_ref.nn.functional.log_softmax(x, dim=1)


def train(
    duet: sy.ScientistSession,
    *,
    epochs: int,
    batch_size: int = 64,
    log_interval: int = 10,
    on_batch: Callable[[int, int, int, float | None], None] | None = None,
    seed: int = 42,
) -> sy.Module | None:
    """The tutorial's loop; returns the trained model downloaded with the owner's approval."""
    remote_torch = duet.torch
    has_cuda_ptr = remote_torch.cuda.is_available()
    has_cuda = bool(  # the tutorial asks; the demo trains on the owner's CPU either way
        has_cuda_ptr.get(
            request_block=True,
            name="cuda_is_available",
            reason="To run test and inference locally",
            timeout_secs=30,
        )
    )
    del has_cuda
    torch.manual_seed(seed)
    remote_torch.manual_seed(seed)
    local_model = SyNet(torch)
    remote_model = local_model.send(duet)
    train_loader_ptr = remote_torch.utils.data.DataLoader(
        duet.store["digits-train"], batch_size=batch_size, shuffle=True
    )
    optimizer = remote_torch.optim.Adadelta(remote_model.parameters(), lr=1.0)
    scheduler = remote_torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    batches = len(train_loader_ptr)  # a request named "train_size"
    for epoch in range(1, epochs + 1):
        remote_model.train()
        for batch_idx, (data_ptr, target_ptr) in enumerate(train_loader_ptr):
            optimizer.zero_grad()
            output = remote_model(data_ptr)
            loss = remote_torch.nn.functional.nll_loss(output, target_ptr)
            loss.backward()
            optimizer.step()
            loss_item = loss.item()
            train_loss = duet.python.Float(0)
            train_loss += loss_item
            local_loss = None
            if batch_idx % log_interval == 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", sy.RequestWarning)
                    local_loss = loss_item.get(
                        name="loss",
                        reason="To evaluate training progress",
                        request_block=True,
                        timeout_secs=30,
                    )
            else:
                duet.sync()  # keep the progress bar honest: this batch has run on the owner
            if on_batch is not None:
                on_batch(epoch, batch_idx, batches, local_loss)
        scheduler.step()
    return remote_model.get(
        request_block=True,
        name="model_download",
        reason="Evaluate the trained model on held-out digits",
        timeout_secs=60,
    )


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    return float((predicted == labels).float().mean())
