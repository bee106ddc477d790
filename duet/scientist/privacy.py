"""``duet.privacy``: DP statistics and DP-SGD jobs the owner runs under your privacy budget.

The owner decides nothing by hand here: each release is charged to your budget on the dataset
(per published tag, set by the owner) and released at once while it lasts; over budget, it is
refused with the numbers (QuotaExceeded: ``needs epsilon 0.6, 0.4 left at delta 1e-05``) and
nothing runs. Only a published dataset *as it is* can be asked about: pass the owner's pointer
(``duet.store["ages"]``), not a value computed from it.

    ages = duet.store["ages"]
    duet.privacy.mean(ages, bounds=(0, 100), epsilon=0.5)   # a float
    duet.privacy.budget("ages")                             # {"remaining": 0.5, ...}
    job = duet.privacy.train(model, data="digits", lr=0.1, batch_size=64, epochs=1,
                             max_grad_norm=1.0, noise_multiplier=1.1)
    trained, epsilon = job.wait(timeout_secs=600)

Every call waits at most ``timeout_secs`` (the session's default when None) and raises
DuetTimeout after it; errors are the owner's, raised as duet's classes.
"""

from __future__ import annotations

import concurrent.futures
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar, cast, overload

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from ..errors import DuetError, RequestDenied, UsageError
from ..protocol.allowlist import type_key
from ..protocol.dp_messages import DpBudget, DpStatistic, DpTraining
from ..protocol.messages import Reply
from ..protocol.modules import match_dtypes
from .module import RemoteModule, _rebuild
from .pointer import Pointer
from .tables import Column, TablePointer

if TYPE_CHECKING:
    from .client import PointerClient

Bounds = tuple[float, float]
#: what a DP statistic reads: a published tensor, a published table, or one of its columns
Data = Pointer | TablePointer | Column
#: a group key (a number: the key column's values are numbers)
Key = int | float
T = TypeVar("T")
Trained = tuple[nn.Module | dict[str, torch.Tensor], float]
_Answer = concurrent.futures.Future[tuple[Reply, list[memoryview]]]


DpMessage = DpStatistic | DpTraining | DpBudget


def _message(build: type[DpMessage], **fields: object) -> DpMessage:
    """Validated here as the owner will: a wrong setting is a UsageError before anything is
    sent (the owner checks again, and more)."""
    try:
        return build.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        got = repr(first.get("input"))[:100]
        raise UsageError(f"{where}: {first.get('msg')} (got {got})") from None


@dataclass(frozen=True)
class DpCall(Generic[T]):
    """One DP message and how its answer is read, whoever waits for it: ``duet.privacy``
    (blocking) and ``AsyncSession.privacy`` (awaitable) send the same messages and read the
    same answers. ``build(rid)`` makes the message; ``finish`` reads the owner's answer (a
    dict, see ``answer``); ``what`` names the operation in errors."""

    build: Callable[[int], DpMessage]
    finish: Callable[[dict[str, object]], T]
    what: str


def answer(client: PointerClient, reply: Reply, buffers: list[memoryview], what: str) -> dict:
    """The owner's answer to a DP message: its error raised (QuotaExceeded over budget), or
    the dict it released (nothing from the wire is trusted: anything else is a DuetError)."""
    client.raise_for(reply)
    if reply.status in ("denied", "timeout"):  # a release the owner reviews by hand
        raise RequestDenied(f"{what}: {reply.note}")
    value = client.decode(reply.value, buffers)
    if not isinstance(value, dict):
        raise DuetError(f"{what}: the owner's reply carries no result")
    return value


def _value(released: dict[str, object]) -> object:
    if "value" not in released:
        raise DuetError("the owner's reply to a DP statistic carries no value")
    return released["value"]


