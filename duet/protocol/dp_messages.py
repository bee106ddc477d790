"""The differential-privacy messages (issue 19): asked by the scientist, decided by the owner's
budget. Part of the wire's union (``messages.Message``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .fields import ObjectId, RequestId, WaitSecs, WireMessage

# ---- differential privacy (issue 19): asked by the scientist, decided by the owner's budget

#: a number from the wire the owner computes with: finite, and of JSON's number type (a
#: string or a boolean is refused, not coerced)
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=1e6)]
#: a published dataset's tag (what budgets are set on)
DatasetTag = Annotated[str, Field(min_length=1, max_length=200)]
MAX_DP_BINS = 10_000  # privacy.statistics.MAX_BINS (protocol imports nothing of duet)
MAX_DP_KEYS = 10_000  # privacy.grouped.MAX_KEYS
#: a published table's column: printable text (no control characters), as tables.py allows
ColumnName = Annotated[
    str, Field(strict=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]


class DpStatistic(WireMessage):
    """A DP statistic of one of the owner's published datasets, released under the
    scientist's privacy budget, not through a request. ``quote``: price it only (nothing is
    reserved, run or released). On a published table: ``column`` (a count may name none),
    and for groups ``by`` (the key column) with ``keys`` (the groups asked about). The owner
    checks every field again (the bounds' order, bins only for a histogram, the columns) and
    answers with a Reply."""

    k: Literal["dp_stat"] = "dp_stat"
    rid: RequestId
    kind: Literal["mean", "sum", "count", "histogram"]
    target: ObjectId
    bounds: tuple[Finite, Finite] | None = None
    epsilon: Positive
    bins: Annotated[int, Field(strict=True, ge=1, le=MAX_DP_BINS)] | None = None
    column: ColumnName | None = None
    by: ColumnName | None = None
    keys: Annotated[list[Finite], Field(min_length=1, max_length=MAX_DP_KEYS)] | None = None
    quote: bool = False
    # how long the scientist waits when the owner reviews DP releases by hand (None: as long
    # as the owner lets a request wait)
    timeout_secs: WaitSecs | None = None


class DpTraining(WireMessage):
    """A DP-SGD job the owner runs (Opacus) on its published dataset ``data`` (a tag), for
    the scientist's model ``model`` (one of its own objects); the trained weights are released
    under its privacy budget. Give exactly one of ``noise_multiplier`` and ``epsilon``;
    ``delta``, if given, must be the budget's. ``quote``: price it only."""

    k: Literal["dp_train"] = "dp_train"
    rid: RequestId
    model: ObjectId
    data: DatasetTag
    loss: Annotated[str, Field(min_length=1, max_length=40)]
    optimizer: Annotated[str, Field(min_length=1, max_length=40)]
    lr: Positive
    batch_size: Annotated[int, Field(strict=True, ge=1, le=10_000_000)]
    epochs: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    max_grad_norm: Positive
    noise_multiplier: Positive | None = None
    epsilon: Positive | None = None
    delta: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, lt=1)] | None = None
    quote: bool = False


MAX_DP_CHARGES = 10_000  # the most charges a scientist's history reply lists


class DpBudget(WireMessage):
    """What is left of the scientist's privacy budget on the published dataset ``data``;
    with ``charges``, also the newest that many of its charges there."""

    k: Literal["dp_budget"] = "dp_budget"
    rid: RequestId
    data: DatasetTag
    charges: Annotated[int, Field(strict=True, ge=1, le=MAX_DP_CHARGES)] | None = None
