"""The scientist's side of a round: collect masked inputs, ask the owners to unmask, add up.

What the scientist learns: the owners' public round keys, sealed shares it cannot open, each
survivor's masked input (uniform in Z(2^64) on its own), and in round 3 the survivors' seeds and
the dropped owners' mask keys, rebuilt from at least ``threshold`` owners' shares. With those it
removes every mask from the *sum* of the survivors' inputs; a single input stays masked by the
pairwise masks of the owners still there, whose keys are never revealed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import numpy as np

from . import crypto
from .messages import KeyAdvertisement, MaskedInput, UnmaskRequest, UnmaskResponse
from .participant import advertisement_problem, pairwise_mask_key, self_mask_key
from .quantise import Layout, Update
from .round import RoundSpec, SecureAggregationAborted
from .stream import PIECE, KeyStreams


class Aggregator:
    """Sums one round's updates without reading any one of them.

    Feed it the owners' advertisements, then their masked inputs; ``unmask_request()`` says
    whom to ask; feed it the responses; ``result()`` is the sum of the survivors' clipped
    updates (float64 tensors in ``layout``), within ``spec.quantiser.error_bound(len(survivors))``.
    """

    def __init__(self, spec: RoundSpec, layout: Layout):
        self.spec = spec
        self.layout = layout
        self.keys: dict[str, KeyAdvertisement] = {}
        self.masked: dict[str, MaskedInput] = {}
        self.responses: dict[str, UnmaskResponse] = {}
        self.request: UnmaskRequest | None = None

    def add_advertisements(self, advertisements: Iterable[KeyAdvertisement]) -> None:
        for ad in advertisements:
            problem = advertisement_problem(ad, self.spec)
            if problem:
                self._abort(*problem)
            self.keys[ad.owner] = ad

    def add_masked_input(self, masked: MaskedInput) -> None:
        if masked.round_id != self.spec.round_id or masked.owner not in self.keys:
            self._abort(f"a masked input from {masked.owner} is not of this round", "protocol")
        if masked.owner in self.masked:
            self._abort(f"two masked inputs from {masked.owner}", "protocol")
        if masked.values.dtype != np.uint64 or masked.values.shape != (self.layout.size,):
            self._abort(
                f"the masked input of {masked.owner} is not {self.layout.size} elements of Z(2^64)",
                "protocol",
            )
        self.masked[masked.owner] = masked

    @property
    def survivors(self) -> tuple[str, ...]:
        return tuple(sorted(self.masked))

    def unmask_request(self) -> UnmaskRequest:
        """Whom to ask for what: the owners whose masked inputs arrived are survivors, those
        they masked with but whose inputs did not arrive dropped. Raises SecureAggregationAborted
        below the threshold (nothing is asked, nothing revealed)."""
        survivors = self.survivors
        if len(survivors) < self.spec.threshold:
            self._abort(
                f"only {len(survivors)} masked inputs arrived, the threshold is "
                f"{self.spec.threshold}: the round cannot be unmasked",
                "below_threshold",
            )
        views = {self.masked[owner].masked_with for owner in survivors}
        if len(views) != 1:
            self._abort("the survivors masked with different sets of owners", "protocol")
        (masked_with,) = views
        dropped = tuple(owner for owner in masked_with if owner not in self.masked)
        self.request = UnmaskRequest(self.spec.round_id, survivors, dropped)
        return self.request

    def add_response(self, response: UnmaskResponse) -> None:
        if self.request is None or response.round_id != self.spec.round_id:
            self._abort(f"an unmask response from {response.owner} out of turn", "protocol")
        if response.owner not in self.request.survivors or response.owner in self.responses:
            self._abort(f"an unexpected unmask response from {response.owner}", "protocol")
        if response.index != self.spec.index_of(response.owner):
            self._abort(f"{response.owner} answered with another owner's shares", "shares")
        wanted = (set(self.request.survivors), set(self.request.dropped))
        if (set(response.seed_shares), set(response.key_shares)) != wanted or any(
            len(share) != crypto.SECRET
            for share in (*response.seed_shares.values(), *response.key_shares.values())
        ):
            self._abort(f"{response.owner} did not answer what it was asked", "shares")
        self.responses[response.owner] = response

    def result(self) -> Update:
        """The sum of the survivors' clipped updates. Raises SecureAggregationAborted when fewer
        than ``threshold`` owners answered or their shares do not rebuild what was committed."""
        request = self.request
        if request is None:
            self._abort("no unmask request was made", "protocol")
        answered = sorted(self.responses.values(), key=lambda r: r.index)
        if len(answered) < self.spec.threshold:
            self._abort(
                f"only {len(answered)} owners revealed shares, the threshold is "
                f"{self.spec.threshold}",
                "below_threshold",
            )
        used = answered[: self.spec.threshold]
        seeds: dict[str, bytes] = {}
        for owner in request.survivors:
            seed = crypto.combine({r.index: r.seed_shares[owner] for r in used})
            if crypto.seed_commitment(seed) != self.keys[owner].seed_commitment:
                self._abort(f"the shares of {owner}'s seed do not rebuild its seed", "shares")
            seeds[owner] = seed
        mask_keys: dict[str, bytes] = {}
        for owner in request.dropped:
            private = crypto.combine({r.index: r.key_shares[owner] for r in used})
            public = crypto.public_bytes(crypto.X25519PrivateKey.from_private_bytes(private))
            if public != self.keys[owner].mask_key:
                self._abort(f"the shares of {owner}'s mask key do not rebuild its key", "shares")
            mask_keys[owner] = private
        total = self._unmask(seeds, mask_keys)
        return self.layout.unflatten(self.spec.quantiser.dequantise(total))

    def _unmask(self, seeds: dict[str, bytes], mask_keys: dict[str, bytes]) -> np.ndarray:
        """The ring sum of the survivors' quantised updates: their masked inputs, minus their
        self masks, minus what is left of their pairwise masks with the dropped owners."""
        size = self.layout.size
        add: list[bytes] = []
        subtract = [self_mask_key(seeds[owner], self.spec) for owner in self.masked]
        for gone, private in mask_keys.items():
            for owner in self.masked:
                secret = crypto.agree(private, self.keys[owner].mask_key)
                key = pairwise_mask_key(secret, self.spec, owner, gone)
                # the survivor added the stream if its ID is the lower, subtracted it otherwise
                (subtract if owner < gone else add).append(key)
        streams = KeyStreams(add, subtract)
        total = np.zeros(size, dtype=np.uint64)
        for start in range(0, size, PIECE):  # a cache-sized piece at a time, wrapping in place
            piece = total[start : start + PIECE]
            for masked in self.masked.values():
                piece += masked.values[start : start + PIECE]
            streams.apply(piece)
        return total

    def _abort(self, message: str, reason: str) -> NoReturn:
        raise SecureAggregationAborted(message, reason=reason, owner="")


__all__ = ["Aggregator"]
