"""The names of a federation's requests, shared by the scientist (who asks) and the owner's
handlers (which may match them: a handler per round, say). A name proves nothing (the scientist
chooses it): handlers also say what is released (``owner.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestNames:
    federation: str = "federated"

    @property
    def samples(self) -> str:
        """The number of samples an owner trains on (released once, weighs its updates)."""
        return f"{self.federation} samples"

    def update(self, round_: int) -> str:
        """An owner's trained model after round ``round_``."""
        return f"{self.federation} round {round_} update"

    def loss(self, round_: int) -> str:
        """An owner's mean training loss in the last local epoch of round ``round_``."""
        return f"{self.federation} round {round_} loss"


__all__ = ["RequestNames"]
