"""``Federation``: one model trained across several owners' duets, round by round, in parallel.

A round: every owner that can take part trains the current global model on its own data (on its
machine, through pointers), and releases the trained model through its request queue; the
strategy aggregates the released updates into the next global model, which ``evaluate`` scores.
The owners run at the same time, each as a coroutine on duet's own event loop, where their
sessions' replies arrive (``fit_async`` awaits it from the caller's loop; ``fit`` blocks for
it). ``evaluate`` and the aggregation run on a worker thread; ``on_round`` and progress
listeners are called on duet's loop: keep them short.

With ``dp=DpRound(...)`` each owner's round is a DP training job instead (``dp.py``): the
owner runs DP-SGD on the global model under the scientist's privacy budget on its data and
releases the weights with the epsilon spent, which each round's report carries per owner.

With ``secure_aggregation=True`` (or ``SecureAggregation(...)``) the owners train through
pointers as above but release no model: the scientist relays a round of secure aggregation
between them (``secure.py``) and learns only the sum of their updates; an owner that drops after
the keys are agreed is reported as dropped, and an aborted round does not count (its report's
``note`` says why).

An owner is left out of a round, and the round goes on without it, when it is late (the
round's ``round_timeout_secs`` passed), denies or does not decide a request, fails, refuses a
DP job or its budget cannot take one ("over budget"), or is lost (it died or left: it is then
left out of every later round too). One still busy with an earlier
round's work (its replies are still due) is not asked. A round counts (changes the global model)
when at least ``min_owners`` updates arrived; its report says who was left out, and why.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import TypeVar

import torch
from torch import nn

from ..display.progress import Listener, ProgressBoard
from ..errors import SecureAggregationAborted, UsageError
from ..runtime import get_loop, on_loop_thread, run
from ..sessions.scientist import ScientistSession
from .dp import DpRound
from .history import History, LeftOut, Outcome, OwnerResult, RoundReport
from .member import LocalTraining, Member
from .names import RequestNames
from .secure import (
    SecureAggregation,
    SecureParty,
    aggregate_securely,
    averaged,
    check_settings,
)
from .strategies import FedAvg, Strategy, Update

log = logging.getLogger(__name__)
T = TypeVar("T")
Evaluate = Callable[[nn.Module], Mapping[str, float] | float]


class Federation:
    """Train ``model`` across ``owners`` (name -> a joined ``ScientistSession``).

    ``data``: the tag each owner published its training dataset under (a dataset of
    ``(input, target)`` pairs). ``training``: what each owner runs per round (``LocalTraining``:
    epochs, batch size, optimizer, loss). ``dp``: instead of ``training``, a DP-SGD job each
    owner runs per round under your privacy budget on its data (``DpRound``; the owner allows
    it with ``allow_federated_training(..., dp=...)``): each round's report carries the
    epsilon each owner's job spent. ``strategy``: FedAvg (default), FedProx, FedAdam or
    your own ``Strategy``. ``evaluate(model)``: scores the global model here after each round
    (a float, or a dict of metrics; a float is called "accuracy"). ``round_timeout_secs``: each
    round's deadline. ``name``: the prefix of every request's name (``"<name> round 3
    update"``), which the owners' handlers may match. ``show``: the progress display
    ("auto", "lines", "none"). ``on_round(report)`` is called after each round.
    ``secure_aggregation``: True or a ``SecureAggregation`` (clip, fixed point, threshold, each
    step's timeout): the owners' updates are summed by secure aggregation, at least 3 owners,
    each allowing it with ``allow_federated_training(..., secure_aggregation=True, owners=)``;
    the strategy then aggregates the one averaged update (FedAvg: it becomes the model).
    Raises UsageError for settings no round could run with.

    The global model is ``self.model`` (a local ``nn.Module``, updated after every round that
    counts); ``self.history`` holds every round's report.

        fed = sy.federated.Federation(model, {"a": duet_a, "b": duet_b}, data="digits",
                                      training=sy.federated.LocalTraining(epochs=1, batch_size=32))
        history = fed.fit(rounds=10)
    """

    def __init__(
        self,
        model: nn.Module,
        owners: Mapping[str, ScientistSession],
        *,
        data: str,
        training: LocalTraining | None = None,
        dp: DpRound | None = None,
        strategy: Strategy | None = None,
        evaluate: Evaluate | None = None,
        min_owners: int = 1,
        round_timeout_secs: float = 300.0,
        name: str = "federated",
        show: str = "auto",
        on_round: Callable[[RoundReport], None] | None = None,
        secure_aggregation: SecureAggregation | bool = False,
    ):
        if not owners:
            raise UsageError("a federation needs at least one owner")
        if not 1 <= min_owners <= len(owners):
            raise UsageError(f"min_owners must be between 1 and {len(owners)}, not {min_owners}")
        if not round_timeout_secs > 0:
            raise UsageError("round_timeout_secs must be more than 0")
        if not isinstance(model, nn.Module):
            raise UsageError(f"the model must be a torch nn.Module, not {type(model).__name__}")
        if dp is not None and training is not None:
            raise UsageError(
                "give training= (each owner trains through pointers) or dp= (each owner runs "
                "a DP job), not both"
            )
        if dp is not None and not isinstance(dp, DpRound):
            raise UsageError(f"dp must be a sy.federated.DpRound, not {type(dp).__name__}")
        if dp is not None and strategy is not None and strategy.proximal_mu > 0:
            raise UsageError(
                "FedProx adds a term to each owner's loss, which a DP job does not run: use "
                "FedAvg or FedAdam with dp="
            )
        self.secure = check_settings(secure_aggregation, len(owners))
        self._run = secrets.token_hex(4)  # round ids of this federation's run: never reused
        if self.secure is not None and dp is not None:
            raise UsageError("secure_aggregation sums plain rounds' updates: give no dp=")
        self.model = model
        self.members = [
            Member(owner, session, index=i) for i, (owner, session) in enumerate(owners.items())
        ]
        self.data = data
        self.training = training or LocalTraining()
        self.dp = dp
        self.strategy = strategy or FedAvg()
        self.evaluate = evaluate
        self.min_owners = min_owners
        self.round_timeout_secs = float(round_timeout_secs)
        self.names = RequestNames(name)
        self.on_round = on_round
        self.history = History(private=dp is not None)
        self.board = ProgressBoard([m.name for m in self.members], show=show, title=name)

    @property
    def owners(self) -> list[str]:
        return [m.name for m in self.members]

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(owner, OwnerProgress)`` on every progress change of an owner."""
        self.board.listeners.append(listener)

    # ---- running
    def fit(self, rounds: int) -> History:
        """Run ``rounds`` more rounds and return the history (blocking; see ``fit_async``).

        Each round is bounded by ``round_timeout_secs`` (plus ``evaluate``'s own time)."""
        return run(self._fit(rounds), timeout_secs=None, what="federated training")

    async def fit_async(self, rounds: int) -> History:
        """``fit`` for async code (``await fed.fit_async(10)`` in a notebook): the rounds run on
        duet's event loop while the caller's loop stays free."""
        return await on_duet_loop(self._fit(rounds))

    async def run_round(self) -> RoundReport:
        """One more round (the next in the history): train, release, aggregate, evaluate."""
        return await on_duet_loop(self._round())

    async def _fit(self, rounds: int) -> History:
        if rounds < 1:
            raise UsageError("rounds must be at least 1")
        self.board.start()
        try:
            for _ in range(rounds):
                await self._round()
        finally:
            self.board.stop()
        return self.history

    async def _round(self) -> RoundReport:
        # on duet's own loop, where the sessions' replies arrive: no thread hand-offs
        loop = asyncio.get_running_loop()
        round_ = len(self.history) + 1
        started = loop.time()
        deadline = started + self.round_timeout_secs
        results: dict[str, OwnerResult] = {}
        tasks: dict[asyncio.Task[Update], Member] = {}
        finished: dict[str, float] = {}
        for member in self.members:
            skipped = self._skip_reason(member)
            if skipped is not None:
                results[member.name] = OwnerResult(
                    member.name, skipped[0], member.samples, reason=skipped[1]
                )
                self.board.update(member.name, round=round_, state=f"left out: {skipped[0].value}")
                continue
            coroutine = member.run_round(
                round_, self.model, data=self.data, training=self.dp or self.training,
                strategy=self.strategy, names=self.names, deadline=deadline, board=self.board,
                secure=self.secure is not None,
            )  # fmt: skip
            task = asyncio.ensure_future(coroutine)
            task.add_done_callback(_timer(finished, member.name, loop, started))
            tasks[task] = member
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        updates: list[Update] = []
        try:
            for task, member in tasks.items():
                result = await self._result(task, member, finished)
                results[member.name] = result
                if result.included:
                    updates.append(task.result())
        finally:  # an error to raise: the other owners' coroutines end too
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        note = ""
        if self.secure is not None:
            counted, note = await self._aggregate_securely(round_, results, deadline)
        else:
            counted = len(updates) >= self.min_owners
            if counted:  # torch work off the loop: the sessions' heartbeats go on meanwhile
                await asyncio.to_thread(self._aggregate, updates)
        report = RoundReport(
            round=round_,
            owners={m.name: results[m.name] for m in self.members},
            counted=counted,
            min_owners=self.min_owners,
            metrics=await asyncio.to_thread(self._metrics),
            secs=loop.time() - started,
            secure=self.secure is not None,
            note=note,
        )
        self.history.append(report)
        log.info("%s", report.summary())
        if self.board.mode != "none":
            print(report.summary(), flush=True)
        if self.on_round is not None:
            self.on_round(report)
        return report

    async def _aggregate_securely(
        self, round_: int, results: dict[str, OwnerResult], deadline: float
    ) -> tuple[bool, str]:
        """Sum the trained owners' updates by secure aggregation (``secure.py``) into the next
        global model; the owners that dropped after key agreement are left out in
        ``results``. Returns (counted, why not)."""
        assert self.secure is not None
        loop = asyncio.get_running_loop()
        trained = [m for m in self.members if results[m.name].included]
        missing = [m.name for m in self.members if not results[m.name].included]
        if missing:  # every owner expects the whole roster: the round cannot start
            why = (
                f"secure aggregation not started: {', '.join(missing)} did not train, and "
                "every owner of the roster must take part until the keys are agreed"
            )
            for member in trained:
                results[member.name].outcome = Outcome.ABORTED
                results[member.name].reason = why
            return False, why
        parties = []
        for member in trained:
            assert member.secure_objects is not None
            start, model = member.secure_objects
            parties.append(
                SecureParty(member.name, member.aio, member.session.owner_id, start, model)
            )
        for member in trained:
            self.board.update(member.name, state="secure aggregation")
        try:
            outcome = await aggregate_securely(
                parties, self.model, self.secure, federation=self.names.federation,
                round_id=f"{self.names.federation} {self._run} round {round_}",
                left=lambda: deadline - loop.time(),
            )  # fmt: skip
        except SecureAggregationAborted as exc:
            for member in trained:
                results[member.name].outcome = Outcome.ABORTED
                results[member.name].reason = str(exc)
                self.board.update(member.name, state="aborted")
            return False, str(exc)
        for name, why in outcome.dropped.items():
            results[name].outcome = Outcome.DROPPED
            results[name].reason = why
            self.board.update(name, state="dropped")
        samples = sum(results[name].samples or 0 for name in outcome.survivors)
        counted = len(outcome.survivors) >= self.min_owners and samples > 0
        if counted:
            state = averaged(self.model, outcome, samples)
            summed = Update(owner="secure sum", state=state, samples=samples)
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            new = self.strategy.aggregate(current, [summed])
            with torch.no_grad():
                self.model.load_state_dict(new)
        return counted, ""

    def _skip_reason(self, member: Member) -> tuple[Outcome, str] | None:
        if member.gone:
            return Outcome.GONE, member.gone
        if not member.aio.connected:
            member.gone = "its session is closed"
            return Outcome.GONE, member.gone
        return None

    async def _result(
        self, task: asyncio.Task[Update], member: Member, finished: dict[str, float]
    ) -> OwnerResult:
        name = member.name
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            outcome = Outcome.BUSY if member.phase.startswith("catching up") else Outcome.LATE
            reason = (
                f"no update within the round's {self.round_timeout_secs:g} s ({member.describe()})"
            )
            self.board.update(name, state=f"left out: {outcome.value}")
            return OwnerResult(name, outcome, member.samples, secs=self.round_timeout_secs,
                               reason=reason)  # fmt: skip
        secs = finished.get(name, 0.0)
        exc = task.exception() if not task.cancelled() else None
        if exc is None and not task.cancelled():
            update = task.result()
            return OwnerResult(
                name, Outcome.UPDATED, update.samples, update.loss, secs, epsilon=update.epsilon,
                charged=update.charged, remaining=update.remaining,
            )  # fmt: skip
        if isinstance(exc, LeftOut):
            self.board.update(name, state=f"left out: {exc.outcome.value}")
            return OwnerResult(name, exc.outcome, member.samples, secs=secs, reason=exc.reason)
        assert exc is not None
        raise exc  # not the owner's doing (a mistake in the model or the loss): the caller's

    def _aggregate(self, updates: list[Update]) -> None:
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        new = self.strategy.aggregate(current, updates)
        with torch.no_grad():
            self.model.load_state_dict(new)

    def _metrics(self) -> dict[str, float]:
        if self.evaluate is None:
            return {}
        model = copy.deepcopy(self.model)
        was_training = model.training
        model.eval()
        try:
            scored = self.evaluate(model)
        finally:
            model.train(was_training)
        if isinstance(scored, Mapping):
            return {str(k): float(v) for k, v in scored.items()}
        return {"accuracy": float(scored)}

    def __repr__(self) -> str:
        private = ", DP-SGD jobs" if self.dp is not None else ""
        private += ", secure aggregation" if self.secure is not None else ""
        return (
            f"<Federation of {len(self.members)} owners ({', '.join(self.owners)}), "
            f"{type(self.strategy).__name__}{private}, {len(self.history)} rounds run>"
        )


def _timer(
    finished: dict[str, float], name: str, loop: asyncio.AbstractEventLoop, started: float
) -> Callable[[asyncio.Task[Update]], None]:
    def record(_: asyncio.Task[Update]) -> None:
        finished.setdefault(name, loop.time() - started)

    return record


async def on_duet_loop(coroutine: Coroutine[object, None, T]) -> T:
    """Await ``coroutine`` run on duet's event loop (where the sessions live), from any loop."""
    if on_loop_thread():
        return await coroutine
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, get_loop()))


__all__ = ["Federation"]
