"""DP releases for one scientist (issue 19): statistics and DP-SGD jobs under its budget.

Run on the scientist's worker thread, in order with its other actions (service.py routes
``DpStatistic``, ``DpTraining`` and ``DpBudget`` here). A DP release is not a request: the
budget is the decision, so nothing reaches ``owner.requests`` (unless the owner set the budget
with ``review=True``: then step 5 ends in a request the owner decides). Each one:

1. resolves what the scientist names as it may see it (another's object, or one the owner did
   not list, reads as missing) and fails closed unless it is a published dataset *as it is*:
   the owner's published object itself (a statistic) or the one published object a tag names
   (a job). A value derived from it (``x * 1000``, ``x[0:1]``, ``x[5].repeat(1000)``) would
   break the one-row neighbouring relation the guarantee rests on, so it is refused;
2. checks the owner's access rules for a release (the policy chain a get with a request uses);
3. checks every setting that does not depend on the owner's data (the kind, bounds, bins, loss
   and optimizer names, the model's layers, the dataset's type and shape as the store's listing
   shows them) and prices the mechanism, before anything is charged;
4. reserves the price in the ledger for (scientist, the dataset's tag): over budget, or no
   budget, refuses with the numbers and nothing runs;
5. runs it and commits the charge. Once it has run on the owner's data the charge stays even if
   it failed (whether it failed may depend on the data: NaN in it, say), and the failure is
   told in generic words that say nothing about the data. Under a budget the owner reviews,
   the result waits in ``owner.requests`` with its price (the charge still reserved): accepted,
   it is committed and sent; denied or timed out, nothing leaves and the charge is aborted;
6. records the charge (``privacy``) and the release (``release``, ``decided_by`` "privacy
   budget") in the audit log, and replies with the noisy value (or the trained weights) and
   numbers that depend only on the settings and the ledger: the charge, what remains, delta.

A dataset's budget is its tag's, so an object under DP must carry exactly one tag (with two,
one object would have two budgets to draw on).

A published table (a DataFrame, duet/privacy/tables.py) is named here and nowhere else (the
executor's ``visible`` refuses it to every other message): a statistic of one of its columns,
or by the groups of a column for the keys the scientist gives, checked against the columns the
listing shows and priced before any charge, as above.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from ..errors import DuetError, QuotaExceeded, RemoteError, UsageError
from ..protocol.dp_messages import DpBudget, DpStatistic, DpTraining
from ..protocol.messages import ErrorInfo, Notice, Reply
from . import derivation
from .publishable import is_table
from .requests import DpPrice, Request, RequestStatus, new_request_id
from .snapshot import Snapshot
from .store import OWNER, StoredObject

if TYPE_CHECKING:
    from ..privacy import Mechanism, Reservation, Standing
    from .privacy_desk import PrivacyDesk
    from .service import PeerService

log = logging.getLogger(__name__)

DECIDED_BY = "privacy budget"
AS_IT_IS = (
    "a DP statistic runs on a published dataset as it is (the owner's object itself, as "
    "duet.store lists it), never on a value computed from it: {what} would break the one-row "
    "neighbouring relation the guarantee rests on (x[5].repeat(1000) is one row counted a "
    "thousand times). Pass the owner's pointer itself, e.g. duet.store['ages']"
)
NOT_COMPUTED = (
    "the statistic could not be computed on the owner's data (the owner's data is not shown "
    "in this error); the charge stays, as whether it fails may depend on the data"
)
NOT_TRAINED = (
    "the DP training job failed on the owner's data (details are not shown, as they may depend "
    "on the data); the charge stays"
)
PROGRESS_NOTICES = 10  # at most this many progress notices a job
MAX_EPOCHS = 10_000  # what a DpTraining message may ask for (protocol/messages.py)


class PrivateReleases:
    """Answers one scientist's DP messages (``service``: its PeerService; ``desk``: the
    owner's budgets)."""

    def __init__(self, service: PeerService, desk: PrivacyDesk):
        self.service = service
        self.desk = desk

    # ---- what the service calls
    def handle(
        self, message: DpStatistic | DpTraining | DpBudget, out_buffers: list[memoryview]
    ) -> Reply | Notice:
        """The reply to one DP message: a value (its tensors' bytes appended to the frame's
        ``out_buffers``), or an error naming what was refused; or, when the owner reviews the
        release by hand, a notice that it waits (the reply follows the owner's decision)."""
        try:
            if isinstance(message, DpStatistic):
                return self._statistic(message, out_buffers)
            if isinstance(message, DpTraining):
                return self._training(message, out_buffers)
            return self._budget(message)
        except DuetError as exc:
            self._refused(message, exc)
            return self._error(message.rid, exc)

    # ---- naming the data
    def _published(self, object_id: str) -> tuple[StoredObject, str]:
        """The owner's published object ``object_id`` (as the scientist may see it) and the
        tag its budget is kept under."""
        # another's, unlisted: "does not exist"; a published table: named here only
        entry = self.service.executor.visible(object_id, table=True)
        if entry.owner != OWNER:
            what = f"object {object_id} (made by you" + (f" with {entry.op})" if entry.op else ")")
            raise UsageError(AS_IT_IS.format(what=what))
        return entry, _tag(entry)

    def _tagged(self, data: str, *, one: bool = True) -> tuple[StoredObject, str]:
        """The one published object tagged ``data`` this scientist may see (``one=False``:
        the first of them; a budget is the tag's, whatever it names)."""
        peer, policy = self.service.peer, self.service.policy
        found = [
            e
            for e in self.service.store.published()
            if e.pointable and data in e.tags and policy.allows_name(peer, e)
        ]
        if not found:
            raise UsageError(f"no published dataset is tagged {data!r} (see duet.store)")
        if one and len(found) > 1:
            raise UsageError(
                f"{len(found)} published objects are tagged {data!r}; a DP job runs on one "
                "dataset: the owner publishes it under a tag of its own"
            )
        policy.check_name(peer, found[0])
        return found[0], _tag(found[0])

    # ---- statistics
    def _statistic(self, message: DpStatistic, out_buffers: list[memoryview]) -> Reply | Notice:
        from .. import privacy

        entry, dataset = self._published(message.target)
        self.service.policy.check_release(self.service.peer, entry)
        if is_table(entry.value):
            return self._table_statistic(message, entry, dataset, out_buffers)
        _check_column(entry)
        if message.column is not None or message.by is not None or message.keys is not None:
            raise UsageError(
                f"column=, by= and keys= name a published table's columns; {entry.id} is a "
                f"{entry.type_name}, not a table"
            )
        mechanism = _price(
            lambda: privacy.price_statistic(
                message.kind, bounds=message.bounds, epsilon=message.epsilon, bins=message.bins
            )
        )
        if message.quote:
            return self._quote(message.rid, dataset, mechanism)
        reservation = self.desk.ledger.reserve(self.service.peer, dataset, mechanism)
        bounds = message.bounds
        value: object
        try:
            values = _column(entry.value)
            if message.kind == "count":
                value, price = privacy.count(values, epsilon=message.epsilon)
            elif message.kind == "histogram":
                assert bounds is not None  # price_statistic refused a histogram without
                bins = 10 if message.bins is None else message.bins
                value, price = privacy.histogram(
                    values, bounds=bounds, bins=bins, epsilon=message.epsilon
                )
            else:
                assert bounds is not None  # likewise
                run = privacy.mean if message.kind == "mean" else privacy.sum
                value, price = run(values, bounds=bounds, epsilon=message.epsilon)
        except Exception:  # on the owner's data: nothing of it is told, the charge stays
            log.info("a DP %s on %s failed", message.kind, entry.id, exc_info=True)
            self._settle(reservation, entry, failed=True)
            return self._failed(message.rid, NOT_COMPUTED, f"duet.privacy.{message.kind}")
        if price != mechanism:  # the same measurement both times: never, but say so if it did
            log.error("DP %s priced %s but ran as %s", message.kind, mechanism, price)
        released: dict[str, object] = {"kind": message.kind, "value": value}
        return self._release(
            message.rid, reservation, entry, released, out_buffers, message.timeout_secs
        )

    def _table_statistic(
        self, message: DpStatistic, entry: StoredObject, dataset: str, out: list[memoryview]
    ) -> Reply | Notice:
        """A statistic of a published table's column, or by its groups: checked against the
        listing's facts (the columns) and priced before any charge, as ``_statistic``."""
        from ..privacy import tables

        table = entry.value
        assert isinstance(table, tables.Table)  # is_table said so
        settings = tables.TableSettings(
            column=message.column, by=message.by, keys=message.keys, bounds=message.bounds,
            bins=message.bins, epsilon=message.epsilon,
        )  # fmt: skip
        mechanism = _price(lambda: tables.price_on_table(table, message.kind, **settings))
        if message.quote:
            return self._quote(message.rid, dataset, mechanism)
        reservation = self.desk.ledger.reserve(self.service.peer, dataset, mechanism)
        try:
            value, price = tables.statistic_on_table(table, message.kind, **settings)
        except Exception:  # on the owner's data: nothing of it is told, the charge stays
            log.info("a DP %s on table %s failed", message.kind, entry.id, exc_info=True)
            self._settle(reservation, entry, failed=True)
            return self._failed(message.rid, NOT_COMPUTED, f"duet.privacy.{message.kind}")
        if price != mechanism:
            log.error("DP %s priced %s but ran as %s", message.kind, mechanism, price)
        released: dict[str, object] = {"kind": message.kind, "value": value}
        return self._release(message.rid, reservation, entry, released, out, message.timeout_secs)

    # ---- training jobs
    def _training(self, message: DpTraining, out_buffers: list[memoryview]) -> Reply | Notice:
        from .. import privacy

        service = self.service
        model_entry = service.executor.visible(message.model)
        if model_entry.owner != service.peer or not isinstance(model_entry.value, nn.Module):
            raise UsageError(
                f"object {message.model} is not a model of yours: a DP job trains a model you "
                "sent (model.send(duet))"
            )
        if service.executor.label_of(model_entry):
            raise UsageError(
                f"your model {message.model} depends on the owner's data (it was computed on "
                "or trained with it outside a DP job): a DP job starts from a model of your own"
            )
        entry, dataset = self._tagged(message.data)
        service.policy.check_release(service.peer, entry)
        if message.loss not in privacy.LOSSES or message.optimizer not in privacy.OPTIMIZERS:
            raise UsageError(
                f"a DP job runs loss one of {sorted(privacy.LOSSES)} and optimizer one of "
                f"{sorted(privacy.OPTIMIZERS)}, not {message.loss!r} and {message.optimizer!r}"
            )
        if not isinstance(entry.value, torch.utils.data.Dataset):
            raise UsageError(f"{message.data!r} is not a torch Dataset; a DP job trains on one")
        model = _trainable(model_entry.value)
        standing = self.desk.ledger.standing(service.peer, dataset)
        if standing is None:  # as the ledger words it
            raise privacy.BudgetExceeded(privacy.ledger.no_budget(service.peer, dataset))
        if message.delta is not None and not math.isclose(
            message.delta, standing.delta, rel_tol=1e-9, abs_tol=0.0
        ):
            raise UsageError(
                f"the owner accounts {dataset!r} at delta {standing.delta:g} (its budget's), "
                f"not {message.delta:g}; leave delta out"
            )
        if (message.noise_multiplier is None) == (message.epsilon is None):
            raise UsageError("give exactly one of noise_multiplier and epsilon")
        job = _price(
            lambda: privacy.price_training(
                entry.value,
                batch_size=message.batch_size,
                epochs=message.epochs,
                delta=standing.delta,
                noise_multiplier=message.noise_multiplier,
                epsilon=message.epsilon,
            )
        )
        self._check_job_size(job.steps, message.batch_size, model)
        if message.quote:
            return self._quote(message.rid, dataset, job, per_epoch=job.steps // message.epochs)
        reservation = self.desk.ledger.reserve(service.peer, dataset, job)
        every = max(1, job.steps // PROGRESS_NOTICES)
        # buffers (a layer's running statistics) are not what DP-SGD's noise covers: they are
        # released as the scientist sent them, whatever the forward passes wrote into them
        sent_buffers = {name: b.detach().clone() for name, b in model.named_buffers()}

        def progress(step: int, steps: int) -> None:  # counts only: the same in every world
            if step % every == 0 or step == steps:
                text = f"DP training: step {step} of {steps}"
                service._send([Notice(rid=message.rid, text=text)], [])

        try:
            trained, reported = privacy.train_dp(
                model,
                entry.value,
                loss=message.loss,
                optimizer=message.optimizer,
                lr=message.lr,
                batch_size=message.batch_size,
                epochs=message.epochs,
                max_grad_norm=message.max_grad_norm,
                noise_multiplier=job.noise_multiplier,  # as priced (epsilon= chose it)
                delta=standing.delta,
                progress=progress,
            )
            state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
            state.update(sent_buffers)
        except Exception:
            log.info("a DP job on %s failed", entry.id, exc_info=True)
            self._settle(reservation, entry, failed=True)
            return self._failed(message.rid, NOT_TRAINED, "duet.privacy.train")
        released: dict[str, object] = {
            "kind": "training",
            "state": state,
            "epsilon": reported,  # Opacus's accountant after the run: the quote's epsilon
            "noise_multiplier": job.noise_multiplier,
            "sample_rate": job.sample_rate,
            "steps": job.steps,
        }
        return self._release(message.rid, reservation, entry, released, out_buffers)

    def _check_job_size(self, steps: int, batch_size: int, model: nn.Module) -> None:
        """Refuse, before anything is charged, a job longer than the owner allows or whose
        per-sample gradients would pass what the owner lets this scientist hold: Opacus keeps
        one gradient per example of a batch (Poisson-sampled: counted here at twice the
        expected size), so a huge batch of a large model would take the owner's memory."""
        if steps > self.desk.max_steps:
            raise UsageError(
                f"this DP job would take {steps:,} steps; the owner runs at most "
                f"{self.desk.max_steps:,} a job (fewer epochs, or a larger batch)"
            )
        weights = sum(p.numel() for p in model.parameters() if p.requires_grad)
        planned = 4 * weights * (2 * batch_size + 4)  # per-sample gradients, the model's copies
        self.service.store.quota(self.service.peer).check(
            planned, True, what="this DP job's per-sample gradients"
        )

    # ---- budgets and quotes
    def _budget(self, message: DpBudget) -> Reply:
        _, dataset = self._tagged(message.data, one=False)
        standing = self.desk.ledger.standing(self.service.peer, dataset)
        value: dict[str, object] = {"dataset": dataset, "budget": None, "remaining": 0.0}
        if standing is not None:
            value = {
                "dataset": dataset,
                "budget": standing.epsilon,
                "delta": standing.delta,
                "spent": standing.spent,
                "remaining": standing.remaining,
            }
        if message.charges is not None:
            value["charges"] = self._charges(dataset, message.charges, standing)
        return self._value(message.rid, value)

    def _charges(
        self, dataset: str, last: int, standing: Standing | None
    ) -> list[dict[str, object]]:
        """This scientist's newest ``last`` charges on ``dataset``, oldest first: what it
        asked for (the mechanism's settings), its state, when, and its epsilon alone at the
        budget's delta (None with no budget in force)."""
        from .. import privacy

        rows = self.desk.ledger.history(self.service.peer, last=last, dataset=dataset)
        charges: list[dict[str, object]] = []
        for row in rows:
            mechanism = privacy.mechanism_from_json(str(row["mechanism"]))
            alone = None if standing is None else privacy.spent([mechanism], standing.delta)
            charges.append(
                {
                    "entry": row["id"], "mechanism": json.loads(mechanism.to_json()),
                    "epsilon": alone, "state": row["state"], "at": row["at"],
                    "settled_at": row["settled_at"],
                }
            )  # fmt: skip
        return charges

    def _quote(self, rid: int, dataset: str, mechanism: Mechanism, *, per_epoch: int = 0) -> Reply:
        """The price of ``mechanism`` now; for a DP-SGD job (``per_epoch`` steps an epoch), also
        how many epochs at its noise would fit what remains."""
        from .. import privacy

        quote = self.desk.ledger.quote(self.service.peer, dataset, mechanism)
        epsilon = quote.epsilon
        if isinstance(mechanism, privacy.DpSgd):  # the number Opacus reports after the run
            epsilon = privacy.rdp_epsilon(
                noise_multiplier=mechanism.noise_multiplier,
                sample_rate=mechanism.sample_rate,
                steps=mechanism.steps,
                delta=quote.delta,
            )
        value: dict[str, object] = {
            "dataset": dataset,
            "epsilon": epsilon,
            "charge": quote.charge,
            "delta": quote.delta,
            "remaining": quote.remaining,
            "remaining_after": quote.remaining_after,
            "fits": quote.fits,
            "mechanism": mechanism.to_json(),
        }
        if isinstance(mechanism, privacy.DpSgd) and per_epoch > 0:
            value["noise_multiplier"] = mechanism.noise_multiplier  # epsilon= chose it
            most = min(MAX_EPOCHS, self.desk.max_steps // per_epoch)
            value["epochs_affordable"] = self.desk.ledger.affordable(
                self.service.peer,
                dataset,
                lambda epochs: dataclasses.replace(mechanism, steps=epochs * per_epoch),
                most,
            )
        return self._value(rid, value)

    # ---- the ledger, the audit log and the reply
    def _settle(
        self, reservation: Reservation, entry: StoredObject, *, failed: bool, aborted: str = ""
    ) -> None:
        """Commit the charge (``aborted``: drop it instead, saying why) and record it."""
        if aborted:
            self.desk.ledger.abort(reservation)
            state = f"aborted ({aborted})"
        else:
            self.desk.ledger.commit(reservation)
            state = "failed, charged" if failed else "committed"
        audit = self.service.audit
        if audit is not None:
            audit.record(
                "privacy", scientist=self.service.peer, name=self.service.peer_name,
                object_id=entry.id, dataset=reservation.dataset, entry=reservation.entry_id,
                mechanism=reservation.mechanism.to_json(), epsilon=reservation.epsilon,
                delta=reservation.delta, remaining=reservation.remaining, state=state,
            )  # fmt: skip

    def _release(
        self,
        rid: int,
        reservation: Reservation,
        entry: StoredObject,
        released: dict[str, object],
        out_buffers: list[memoryview],
        timeout_secs: float | None = None,
    ) -> Reply | Notice:
        released |= {
            "charged": reservation.epsilon,
            "delta": reservation.delta,
            "remaining": reservation.remaining,
            "dataset": reservation.dataset,
        }
        kind = str(released["kind"])
        # under review the value waits with the request, its bytes its own (not this frame's)
        snapshot = Snapshot.of(released, buffers=None if reservation.review else out_buffers)
        if snapshot.error is not None:  # cannot be sent: it ran, so the charge stays
            self._settle(reservation, entry, failed=True)
            return self._failed(rid, NOT_COMPUTED, _op(kind))
        if reservation.review:
            return self._ask(rid, reservation, entry, kind, snapshot, timeout_secs)
        self._charged(reservation, entry, snapshot, DECIDED_BY)
        return Reply.model_construct(
            rid=rid, status="ok", value=snapshot.value, error=None, note=""
        )

    def _charged(
        self, reservation: Reservation, entry: StoredObject, snapshot: Snapshot, by: str
    ) -> None:
        """Commit the charge of a release about to be sent, and record both (one commit)."""
        audit = self.service.audit
        if audit is None:
            self.desk.ledger.commit(reservation)
            return
        with audit.batch():
            self._settle(reservation, entry, failed=False)
            audit.record(
                "release", scientist=self.service.peer, name=self.service.peer_name,
                object_id=entry.id, digest=snapshot.digest(), nbytes=snapshot.nbytes,
                value_kind=snapshot.kind, decided_by=by,
            )  # fmt: skip

    # ---- releases the owner reviews by hand
    def _ask(
        self,
        rid: int,
        reservation: Reservation,
        entry: StoredObject,
        kind: str,
        snapshot: Snapshot,
        timeout_secs: float | None,
    ) -> Reply | Notice:
        """Put a computed DP release in the owner's queue, its charge still reserved; the
        reply goes out when the owner decides (``_decided``). The request's name, op and price
        are the owner's words and numbers, never the scientist's text."""
        service = self.service
        quota = service.store.quota(service.peer)
        if quota.pending >= quota.max_pending:  # nothing left: the charge is dropped
            self._settle(reservation, entry, failed=False, aborted="too many waiting")
            return self._error(
                rid,
                QuotaExceeded(
                    f"you have {quota.pending} requests waiting for the owner (the limit is "
                    f"{quota.max_pending}); wait for their decisions. Nothing was charged"
                ),
            )
        price = DpPrice(
            reservation.dataset, reservation.epsilon, reservation.delta, reservation.remaining
        )
        request = Request(
            id=new_request_id(),
            name=f"DP {kind} of {reservation.dataset}",
            reason="",
            object_id=entry.id,
            peer=service.peer,
            label=service.executor.label_of(entry),
            op=_op(kind),
            snapshot=snapshot,
            scientist_name=service.peer_name,
            privacy=price,
        )
        request.reply = lambda decided: self._decided(decided, rid, reservation, entry)
        service.releases.record_request(request)
        service.releases.submit_request(request, timeout_secs)
        return Notice(
            rid=rid,
            text=(
                f"the owner reviews DP releases on {reservation.dataset!r} by hand: this DP "
                f"{kind} (epsilon {reservation.epsilon:.4g}, {reservation.remaining:.4g} would "
                "remain) waits for the owner's decision"
            ),
        )

    def _decided(
        self, request: Request, rid: int, reservation: Reservation, entry: StoredObject
    ) -> None:
        """The owner decided a reviewed release (on whichever thread decided): accepted, the
        charge is committed and the value sent; otherwise the charge is dropped, nothing sent."""
        service = self.service
        service.releases.release_hold(request)
        if request.status is RequestStatus.ACCEPTED:
            self._charged(reservation, entry, request.snapshot, request.decided_by)
            reply = Reply.model_construct(
                rid=rid, status="ok", value=request.snapshot.value, error=None, note=""
            )
            service.send_replies([reply], list(request.snapshot.buffers))
            return
        status = request.status.value
        self._settle(reservation, entry, failed=False, aborted=f"{status} by {request.decided_by}")
        note = "denied by the owner" if request.status is RequestStatus.DENIED else status
        if request.denial:
            note += f": {request.denial}"
        reply = Reply.model_validate(
            {"rid": rid, "status": status, "note": f"{request.name}: {note}; nothing was charged"}
        )
        service.send_replies([reply], [])

    def _value(self, rid: int, value: dict[str, object]) -> Reply:
        snapshot = Snapshot.of(value)
        return Reply.model_construct(
            rid=rid, status="ok", value=snapshot.value, error=None, note=""
        )

    def _error(self, rid: int, exc: DuetError) -> Reply:
        return Reply(rid=rid, status="error", error=self.service._error_info(exc, "privacy"))

    def _failed(self, rid: int, text: str, op: str) -> Reply:
        """A release that ran on the owner's data and failed there: a RemoteError naming the
        operation, in words that say nothing of the data (the charge stays)."""
        return Reply(
            rid=rid, status="error", error=ErrorInfo(code=RemoteError.code, message=text, op=op)
        )

    def _refused(self, message: DpStatistic | DpTraining | DpBudget, exc: DuetError) -> None:
        audit = self.service.audit
        if audit is None or isinstance(message, DpBudget):
            return
        target = message.target if isinstance(message, DpStatistic) else message.data
        audit.record(
            "refused", scientist=self.service.peer, name=self.service.peer_name,
            object_id=target, reason=str(exc)[:2000], request_name="differential privacy",
        )  # fmt: skip


def _op(kind: str) -> str:
    """The scientist's call a release of ``kind`` came from, as errors and requests name it."""
    return "duet.privacy.train" if kind == "training" else f"duet.privacy.{kind}"


def _tag(entry: StoredObject) -> str:
    if len(entry.tags) != 1:
        raise UsageError(
            f"the owner's object {entry.id} has tags {entry.tags}: a DP release is charged to "
            "the budget of its one tag, so the owner publishes a dataset under exactly one"
        )
    return entry.tags[0]


def _check_column(entry: StoredObject) -> None:
    """What the store's listing shows anyway (type, shape, dtype): told plainly, before any
    charge. A 1-D tensor of numbers, with at least one row; or a list (PySyft's PyDP notebook
    published ``sy.lib.python.List``), whose items are checked only once charged: what they
    are is the owner's data, not what the listing shows."""
    value = entry.value
    if isinstance(value, list):
        return
    if not isinstance(value, torch.Tensor):
        raise UsageError(
            f"a DP statistic takes a published 1-D tensor or list of numbers; {entry.id} is a "
            f"{type(value).__name__}"
        )
    if value.ndim != 1 or value.numel() == 0:
        raise UsageError(
            f"a DP statistic takes a published 1-D tensor with rows (one value a row); "
            f"{entry.id} has shape {list(value.shape)}"
        )
    if value.dtype == torch.bool or value.is_complex():
        raise UsageError(f"a DP statistic takes real numbers, not {value.dtype}")


def _column(value: object) -> object:
    """The values of a column: a tensor as it is, a list as a float64 tensor (one item a row).
    Run once charged: a list with anything but real numbers fails here (not a bool: its
    owner did not mean 1 and 0)."""
    if not isinstance(value, list):
        return value
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        raise UsageError("a DP statistic takes a list of numbers")
    return torch.tensor(value, dtype=torch.float64)


M = TypeVar("M", bound="Mechanism")


def _price(build: Callable[[], M]) -> M:
    """The mechanism ``build()`` prices; its settings' errors told as they are (no data was
    read), any other failure (OpenDP refusing huge bounds, say) as a UsageError."""
    try:
        mechanism = build()
    except DuetError:
        raise
    except Exception as exc:
        raise UsageError(f"these settings cannot be priced: {str(exc)[:500]}") from exc
    return mechanism


def _trainable(model: nn.Module) -> nn.Module:
    """A copy of the scientist's model to train (its own object stays as it sent it), refused
    when Opacus would change its layers (the weights released would not fit the model)."""
    from opacus.validators import ModuleValidator

    try:
        trained = copy.deepcopy(model)
        fixed = ModuleValidator.fix(copy.deepcopy(model))
    except Exception as exc:
        raise UsageError(f"this model cannot be trained by a DP job: {str(exc)[:500]}") from exc
    if derivation.architecture(fixed) != derivation.architecture(trained):
        raise UsageError(
            "Opacus would replace layers of this model (BatchNorm, say, by GroupNorm) and the "
            "weights released would not fit it: build the model with layers Opacus trains as "
            "they are (GroupNorm, LayerNorm)"
        )
    problems = ModuleValidator.validate(trained, strict=False)
    if problems:
        raise UsageError(f"Opacus cannot train this model privately: {str(problems)[:500]}")
    return trained


__all__ = ["DECIDED_BY", "PrivateReleases"]
