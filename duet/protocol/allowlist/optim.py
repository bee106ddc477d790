"""torch.optim: optimizers and a learning-rate scheduler, built over a model's parameters (their
results hold their arguments), and their steps (which write all they hold)."""

from __future__ import annotations

import copy

import torch

from .declare import call_for_effect, call_method, function
from .facts import Op

OPTIMIZERS = ("SGD", "Adam", "AdamW", "Adadelta", "Adagrad", "RMSprop")

FUNCTIONS: dict[str, Op] = {
    **{
        f"torch.optim.{name}": function(
            f"torch.optim.{name}", getattr(torch.optim, name), "Optimizer", aliases="args",
            # Adagrad makes its state with it
            size="optimizer_state" if name == "Adagrad" else "broadcast",
        )
        for name in OPTIMIZERS
    },
    "torch.optim.lr_scheduler.StepLR": function(
        "torch.optim.lr_scheduler.StepLR", torch.optim.lr_scheduler.StepLR, "LRScheduler",
        aliases="args", size="broadcast",
    ),
}  # fmt: skip


def _optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    optimizer.step()
    return None


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, object]:
    # a copy: the optimizer's own state dicts must not be shared with a value the scientist
    # holds (they change with every step)
    return copy.deepcopy(optimizer.state_dict())


OPTIMIZER: dict[str, Op] = {
    # the first step makes the optimizer's state
    "step": Op("Optimizer.step", "method", "None", True, _optimizer_step, writes="target_deep",
               size="optimizer_step"),
    "zero_grad": Op("Optimizer.zero_grad", "method", "None", True, call_for_effect("zero_grad"),
                    writes="target_deep", size="nothing"),
    "state_dict": Op("Optimizer.state_dict", "method", "Dict", False, _optimizer_state,
                     size="nothing"),
}  # fmt: skip
LR_SCHEDULER: dict[str, Op] = {
    "step": Op("LRScheduler.step", "method", "None", True, call_for_effect("step"),
               writes="target_deep", size="nothing"),
    "get_last_lr": Op("LRScheduler.get_last_lr", "method", "List", False,
                      call_method("get_last_lr"), size="nothing"),
}  # fmt: skip
