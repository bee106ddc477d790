"""An in-memory driver of a round: the scientist's relay between N owners, with no wire.

``Relay.run`` carries every message of rounds 0 to 3 between ``OwnerRound`` state machines and
the scientist's ``Aggregator``, keeps a log of all it carried, and lets owners drop out after any
step. Its three delivery methods are the places a hostile scientist would tamper with what each
owner sees: tests subclass it and override them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from .aggregator import Aggregator
from .messages import EncryptedShare, KeyAdvertisement, Message, UnmaskRequest
from .participant import OwnerRound, Stage
from .quantise import Layout, Update
from .round import RoundSpec, SecureAggregationAborted

T = TypeVar("T")


class Relay:
    """The scientist in a round, in memory. ``aborts`` holds each owner's abort, ``log`` every
    message carried (owners' and scientist's), in order."""

    def __init__(self, spec: RoundSpec, layout: Layout):
        self.spec = spec
        self.aggregator = Aggregator(spec, layout)
        self.log: list[Message] = []
        self.aborts: dict[str, SecureAggregationAborted] = {}

    # what each owner is shown: a hostile relay overrides these

    def advertisements_for(
        self, receiver: str, ads: list[KeyAdvertisement]
    ) -> list[KeyAdvertisement]:
        return ads

    def shares_for(self, receiver: str, shares: list[EncryptedShare]) -> list[EncryptedShare]:
        return shares

    def unmask_request_for(self, receiver: str, request: UnmaskRequest) -> UnmaskRequest:
        return request

    # the round

    def run(
        self,
        owners: Sequence[OwnerRound],
        updates: Mapping[str, Update],
        *,
        drop_after: Mapping[str, Stage] | None = None,
    ) -> Update:
        """Run the round; returns the sum of the survivors' updates. ``drop_after`` maps an
        owner to the step after which it goes away (``Stage.ADVERTISE``: it advertised keys,
        then vanished). Raises SecureAggregationAborted when the round cannot finish, naming
        each owner's abort (also in ``aborts``)."""
        gone = dict(drop_after or {})

        def still_there(after: Stage) -> list[OwnerRound]:
            order = list(Stage)
            return [
                o
                for o in owners
                if o.id not in self.aborts
                and (o.id not in gone or order.index(gone[o.id]) >= order.index(after))
            ]

        ads = {}
        for owner in owners:
            ad = self._call(owner, owner.advertise)
            if ad is not None:
                ads[owner.id] = ad
        self.aggregator.add_advertisements(ads.values())

        shares: list[EncryptedShare] = []
        for owner in still_there(Stage.SHARE_KEYS):
            shown = self.advertisements_for(owner.id, list(ads.values()))
            shares += self._call(owner, owner.share_keys, shown) or []

        for owner in still_there(Stage.MASKED_INPUT):
            inbox = self.shares_for(owner.id, [s for s in shares if s.receiver == owner.id])
            masked = self._call(owner, owner.masked_input, updates[owner.id], inbox)
            if masked is not None:
                self.aggregator.add_masked_input(masked)

        try:
            request = self.aggregator.unmask_request()
            self.log.append(request)
            for owner in still_there(Stage.UNMASK):
                shown_request = self.unmask_request_for(owner.id, request)
                response = self._call(owner, owner.unmask, shown_request)
                if response is not None:
                    self.aggregator.add_response(response)
            return self.aggregator.result()
        except SecureAggregationAborted as exc:
            if not self.aborts:
                raise
            first = next(iter(self.aborts.values()))
            told = "; ".join(f"owner {a.owner}: {a.detail}" for a in self.aborts.values())
            raise SecureAggregationAborted(
                f"{exc.detail}. Owners that aborted: {told}", reason=first.reason
            ) from exc

    def _call(self, owner: OwnerRound, step: Callable[..., T], *args: Any) -> T | None:
        try:
            out = step(*args)
        except SecureAggregationAborted as exc:
            self.aborts[owner.id] = exc
            return None
        self.log.extend(cast(list[Message], out if isinstance(out, list) else [out]))
        return out


__all__ = ["Relay"]
