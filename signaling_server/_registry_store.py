"""Where the registry keeps owners' signed records: in memory (one server) or in Redis (several
server instances sharing one registry).

A store keeps, per owner ID, the signed record (until it expires) and the highest sequence
number that owner has used (longer: until no record it signed could still be accepted), and per
source address the owners registered from it. ``put`` and ``withdraw`` compare the sequence
number and write in one atomic step (a Lua script in Redis), so two instances that receive an
old and a new record at once can never end up holding the old one, and a record replayed to
another instance is refused there too. Stores never check signatures: the registry does that
before it calls them.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .protocol import SignedRecord
from .records import record_matches

__all__ = ["MemoryRegistryStore", "RedisRegistryStore", "RegistryStore", "StoreRefusal"]


class StoreRefusal(Exception):
    """``put`` or ``withdraw`` refused: ``reason`` is ``replay`` (``held`` is the stored sequence
    number), ``too_many`` (``held`` is how many owners the address holds) or ``full``
    (``held`` is how many owners the store holds)."""

    def __init__(self, reason: Literal["replay", "too_many", "full"], held: int) -> None:
        super().__init__(f"{reason} ({held})")
        self.reason = reason
        self.held = held


class RegistryStore(Protocol):
    """What the registry needs from a store. ``now`` is Unix seconds (the caller's clock)."""

    async def put(
        self, signed: SignedRecord, *, address: str, now: float, keep_seq_secs: float,
        max_per_address: int, max_records: int,
    ) -> None:  # fmt: skip
        """Store ``signed`` unless its ``seq`` is not above the owner's stored one, its address
        holds ``max_per_address`` other owners' live records, or the store holds
        ``max_records`` other owners' already; raise StoreRefusal."""

    async def withdraw(self, owner_id: str, seq: int, *, now: float, keep_seq_secs: float) -> bool:
        """Drop the owner's record if ``seq`` is above its stored one (StoreRefusal otherwise);
        True if there was a record."""

    async def search(
        self, tags: list[str], owner: str | None, *, now: float, limit: int
    ) -> list[SignedRecord]:
        """Live records that ``record_matches``, at most ``limit``."""

    async def count(self, *, now: float) -> int:
        """Live records held."""


@dataclass
class _Held:
    signed: SignedRecord
    expires: float
    address: str


@dataclass
class MemoryRegistryStore:
    """The default store: one process's dicts. Expired entries are dropped as they are met and
    on every write (a heap of expiry times), so memory follows live registrations. A search by
    tags reads only the owners listing every tag (an index by tag), not every record."""

    records: dict[str, _Held] = field(default_factory=dict)
    seqs: dict[str, tuple[int, float]] = field(default_factory=dict)  # owner -> (seq, until)
    per_address: dict[str, set[str]] = field(default_factory=dict)
    by_tag: dict[str, set[str]] = field(default_factory=dict)  # tag -> owners listing it
    _expiries: list[tuple[float, str]] = field(default_factory=list)

    def _sweep(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, owner = heapq.heappop(self._expiries)
            held = self.records.get(owner)
            if held is not None and held.expires <= now:
                self._drop(owner)
            seq = self.seqs.get(owner)
            if seq is not None and seq[1] <= now:
                del self.seqs[owner]

    def _drop(self, owner: str) -> _Held | None:
        held = self.records.pop(owner, None)
        if held is not None:
            owners = self.per_address.get(held.address)
            if owners is not None:
                owners.discard(owner)
                if not owners:
                    del self.per_address[held.address]
            for tag in _tags(held.signed):
                tagged = self.by_tag.get(tag)
                if tagged is not None:
                    tagged.discard(owner)
                    if not tagged:
                        del self.by_tag[tag]
        return held

    def _check_seq(self, owner: str, seq: int) -> None:
        stored = self.seqs.get(owner)
        if stored is not None and seq <= stored[0]:
            raise StoreRefusal("replay", stored[0])

    def _keep_seq(self, owner: str, seq: int, until: float) -> None:
        self.seqs[owner] = (seq, until)
        heapq.heappush(self._expiries, (until, owner))

    async def put(
        self, signed: SignedRecord, *, address: str, now: float, keep_seq_secs: float,
        max_per_address: int, max_records: int,
    ) -> None:  # fmt: skip
        self._sweep(now)
        record = signed.record
        owner = record.owner_id
        self._check_seq(owner, record.seq)
        owners = self.per_address.get(address, set())
        if owner not in owners and len(owners) >= max_per_address:
            raise StoreRefusal("too_many", len(owners))
        if owner not in self.records and len(self.records) >= max_records:
            raise StoreRefusal("full", len(self.records))
        self._drop(owner)
        expires = now + record.ttl_secs
        self.records[owner] = _Held(signed, expires, address)
        self.per_address.setdefault(address, set()).add(owner)
        for tag in _tags(signed):
            self.by_tag.setdefault(tag, set()).add(owner)
        heapq.heappush(self._expiries, (expires, owner))
        self._keep_seq(owner, record.seq, now + keep_seq_secs)

    async def withdraw(self, owner_id: str, seq: int, *, now: float, keep_seq_secs: float) -> bool:
        self._sweep(now)
        self._check_seq(owner_id, seq)
        self._keep_seq(owner_id, seq, now + keep_seq_secs)
        return self._drop(owner_id) is not None

    async def search(
        self, tags: list[str], owner: str | None, *, now: float, limit: int
    ) -> list[SignedRecord]:
        self._sweep(now)
        if owner is not None:
            held = self.records.get(owner)
            candidates = [held] if held is not None else []
        elif tags:  # the owners listing every tag (in some dataset: record_matches checks one)
            owners = set.intersection(*(self.by_tag.get(t, set()) for t in tags))
            candidates = [self.records[o] for o in sorted(owners)]
        else:
            candidates = list(self.records.values())
        found = [
            h.signed
            for h in candidates
            if h.expires > now and record_matches(h.signed.record, tags, owner)
        ]
        return found[:limit]

    async def count(self, *, now: float) -> int:
        self._sweep(now)
        return len(self.records)


# KEYS: 1 the owner's seq, 2 its record, 3 the address's owners, 4 every owner (sorted sets
# scored by their records' expiry). ARGV: 1 seq, 2 record JSON, 3 record ttl ms, 4 seq ttl ms,
# 5 now ms, 6 owner ID, 7 max per address, 8 expiry ms, 9 max records
_PUT = """
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) >= tonumber(ARGV[1]) then return {'replay', held} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
if not redis.call('ZSCORE', KEYS[3], ARGV[6]) then
  local n = redis.call('ZCARD', KEYS[3])
  if n >= tonumber(ARGV[7]) then return {'too_many', tostring(n)} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[5])
if not redis.call('ZSCORE', KEYS[4], ARGV[6]) then
  local n = redis.call('ZCARD', KEYS[4])
  if n >= tonumber(ARGV[9]) then return {'full', tostring(n)} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[6])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
return {'ok', ''}
"""

# KEYS: 1 the owner's seq, 2 its record, 3 every owner. ARGV: 1 seq, 2 seq ttl ms, 3 owner ID
_WITHDRAW = """
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) >= tonumber(ARGV[1]) then return {'replay', held} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return {'ok', tostring(redis.call('DEL', KEYS[2]))}
"""


class RedisRegistryStore:
    """Records in Redis, shared by every server instance given a client of the same Redis.

    ``client`` is a ``redis.asyncio.Redis`` (``decode_responses`` either way). Keys start with
    ``prefix``: ``<prefix>seq:<owner>``, ``<prefix>rec:<owner>`` (each with its expiry),
    ``<prefix>addr:<address>`` and ``<prefix>all:owners`` (sorted sets scored by the records'
    expiry) and ``<prefix>tag:<tag>`` (an index whose stale members are skipped and removed
    as they are met). The sequence check and the write are one Lua script.
    """

    def __init__(self, client: Any, *, prefix: str = "duet:registry:") -> None:
        self._redis = client
        self._prefix = prefix
        self._all = self._key("all", "owners")
        self._put = client.register_script(_PUT)
        self._withdraw = client.register_script(_WITHDRAW)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def put(
        self, signed: SignedRecord, *, address: str, now: float, keep_seq_secs: float,
        max_per_address: int, max_records: int,
    ) -> None:  # fmt: skip
        record = signed.record
        owner = record.owner_id
        ttl_ms = record.ttl_secs * 1000
        now_ms = int(now * 1000)
        keys = [self._key("seq", owner), self._key("rec", owner), self._key("addr", address)]
        args = [record.seq, signed.model_dump_json(), ttl_ms, int(keep_seq_secs * 1000), now_ms]
        args += [owner, max_per_address, now_ms + ttl_ms, max_records]
        result = await self._put(keys=[*keys, self._all], args=args)
        status, held = (_text(v) for v in result)
        if status == "replay":
            raise StoreRefusal("replay", int(held))
        if status == "too_many":
            raise StoreRefusal("too_many", int(held))
        if status == "full":
            raise StoreRefusal("full", int(held))
        tags = {tag for dataset in record.datasets for tag in dataset.tags}
        async with self._redis.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.sadd(self._key("tag", tag), owner)
                pipe.expire(self._key("tag", tag), record.ttl_secs, gt=True)
                pipe.expire(self._key("tag", tag), record.ttl_secs, nx=True)
            await pipe.execute()

    async def withdraw(self, owner_id: str, seq: int, *, now: float, keep_seq_secs: float) -> bool:
        result = await self._withdraw(
            keys=[self._key("seq", owner_id), self._key("rec", owner_id), self._all],
            args=[seq, int(keep_seq_secs * 1000), owner_id],
        )
        status, held = (_text(v) for v in result)
        if status != "ok":
            raise StoreRefusal("replay", int(held))
        return held == "1"

    async def search(
        self, tags: list[str], owner: str | None, *, now: float, limit: int
    ) -> list[SignedRecord]:
        index: list[str] = []
        if owner is not None:
            owners = [owner]
        elif tags:
            index = [self._key("tag", t) for t in tags]
            owners = sorted(_text(m) for m in await self._redis.sinter(index))
        else:
            live = await self._redis.zrangebyscore(self._all, int(now * 1000), "+inf")
            owners = sorted(_text(m) for m in live)
        found: list[SignedRecord] = []
        stale: list[str] = []
        for start in range(0, len(owners), 100):  # a bounded batch per round trip
            batch = owners[start : start + 100]
            texts = await self._redis.mget([self._key("rec", o) for o in batch])
            for name, text in zip(batch, texts, strict=True):
                if text is None:
                    stale.append(name)
                    continue
                signed = SignedRecord.model_validate(json.loads(_text(text)))
                if record_matches(signed.record, tags, owner):
                    found.append(signed)
            if len(found) >= limit:
                break
        if stale and index:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in index:
                    pipe.srem(key, *stale)
                await pipe.execute()
        return found[:limit]

    async def count(self, *, now: float) -> int:
        return int(await self._redis.zcount(self._all, int(now * 1000), "+inf"))


def _tags(signed: SignedRecord) -> set[str]:
    return {tag for dataset in signed.record.datasets for tag in dataset.tags}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
