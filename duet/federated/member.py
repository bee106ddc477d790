"""One owner's part of a round, driven from the scientist's side: local training on the owner's
machine and the update's release through the owner's request queue.

The first round sets the owner up: the dataset is looked up by tag, its sample count asked for
(a request: it weighs the owner's updates), the model sent, a remote DataLoader made, and the
training step recorded as a plan, so each batch is one small message. Every round then loads
the global weights into the owner's copy of the model, makes a fresh optimizer, runs the epochs
(a barrier every few batches: progress, and a bound on what waits at the owner) and asks for
the trained model and its mean loss, by name for the round.

In a DP federation (``DpRound``) the first round asks only for the sample count, and every
round is one DP training job of the global model on the owner (``dp.py``): no loop driven from
here, no update or loss asked for.

In a round of secure aggregation the training is the same, but nothing is asked for at its end:
a copy of the round's global model is made at the owner, and the two objects' ids
(``secure_objects``) are what the round's messages name (``secure.py``).

An owner that cannot take part raises ``LeftOut`` with the outcome and the reason.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..display.progress import ProgressBoard
from ..errors import ConnectionLost, DuetTimeout, RemoteError, UsageError
from ..protocol.modules import CONTAINER, layer_path
from ..scientist.module import RemoteModule
from ..scientist.plan import Plan
from ..scientist.pointer import Pointer
from ..sessions.aio import AsyncSession, Released, wait_for
from ..sessions.scientist import ScientistSession
from .dp import DpRound, number, run_job
from .history import LeftOut, Outcome
from .names import RequestNames
from .strategies import Strategy, Update, proximal_term

# A barrier after this many batches (2 actions each: next, and the plan run that takes the
# batch apart, steps and sums the loss), and at most this many barriers unanswered before more
# batches are issued. So at most ~3 * 16 actions wait at the owner: far from what makes the
# client's own flow control block (~512), which it must never do on duet's loop, where this code
# runs.
CHUNK_BATCHES = 8
WINDOW_CHUNKS = 2


@dataclass(frozen=True)
class LocalTraining:
    """What each owner runs in a round: ``epochs`` over its data in batches of ``batch_size``,
    ``optimizer`` (a torch.optim class: the owner's optimizer of that name, made fresh each
    round with ``optimizer_options``) on ``loss_fn(output, target)`` (a torch function, run on
    the owner's side through the pointers). ``seed`` seeds each owner's shuffling and dropout
    (owner i gets ``seed + i``); None leaves them unseeded."""

    epochs: int = 1
    batch_size: int = 32
    optimizer: type[torch.optim.Optimizer] = torch.optim.SGD
    optimizer_options: Mapping[str, object] = field(default_factory=lambda: {"lr": 0.01})
    # Any: a torch function (tensors in, a tensor out) that the plan calls with pointers, where
    # it returns a pointer (torch's __torch_function__): no static type says both
    loss_fn: Callable[..., Any] = F.cross_entropy
    shuffle: bool = True
    seed: int | None = 0
    release_loss: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError("epochs and batch_size must be at least 1")


class Member:
    """One owner of a federation: its session and, once set up, its remote model and step."""

    def __init__(self, name: str, session: ScientistSession, *, index: int = 0):
        self.name = name
        self.session = session
        self.index = index
        self.aio = AsyncSession(session)
        self.samples: int | None = None
        self.gone = ""  # why it no longer takes part (its connection was lost)
        self.phase = "not started"  # what it was doing last in the current round
        self._done = (0, 0, 0, 0)  # batches the owner has run: epoch, epochs, batch, batches
        self._remote: RemoteModule | Pointer | None = None  # what runs the model's forward
        self._pointer: Pointer | None = None  # the model on the owner's side
        self._loader: Pointer | None = None
        self._params: list[Pointer] = []
        self._plan: Plan | None = None
        # a secure round's objects at the owner: the global model it started from, and the
        # model trained from it (which stays there; duet.federated.secure)
        self.secure_objects: tuple[str, str] | None = None
        self._start: Pointer | None = None  # kept: a pointer let go deletes its object

    def describe(self) -> str:
        """What this owner was doing, as far as the scientist knows (for a late owner)."""
        epoch, epochs, batch, batches = self._done
        if self.phase.startswith(("training", "waiting")) and (epoch, batch) != (epochs, batches):
            return (
                f"training: the owner had run {batch} of {batches} batches of epoch {epoch} "
                f"of {epochs}"
            )
        return self.phase

    @property
    def busy(self) -> bool:
        """True while replies to an earlier round's syncs or requests are still due."""
        return self.aio.outstanding > 0

    async def run_round(
        self,
        round_: int,
        global_model: nn.Module,
        *,
        data: str,
        training: LocalTraining | DpRound,
        strategy: Strategy,
        names: RequestNames,
        deadline: float,
        board: ProgressBoard,
        secure: bool = False,
    ) -> Update:
        """Train on this owner for one round (``LocalTraining``: through pointers; ``DpRound``:
        a DP job the owner runs); returns its update. ``secure``: the trained model stays at
        the owner (``secure_objects`` names it; the Update holds no weights) for a round of
        secure aggregation. Raises LeftOut."""
        loop = asyncio.get_running_loop()

        def left() -> float:
            return deadline - loop.time()

        try:
            if self.busy:  # an earlier round's work still runs there: let it finish first
                self.phase = "catching up on an earlier round's work"
                board.update(self.name, round=round_, state="catching up")
                await self.aio.settled(timeout_secs=left())
            private = isinstance(training, DpRound)  # a DP job a round: no remote set-up
            if self.samples is None if private else self._remote is None:
                self.phase = "asking for its sample count"
                board.update(self.name, round=round_, state="asking for its sample count")
                dataset = await self._ask_samples(data, names, left)
                if isinstance(training, LocalTraining):
                    await self._setup(dataset, global_model, training, strategy)
            if isinstance(training, DpRound):
                return await self._train_dp(round_, global_model, training, data, left, board)
            return await self._train(
                round_, global_model, training, strategy, names, left, board, secure=secure
            )
        except ConnectionLost as exc:
            self.gone = f"connection lost in round {round_}: {exc}"
            raise LeftOut(Outcome.LOST, f"connection lost: {exc}") from exc
        except DuetTimeout as exc:
            late = Outcome.BUSY if self.phase.startswith("catching up") else Outcome.LATE
            raise LeftOut(late, f"{exc} ({self.describe()})") from exc
        except RemoteError as exc:
            where = f" in {exc.op}" if getattr(exc, "op", None) else ""
            raise LeftOut(Outcome.FAILED, f"failed on the owner's side{where}: {exc}") from exc

    async def _ask_samples(
        self, data: str, names: RequestNames, left: Callable[[], float]
    ) -> Pointer:
        """Ask for the number of samples the owner's dataset ``data`` holds (``samples``: a
        request, which weighs its updates); returns the pointer to the dataset."""
        try:
            dataset = await self.aio.lookup(data, timeout_secs=left())
        except UsageError as exc:
            raise LeftOut(Outcome.FAILED, str(exc)) from exc
        released = await self.aio.request(
            dataset.len(),
            name=names.samples,
            reason="to weigh this owner's updates by how much data it trained on",
            timeout_secs=decision_secs(left()),
        )
        _check_released(released, names.samples)
        count = released.value
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise LeftOut(Outcome.FAILED, f"its sample count is not a positive integer: {count!r}")
        self.samples = count
        return dataset

    async def _setup(
        self,
        dataset: Pointer,
        global_model: nn.Module,
        training: LocalTraining,
        strategy: Strategy,
    ) -> None:
        session = self.session
        count = self.samples
        assert count is not None
        if training.seed is not None:
            session.torch.manual_seed(training.seed + self.index)
        sent = global_model.send(session)  # type: ignore[operator]
        if isinstance(sent, RemoteModule):  # an sy.Module: its forward runs here
            remote: RemoteModule | Pointer = sent
            pointer = sent.pointer
        elif layer_path(global_model) == CONTAINER:  # the user's own nn.Module class
            remote, pointer = RemoteModule(sent, global_model), sent
        else:  # one of torch's layers (nn.Sequential...): calling it is one remote call
            remote = pointer = sent
        loader = session.torch.utils.data.DataLoader(
            dataset, batch_size=training.batch_size, shuffle=training.shuffle
        )
        loader.meta["len"] = math.ceil(count / training.batch_size)  # iterating asks no more
        parameters = pointer.parameters()
        params = []
        for index in range(len(list(global_model.parameters()))):
            param = parameters[index]
            param.kind = "Tensor"
            params.append(param)
        mu = strategy.proximal_mu
        loss_fn = training.loss_fn

        def step(batch: Pointer, optimizer: Pointer, total: Pointer, *global_params: Pointer):
            # one message per batch: the batch's fields, the step, and the epoch's summed loss
            optimizer.zero_grad()
            loss = loss_fn(remote(batch[0]), batch[1])
            objective = loss
            if mu > 0:
                objective = loss + proximal_term(params, global_params, mu)
            objective.backward()
            optimizer.step()
            return total + loss.detach()

        remote.train()  # and it stays in training mode: the global model is evaluated here
        self._remote, self._pointer, self._loader, self._params = remote, pointer, loader, params
        self._plan = session.plan(step)

    async def _train(
        self,
        round_: int,
        global_model: nn.Module,
        training: LocalTraining,
        strategy: Strategy,
        names: RequestNames,
        left: Callable[[], float],
        board: ProgressBoard,
        *,
        secure: bool = False,
    ) -> Update:
        session, remote, loader, plan = self.session, self._remote, self._loader, self._plan
        pointer = self._pointer
        assert remote is not None and loader is not None and plan is not None
        assert pointer is not None
        assert self.samples is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        state = {k: v.detach() for k, v in global_model.state_dict().items()}
        pointer.load_state_dict(state)
        self.secure_objects = None
        # secure: the global model it starts from, copied at the owner (not sent a second time)
        start = self._start = pointer.copy() if secure else None
        optimizer = getattr(session.torch.optim, training.optimizer.__name__)(
            pointer.parameters(), **dict(training.optimizer_options)
        )
        global_params: list[Pointer] = []
        if strategy.proximal_mu > 0:
            global_params = [
                session.send_value(p.detach().clone()) for p in global_model.parameters()
            ]
        batches = math.ceil(self.samples / training.batch_size)
        self._done = (1, training.epochs, 0, batches)
        window: collections.deque[asyncio.Future[None]] = collections.deque()
        # Any: a pointer to the epoch's summed loss; its arithmetic (/ batches) is Pointer's,
        # set on the class at run time, which the type checker cannot see
        total: Any = None
        for epoch in range(1, training.epochs + 1):
            total = session.torch.zeros(())
            board.update(
                self.name, round=round_, state="training", epoch=epoch,
                epochs=training.epochs, batches=0, total_batches=batches, samples=self.samples,
                loss=None,
            )  # fmt: skip
            self.phase = f"training (epoch {epoch} of {training.epochs})"
            for index, batch in enumerate(loader):
                total = plan(batch, optimizer, total, *global_params)
                done = index + 1
                if done % CHUNK_BATCHES and done != batches:
                    continue
                barrier = self.aio.sync_soon()
                barrier.add_done_callback(self._progress(board, round_, epoch, done, started))
                window.append(barrier)
                while len(window) > WINDOW_CHUNKS:
                    await wait_for(window.popleft(), left(), f"training on {self.name}")
        assert total is not None
        if start is not None:  # secure: nothing is asked for; the round's messages name these
            self.phase = "finishing its training"
            await wait_for(self.aio.sync_soon(), left(), f"training on {self.name}")
            self.secure_objects = (start.id, pointer.id)
            secs = loop.time() - started
            board.update(self.name, state="trained", batches=batches, secs=secs)
            return Update(owner=self.name, state={}, samples=self.samples)
        loss_future = None
        if training.release_loss:
            loss_future = self.aio.request_soon(
                (total / batches).item(),
                name=names.loss(round_),
                reason="the mean training loss of this round's last local epoch",
                timeout_secs=decision_secs(left()),
            )
        update_future = self.aio.request_soon(
            pointer,
            name=names.update(round_),
            reason=f"the model trained on this owner's data in round {round_}, to average it",
            timeout_secs=decision_secs(left()),
        )
        self.phase = "waiting for the owner to release its update"
        board.update(self.name, state="waiting for the owner to release the update")
        released = await wait_for(update_future, left(), f"{names.update(round_)!r}")
        _check_released(released, names.update(round_))
        update = _checked_update(released.value, global_model)
        loss = None
        if loss_future is not None:
            released_loss = await wait_for(loss_future, left(), f"{names.loss(round_)!r}")
            if released_loss.accepted and isinstance(released_loss.value, float):
                loss = released_loss.value
        secs = loop.time() - started
        # the update came after every batch ran: the last barriers' counts may not have shown
        board.update(self.name, state="updated", batches=batches, loss=loss, secs=secs)
        return Update(owner=self.name, state=update, samples=self.samples, loss=loss)

    async def _train_dp(
        self,
        round_: int,
        global_model: nn.Module,
        dp: DpRound,
        data: str,
        left: Callable[[], float],
        board: ProgressBoard,
    ) -> Update:
        assert self.samples is not None
        started = asyncio.get_running_loop().time()
        self.phase = "waiting for its DP job to start"
        board.update(
            self.name, round=round_, state="DP job sent", epoch=0, epochs=0, batches=0,
            total_batches=0, samples=self.samples, loss=None,
        )  # fmt: skip

        def step(done: int, steps: int) -> None:
            self.phase = f"running its DP job: step {done} of {steps}"
            board.update(
                self.name, state="DP training", batches=done, total_batches=steps,
                secs=asyncio.get_running_loop().time() - started,
            )  # fmt: skip

        trained, released = await run_job(
            self.aio, global_model, dp, data=data, timeout_secs=left(), on_step=step
        )
        update = _checked_update(trained, global_model)
        epsilon = number(released, "epsilon")
        secs = asyncio.get_running_loop().time() - started
        board.update(self.name, state=f"updated, epsilon {epsilon:.3g}" if epsilon else "updated",
                     secs=secs)  # fmt: skip
        return Update(
            owner=self.name, state=update, samples=self.samples, epsilon=epsilon,
            charged=number(released, "charged"), remaining=number(released, "remaining"),
        )  # fmt: skip

    def _progress(
        self, board: ProgressBoard, round_: int, epoch: int, done: int, started: float
    ) -> Callable[[asyncio.Future[None]], None]:
        def show(barrier: asyncio.Future[None]) -> None:
            if barrier.cancelled() or barrier.exception() is not None:
                return
            self._done = (epoch, self._done[1], done, self._done[3])
            row = board.rows[self.name]
            if row.round == round_ and row.state == "training" and row.epoch == epoch:
                board.update(
                    self.name, batches=done, secs=asyncio.get_running_loop().time() - started
                )

        return show


def decision_secs(left: float) -> float:
    """How long a request may wait for the owner's decision with ``left`` seconds of the round
    to go: a little less, so that "not decided" arrives before the round gives up on it."""
    return max(0.0, left - min(1.0, left / 4))


def _check_released(released: Released, name: str) -> None:
    if released.status == "denied":
        raise LeftOut(Outcome.DENIED, f"request {name!r} was denied")
    if released.status == "timeout":
        raise LeftOut(Outcome.UNDECIDED, f"request {name!r} was not decided in time")


def _checked_update(value: object, global_model: nn.Module) -> dict[str, torch.Tensor]:
    """The released model's state, if it is the global model's shape with finite weights (an
    owner's release is not trusted to be either)."""
    if not isinstance(value, nn.Module):
        raise LeftOut(Outcome.FAILED, f"its update is a {type(value).__name__}, not a model")
    state = value.state_dict()
    expected = global_model.state_dict()
    if state.keys() != expected.keys():
        raise LeftOut(Outcome.FAILED, "its update does not have the global model's tensors")
    for key, tensor in expected.items():
        got = state[key]
        if got.shape != tensor.shape or got.dtype != tensor.dtype:
            raise LeftOut(
                Outcome.FAILED,
                f"its update's {key} is {got.dtype} {tuple(got.shape)}, not {tensor.dtype} "
                f"{tuple(tensor.shape)}",
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise LeftOut(Outcome.FAILED, f"its update's {key} is not finite")
    return {k: v.detach().clone() for k, v in state.items()}


__all__ = ["LeftOut", "LocalTraining", "Member"]
