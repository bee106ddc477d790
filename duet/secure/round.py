"""What a round of secure aggregation is, as every owner must see it: the round's id, its roster
(the owners, by identity ID), the digest of the model the round starts from, and its parameters
(clip, fixed-point bits, the threshold of owners needed to unmask). Its transcript is what each
owner signs with its round keys, so owners shown different rounds cannot agree on keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import SecureAggregationAborted, UsageError
from .quantise import Quantiser

PROTOCOL = "duet-secagg/1"
MIN_OWNERS = 3


def threshold_against(owners: int, colluders: int = 0) -> int:
    """The least threshold with which a scientist working with ``colluders`` of the ``owners``
    cannot unmask an honest owner's update: ``(owners + colluders) // 2 + 1``.

    Why: to read owner X's update the scientist needs ``threshold`` shares of X's seed (from
    owners told X survived) and ``threshold`` of X's mask key (from owners told X dropped). An
    honest owner gives one kind for X, a colluder both, so it takes ``2 * (threshold -
    colluders) <= owners - colluders`` honest owners; a threshold above ``(owners + colluders)
    / 2`` makes that impossible. Rounds require at least ``threshold_against(n)`` (a scientist
    alone); an owner that fears collusion asks for more (``OwnerRound(min_threshold=)``), at the
    price of fewer dropouts survived.
    """
    return (owners + colluders) // 2 + 1


@dataclass(frozen=True)
class RoundSpec:
    """One round, as the scientist proposes it to every owner."""

    round_id: str
    roster: tuple[str, ...]
    model_digest: bytes
    quantiser: Quantiser
    threshold: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "roster", tuple(sorted(self.roster)))

    def check(self) -> None:
        """Raise UsageError unless the round can run: at least 3 distinct owners, a threshold
        of more than half of them (``threshold_against(n)``), sums that stay exact."""
        if len(set(self.roster)) != len(self.roster):
            raise UsageError(f"the roster names an owner twice: {list(self.roster)}")
        if len(self.roster) < MIN_OWNERS:
            raise UsageError(
                f"secure aggregation needs at least {MIN_OWNERS} owners, the roster has "
                f"{len(self.roster)}: with two, each would learn the other's update from the sum"
            )
        n = len(self.roster)
        if not isinstance(self.threshold, int) or not (threshold_against(n) <= self.threshold <= n):
            raise UsageError(
                f"the threshold of a {n}-owner round is more than half the roster and at most "
                f"all of it ({threshold_against(n)} to {n}), not {self.threshold!r}"
            )
        self.quantiser.check(n)

    def index_of(self, owner: str) -> int:
        """The owner's Shamir x-coordinate: its place in the sorted roster, from 1."""
        return self.roster.index(owner) + 1

    @property
    def transcript(self) -> bytes:
        """The canonical bytes of the round every owner signs its keys over."""
        return json.dumps(
            {
                "protocol": PROTOCOL,
                "round": self.round_id,
                "roster": list(self.roster),
                "model": self.model_digest.hex(),
                "clip": float(self.quantiser.clip),
                "fractional_bits": self.quantiser.fractional_bits,
                "threshold": self.threshold,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.transcript).digest()


def model_digest(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> bytes:
    """SHA-256 of a model's state (names, dtypes, shapes and values, in order): what every
    owner of a round must have started from."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    digest = hashlib.sha256(PROTOCOL.encode() + b" model")
    for name, tensor in state.items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(json.dumps([name, str(value.dtype), list(value.shape)]).encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().data)  # its buffer, no copy
    return digest.digest()


__all__ = [
    "MIN_OWNERS",
    "PROTOCOL",
    "RoundSpec",
    "SecureAggregationAborted",
    "model_digest",
    "threshold_against",
]