class TrainingJob:
    """A DP-SGD job the owner runs: ``wait()`` returns the trained model and its epsilon.
    ``progress`` is the owner's last word on it (``"DP training: step 40 of 100"``);
    ``result``, once it ended, every number the owner released with it (``epsilon``,
    ``charged``: what it added to your spend, ``remaining``, ``delta``, ``steps``...).
    ``on_progress(text)``, if set, is called with each progress notice (on duet's loop)."""

    def __init__(self, privacy: ScientistPrivacy, template: nn.Module | None, keep: object):
        self._privacy = privacy
        self._future: _Answer | None = None
        self._template = template
        self._keep = keep  # the model sent for the job stays on the owner's side until it ends
        self.progress = ""
        self.result: dict[str, object] | None = None
        self.on_progress: Callable[[str], None] | None = None

    def _told(self, text: str) -> None:  # on the loop: the owner's progress notices
        self.progress = text
        if self.on_progress is not None:
            self.on_progress(text)

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def wait(self, *, timeout_secs: float | None = None) -> Trained:
        """The trained model (your local copy's class with the released weights loaded; the
        weights alone, a state dict, when you passed a pointer to a model of no known class)
        and the epsilon Opacus's accountant reports for the run. Raises the owner's error
        (QuotaExceeded over budget), DuetTimeout."""
        if self._future is None:
            raise UsageError("this job was never sent")
        client = self._privacy._client
        reply, buffers = client.wait(self._future, timeout_secs=timeout_secs, what=WHAT_JOB)
        return self._finish(answer(client, reply, buffers, WHAT_JOB))

    def _finish(self, released: dict[str, object]) -> Trained:
        """The model and epsilon of the owner's answer (checked: weights, a finite epsilon)."""
        self.result, self._keep = released, None  # a model sent for the job is freed now
        state = released.get("state")
        if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise DuetError(f"{WHAT_JOB}: the owner's reply carries no weights")
        weights = cast(dict[str, torch.Tensor], dict(state))
        epsilon = released.get("epsilon")
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
            raise DuetError(f"{WHAT_JOB}: the owner's reply carries no epsilon")
        if self._template is None:
            return weights, float(epsilon)
        if hasattr(self._template, "_sy_init"):  # an sy.Module: built as it was
            model = _rebuild(self._template)
        else:
            model = copy.deepcopy(self._template)
        try:
            match_dtypes(model, weights)
            model.load_state_dict(weights)
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise DuetError(
                f"{WHAT_JOB}: the released weights do not fit the model: {exc}"
            ) from None
        return model, float(epsilon)


WHAT_JOB = "the DP training job"


