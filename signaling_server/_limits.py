"""Rate limits per source address: a token bucket each, refilled with the loop's clock.

A bucket holds up to ``burst`` tokens and gains ``rate`` a second; each new connection takes
one, and a connection that finds its address's bucket empty is refused (``rate_limited``). So
an address may open ``burst`` connections at once (a class behind one NAT joining together)
and ``rate`` a second after that, and one flooding address spends only its own tokens: others'
buckets are untouched. Buckets that are full again are forgotten, so memory follows the
addresses active in the last ``burst / rate`` seconds, and at most ``max_addresses`` are kept
(past that, the fullest are dropped first, which errs on the side of the clients).

Refused attempts count too: each takes the bucket further below empty, down to ``-burst``, so
an address that goes on connecting faster than ``rate`` stays refused until it slows down (an
empty bucket refills in ``1 / rate`` seconds; one at the floor in ``(burst + 1) / rate``). A
refused connection is told why (:attr:`Admission.REFUSE`) until its bucket reaches the floor;
one from an address at the floor has been told ``burst - 1`` times already
(:attr:`Admission.SHUT`) and the server answers it as cheaply as it can.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Admission(enum.Enum):
    ALLOW = "allow"
    REFUSE = "refuse"  # tell the client why
    SHUT = "shut"  # refused ``burst`` times in a row already: spend as little as possible


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by address; :meth:`allow` takes a token if there is one."""

    def __init__(self, rate: float, burst: float, *, max_addresses: int = 100_000) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"rate must be positive and burst at least 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, _Bucket] = {}
        self._swept = 0.0

    def allow(self, address: str, now: float) -> bool:
        """Take one token from ``address``'s bucket at time ``now`` (seconds); False if empty."""
        return self.admit(address, now) is Admission.ALLOW

    def admit(self, address: str, now: float) -> Admission:
        """Take one token from ``address``'s bucket at time ``now`` (seconds), or say how to
        refuse it."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses or now - self._swept > self._refill_secs:
                self._sweep(now)
            bucket = self._buckets[address] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Admission.ALLOW
        bucket.tokens = max(bucket.tokens - 1, -self.burst)
        return Admission.REFUSE if bucket.tokens > -self.burst else Admission.SHUT

    @property
    def _refill_secs(self) -> float:
        return self.burst / self.rate

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled; if still too many, the fullest ones."""
        self._swept = now
        self._buckets = {
            address: bucket
            for address, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate < self.burst
        }
        if len(self._buckets) >= self.max_addresses:
            ranked = sorted(self._buckets.items(), key=lambda item: item[1].tokens)
            self._buckets = dict(ranked[: self.max_addresses // 2])

    def __len__(self) -> int:
        return len(self._buckets)
