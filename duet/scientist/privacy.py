"""``duet.privacy``: DP statistics and DP-SGD jobs the owner runs under your privacy budget.

The owner decides nothing by hand here: each release is charged to your budget on the dataset
(per published tag, set by the owner) and released at once while it lasts; over budget, it is
refused with the numbers (QuotaExceeded: ``needs epsilon 0.6, 0.4 left at delta 1e-05``) and
nothing runs. Only a published dataset *as it is* can be asked about: pass the owner's pointer
(``duet.store["ages"]``), not a value computed from it.

    ages = duet.store["ages"]
    duet.privacy.mean(ages, bounds=(0, 100), epsilon=0.5)   # a float
    births = duet.store["births"]                           # a published table
    duet.privacy.mean(births["weight_g"], bounds=(400, 6000), epsilon=0.5)
    duet.privacy.count(births, by="year", keys=[2018, 2019], epsilon=0.5)  # {2018: n, 2019: n}
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
from typing import TYPE_CHECKING, cast, overload

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from ..errors import DuetError, RequestDenied, UsageError
from ..protocol.allowlist import type_key
from ..protocol.messages import DpBudget, DpStatistic, DpTraining, Reply
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


class TrainingJob:
    """A DP-SGD job the owner runs: ``wait()`` returns the trained model and its epsilon.
    ``progress`` is the owner's last word on it (``"DP training: step 40 of 100"``)."""

    def __init__(self, privacy: ScientistPrivacy, template: nn.Module | None, keep: object):
        self._privacy = privacy
        self._future: _Answer | None = None
        self._template = template
        self._keep = keep  # the model sent for the job stays on the owner's side until it ends
        self.progress = ""
        self.result: dict[str, object] | None = None

    def _told(self, text: str) -> None:  # on the loop: the owner's progress notices
        self.progress = text

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def wait(
        self, *, timeout_secs: float | None = None
    ) -> tuple[nn.Module | dict[str, torch.Tensor], float]:
        """The trained model (your local copy's class with the released weights loaded; the
        weights alone, a state dict, when you passed a pointer to a model of no known class)
        and the epsilon Opacus's accountant reports for the run. Raises the owner's error
        (QuotaExceeded over budget), DuetTimeout."""
        if self._future is None:
            raise UsageError("this job was never sent")
        released = self._privacy._answer(self._future, timeout_secs, "the DP training job")
        self.result, self._keep = released, None  # a model sent for the job is freed now
        state = released.get("state")
        if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise DuetError("the owner's reply to a DP job carries no weights")
        weights = cast(dict[str, torch.Tensor], dict(state))
        epsilon = float(cast(float, released["epsilon"]))
        if self._template is None:
            return weights, epsilon
        if hasattr(self._template, "_sy_init"):  # an sy.Module: built as it was
            model = _rebuild(self._template)
        else:
            model = copy.deepcopy(self._template)
        match_dtypes(model, weights)
        model.load_state_dict(weights)
        return model, epsilon


class ScientistPrivacy:
    """``duet.privacy`` on a scientist's session."""

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
        if kind == "train":
            build, _, sent = self._training_message(target, epsilon=epsilon, quote=True, **training)
            future = self._client.request_async(build)
            quoted = self._answer(future, timeout_secs, "the quote")
            del sent  # a model sent for the quote stays on the owner's side until it is priced
            return quoted
        if training:
            raise UsageError(f"a {kind} quote takes no {sorted(training)}")
        if epsilon is None:
            raise UsageError("give the epsilon to quote")
        object_id = self._target(target)
        column = self._column(target)
        return self._answer(
            self._client.request_async(
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
                )  # fmt: skip
            ),
            timeout_secs,
            "the quote",
        )

    def budget(self, data: str, *, timeout_secs: float | None = None) -> dict[str, object]:
        """Your budget on the published dataset tagged ``data``: ``budget`` (its epsilon, None
        when the owner set none), ``delta``, ``spent``, ``remaining``."""
        future = self._client.request_async(lambda rid: _message(DpBudget, rid=rid, data=data))
        return self._answer(future, timeout_secs, "the budget query")

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
        build, template, keep = self._training_message(
            model,
            data=data, loss=loss, optimizer=optimizer, lr=lr, batch_size=batch_size,
            epochs=epochs, max_grad_norm=max_grad_norm, noise_multiplier=noise_multiplier,
            epsilon=epsilon, delta=delta, quote=False,
        )  # fmt: skip
        job = TrainingJob(self, template, keep)
        listeners = self._client.notice_listeners

        def sent(rid: int) -> DpMessage:
            message = build(rid)
            listeners[rid] = job._told  # before it is sent: no progress notice is missed
            return message

        job._future = self._client.request_async(sent)
        return job

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
        target = self._target(data)
        wait = self._client.default_timeout_secs if timeout_secs is None else timeout_secs
        column = self._column(data)
        future = self._client.request_async(
            lambda rid: _message(
                DpStatistic,
                rid=rid,
                kind=kind,
                target=target,
                bounds=bounds,
                epsilon=epsilon,
                bins=bins,
                timeout_secs=wait,  # an owner who reviews it by hand decides within it
                column=column,
                by=by,
                keys=None if keys is None else list(keys),
            )  # fmt: skip
        )
        return self._answer(future, wait, f"the DP {kind}")["value"]

    def _answer(self, future: _Answer, timeout_secs: float | None, what: str) -> dict[str, object]:
        reply, buffers = self._client.wait(future, timeout_secs=timeout_secs, what=what)
        self._client.raise_for(reply)
        if reply.status in ("denied", "timeout"):  # a release the owner reviews by hand
            raise RequestDenied(f"{what}: {reply.note}")
        value = self._client.decode(reply.value, buffers)
        if not isinstance(value, dict):
            raise DuetError(f"{what}: the owner's reply carries no result")
        return value


__all__ = ["ScientistPrivacy", "TrainingJob"]