class ScientistPrivacy:
    """``duet.privacy`` on a scientist's session. Every DP message is a ``DpCall`` made by
    the ``*_call`` methods (shared with ``AsyncSession.privacy``) and waited for here."""

    def __init__(self, client: PointerClient):
        self._client = client

    # ---- statistics
    @overload
    def mean(
        self,
        data: Data,
        *,
        bounds: Bounds,
        epsilon: float,
        by: None = None,
        keys: None = None,
        timeout_secs: float | None = None,
    ) -> float: ...

    @overload
    def mean(
        self,
        data: Data,
        *,
        bounds: Bounds,
        epsilon: float,
        by: str,
        keys: list[Key],
        timeout_secs: float | None = None,
    ) -> dict[Key, float]: ...

    def mean(
        self,
        data: Data,
        *,
        bounds: Bounds,
        epsilon: float,
        by: str | None = None,
        keys: list[Key] | None = None,
        timeout_secs: float | None = None,
    ) -> float | dict[Key, float]:
        """The mean of the published 1-D tensor ``data`` (or a published table's column,
        ``births["weight_g"]``), each value clamped to ``bounds``, epsilon-DP (OpenDP's
        Laplace noise on a sum and a count). With ``by`` (a column of the same table) and
        ``keys`` (the groups you ask about): ``{key: mean}`` for each key, epsilon in all
        (sequential composition over the keys: each group's mean gets epsilon / len(keys))."""
        if by is not None:
            return self._grouped("mean", data, bounds, epsilon, by, keys, timeout_secs)
        return float(
            cast(float, self._statistic("mean", data, bounds, epsilon, None, timeout_secs, keys))
        )

    @overload
    def sum(
        self,
        data: Data,
        *,
        bounds: Bounds,
        epsilon: float,
        by: None = None,
        keys: None = None,
        timeout_secs: float | None = None,
    ) -> float: ...

    @overload
    def sum(
        self,
        data: Data,
        *,
        bounds: Bounds,
        epsilon: float,
        by: str,
        keys: list[Key],
        timeout_secs: float | None = None,
    ) -> dict[Key, float]: ...

    def sum(
        self,
        data: Data,
        *,
        bounds: Bounds,
        epsilon: float,
        by: str | None = None,
        keys: list[Key] | None = None,
        timeout_secs: float | None = None,
    ) -> float | dict[Key, float]:
        """The sum of ``data``'s values clamped to ``bounds``, epsilon-DP; by group as
        ``mean``'s (epsilon / len(keys) a group)."""
        if by is not None:
            return self._grouped("sum", data, bounds, epsilon, by, keys, timeout_secs)
        return float(
            cast(float, self._statistic("sum", data, bounds, epsilon, None, timeout_secs, keys))
        )

    @overload
    def count(
        self,
        data: Data,
        *,
        epsilon: float,
        by: None = None,
        keys: None = None,
        timeout_secs: float | None = None,
    ) -> int: ...

    @overload
    def count(
        self,
        data: Data,
        *,
        epsilon: float,
        by: str,
        keys: list[Key],
        timeout_secs: float | None = None,
    ) -> dict[Key, int]: ...

    def count(
        self,
        data: Data,
        *,
        epsilon: float,
        by: str | None = None,
        keys: list[Key] | None = None,
        timeout_secs: float | None = None,
    ) -> int | dict[Key, int]:
        """The number of rows of ``data`` (a table's rows), epsilon-DP (may come out below
        zero). With ``by`` and ``keys``: ``{key: count}``, the rows whose ``by`` equals each
        key (OpenDP's count by categories: one row moves one count, so all of them cost
        epsilon); a row with a key you did not name counts nowhere."""
        if by is not None:
            counts = self._grouped("count", data, None, epsilon, by, keys, timeout_secs)
            return {k: int(v) for k, v in counts.items()}
        return int(
            cast(int, self._statistic("count", data, None, epsilon, None, timeout_secs, keys))
        )

    def histogram(
        self,
        data: Data,
        *,
        bins: int = 10,
        bounds: Bounds,
        epsilon: float,
        timeout_secs: float | None = None,
    ) -> list[int]:
        """Counts of ``data``'s values in ``bins`` equal bins over ``bounds``, epsilon-DP."""
        counts = self._statistic("histogram", data, bounds, epsilon, bins, timeout_secs)
        return [int(c) for c in cast(list[int], counts)]

    def _grouped(
        self,
        kind: str,
        data: Data,
        bounds: Bounds | None,
        epsilon: float,
        by: str,
        keys: list[Key] | None,
        timeout_secs: float | None,
    ) -> dict[Key, float]:
        """``{key: value}`` for a statistic by group, the owner's list in the keys' order."""
        if not isinstance(data, TablePointer | Column):
            raise UsageError(
                "by= groups the rows of a published table; pass the table or one of its "
                f"columns (births['weight_g']), not {type(data).__name__}"
            )
        if isinstance(keys, range):
            keys = list(keys)
        if not isinstance(keys, list | tuple):
            raise UsageError(
                f"by={by!r} needs keys=[...]: the groups you ask about (which groups the "
                "owner's data holds is not shown)"
            )
        wire = [k.item() if isinstance(k, np.generic) else k for k in keys]  # numpy's numbers
        values = self._statistic(kind, data, bounds, epsilon, None, timeout_secs, wire, by)
        if not isinstance(values, list) or len(values) != len(keys):
            raise DuetError(f"the owner's reply to the DP {kind} by {by!r} is malformed")
        return {key: float(cast(float, v)) for key, v in zip(keys, values, strict=True)}

    def quote(
        self,
        kind: str,
        target: Data | nn.Module | RemoteModule,
        *,
        epsilon: float | None = None,
        bounds: Bounds | None = None,
        bins: int | None = None,
        by: str | None = None,
        keys: list[Key] | None = None,
        timeout_secs: float | None = None,
        **training: object,
    ) -> dict[str, object]:
        """What a release would cost now, nothing run: ``quote("mean", ages, bounds=...,
        epsilon=0.5)`` or ``quote("train", model, data="digits", lr=..., ...)`` (train's
        arguments). Returns ``epsilon`` (its own, at the budget's delta), ``charge`` (what it
        would add to your spend), ``remaining``, ``remaining_after``, ``fits``, ``delta``; a
        training quote also ``noise_multiplier`` (the noise the job would run with: the one
        the owner picks for ``epsilon=``) and ``epochs_affordable`` (how many epochs at that
        noise and batch size would fit what remains now; 0 when not even one does)."""
        call = self.quote_call(
            kind, target, epsilon=epsilon, bounds=bounds, bins=bins, by=by, keys=keys, **training
        )
        return self._run(call, timeout_secs)

    def budget(self, data: str, *, timeout_secs: float | None = None) -> dict[str, object]:
        """Your budget on the published dataset tagged ``data``: ``budget`` (its epsilon, None
        when the owner set none), ``delta``, ``spent``, ``remaining``."""
        return self._run(self.budget_call(data), timeout_secs)

    def history(
        self, data: str, *, last: int = 100, timeout_secs: float | None = None
    ) -> list[dict[str, object]]:
        """Your newest ``last`` (at most 10,000) charges on the published dataset tagged
        ``data``, oldest first, as the owner's ledger holds them: ``entry``, ``mechanism``
        (its kind and settings), ``epsilon`` (that charge alone, at the budget's delta; the
        spend composes to less than their sum), ``state`` (reserved, committed, or aborted:
        denied by the owner, not charged), ``at`` and ``settled_at`` (UTC)."""
        return self._run(self.history_call(data, last=last), timeout_secs)

    # ---- training
    def train(
        self,
        model: nn.Module | RemoteModule | Pointer,
        *,
        data: str,
        loss: str = "cross_entropy",
        optimizer: str = "sgd",
        lr: float,
        batch_size: int,
        epochs: int = 1,
        max_grad_norm: float,
        noise_multiplier: float | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
    ) -> TrainingJob:
        """Ask the owner to train ``model`` with DP-SGD (Opacus) on its dataset tagged
        ``data``; give exactly one of ``noise_multiplier`` and ``epsilon`` (the owner then
        picks the noise). ``model``: a local model (sent for the job), one you sent
        (``model.send(duet)``), or a pointer to one. ``delta`` is the budget's; give it only to
        check. Returns at once; ``job.wait()`` returns ``(model, epsilon)``."""
        call, job = self.training_call(
            model,
            data=data, loss=loss, optimizer=optimizer, lr=lr, batch_size=batch_size,
            epochs=epochs, max_grad_norm=max_grad_norm, noise_multiplier=noise_multiplier,
            epsilon=epsilon, delta=delta,
        )  # fmt: skip
        job._future = self._client.request_async(call.build)
        return job

    # ---- the calls (each message and how its answer is read), for any front end
    def statistic_call(
        self,
        kind: str,
        data: Data,
        *,
        bounds: Bounds | None,
        epsilon: float,
        bins: int | None = None,
        by: str | None = None,
        keys: list[Key] | None = None,
        timeout_secs: float | None = None,
    ) -> DpCall[object]:
        """``timeout_secs``: how long an owner who reviews DP releases by hand may take."""
        target, column = self._target(data), self._column(data)
        return DpCall(
            lambda rid: _message(
                DpStatistic,
                rid=rid,
                kind=kind,
                target=target,
                bounds=bounds,
                epsilon=epsilon,
                bins=bins,
                column=column,
                by=by,
                keys=None if keys is None else list(keys),
                timeout_secs=timeout_secs,
            ),  # fmt: skip
            _value,
            f"the DP {kind}",
        )

    def quote_call(
        self,
        kind: str,
        target: Data | nn.Module | RemoteModule,
        *,
        epsilon: float | None = None,
        bounds: Bounds | None = None,
        bins: int | None = None,
        by: str | None = None,
        keys: list[Key] | None = None,
        **training: object,
    ) -> DpCall[dict[str, object]]:
        if kind == "train":
            build, _, sent = self._training_message(target, epsilon=epsilon, quote=True, **training)
            kept = [sent]  # a model sent for the quote stays on the owner's side until priced

            def priced(released: dict[str, object]) -> dict[str, object]:
                kept.clear()
                return released

            return DpCall(build, priced, "the quote")
        if training:
            raise UsageError(f"a {kind} quote takes no {sorted(training)}")
        if epsilon is None:
            raise UsageError("give the epsilon to quote")
        object_id, column = self._target(target), self._column(target)
        return DpCall(
            lambda rid: _message(
                DpStatistic,
                rid=rid,
                kind=kind,
                target=object_id,
                bounds=bounds,
                epsilon=epsilon,
                bins=bins,
                quote=True,
                column=column,
                by=by,
                keys=None if keys is None else list(keys),
            ),  # fmt: skip
            lambda released: released,
            "the quote",
        )

    def budget_call(self, data: str) -> DpCall[dict[str, object]]:
        return DpCall(
            lambda rid: _message(DpBudget, rid=rid, data=data),
            lambda released: released,
            "the budget query",
        )

    def history_call(self, data: str, *, last: int = 100) -> DpCall[list[dict[str, object]]]:
        def charges(released: dict[str, object]) -> list[dict[str, object]]:
            listed = released.get("charges")
            if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
                raise DuetError("the owner's reply to the history query lists no charges")
            return cast(list[dict[str, object]], listed)

        return DpCall(
            lambda rid: _message(DpBudget, rid=rid, data=data, charges=last),
            charges,
            "the history query",
        )

    def training_call(
        self, model: nn.Module | RemoteModule | Pointer, **settings: object
    ) -> tuple[DpCall[Trained], TrainingJob]:
        """The DP job's message (train's settings) and the job that reads its answer: the
        owner's progress notices reach ``job`` from the moment the message is built."""
        build, template, keep = self._training_message(model, quote=False, **settings)
        job = TrainingJob(self, template, keep)
        listeners = self._client.notice_listeners

        def sent(rid: int) -> DpMessage:
            message = build(rid)
            listeners[rid] = job._told  # before it is sent: no progress notice is missed
            return message

        return DpCall(sent, job._finish, WHAT_JOB), job

    def _training_message(
        self, model: object, *, quote: bool, **settings: object
    ) -> tuple[Callable[[int], DpMessage], nn.Module | None, object]:
        template: nn.Module | None = None
        keep: object = None
        if isinstance(model, RemoteModule):
            template, pointer = model._template, model.pointer
        elif isinstance(model, nn.Module):
            template = model
            object_id = self._client.put(model)
            pointer = keep = self._client.pointer(object_id, type_key(model), {}, owned=True)
        elif isinstance(model, Pointer):
            pointer = model
        else:
            raise UsageError(
                f"a DP job trains a model (an nn.Module, or one sent to the owner), not "
                f"{type(model).__name__}"
            )
        model_id = pointer.id
        fields = {"loss": "cross_entropy", "optimizer": "sgd", "epochs": 1, **settings}

        def build(rid: int) -> DpMessage:
            return _message(DpTraining, rid=rid, model=model_id, quote=quote, **fields)

        return build, template, keep

    # ---- the wire
    def _target(self, data: object) -> str:
        if isinstance(data, TablePointer):
            return data.id
        if isinstance(data, Column):
            return data.table.id
        if not isinstance(data, Pointer):
            raise UsageError(
                f"a DP statistic takes a pointer to the owner's published dataset "
                f"(duet.store['ages']), not {type(data).__name__}"
            )
        return data.id

    @staticmethod
    def _column(data: object) -> str | None:
        """The column a statistic reads: a table's column, or None (a tensor, a whole table)."""
        return data.name if isinstance(data, Column) else None

    def _statistic(
        self,
        kind: str,
        data: Data,
        bounds: Bounds | None,
        epsilon: float,
        bins: int | None,
        timeout_secs: float | None,
        keys: list[Key] | None = None,
        by: str | None = None,
    ) -> object:
        wait = self._client.default_timeout_secs if timeout_secs is None else timeout_secs
        call = self.statistic_call(
            kind, data, bounds=bounds, epsilon=epsilon, bins=bins, by=by, keys=keys,
            timeout_secs=wait,  # an owner who reviews it by hand decides within it
        )  # fmt: skip
        return self._run(call, wait)

    def _run(self, call: DpCall[T], timeout_secs: float | None) -> T:
        future = self._client.request_async(call.build)
        reply, buffers = self._client.wait(future, timeout_secs=timeout_secs, what=call.what)
        return call.finish(answer(self._client, reply, buffers, call.what))


__all__ = ["DpCall", "ScientistPrivacy", "TrainingJob", "answer"]
