"""One party's side of a secret-shared computation over duets: the protocol core, no I/O.

A computation has two share holders (in order: holder 0, holder 1) and a crypto provider,
each an owner node; the scientist relays every value one party sends another, so each is
sealed to its receiver (ChaCha20-Poly1305 under a key from X25519, ``duet.secure.crypto``).
Each party makes an X25519 key per computation and signs it with its identity (Ed25519) over
the transcript: the computation id, the holders in order, the provider, the fixed point, and
the signer's role. A party that sees a roster, a role or a key other than the ones signed
refuses to agree; what it seals is bound (associated data) to the computation, the sender,
the receiver, what the value is (an input share, a dealing, an opening, a revealed share)
and its name, so a relayed value cannot be replayed in another slot or forged.

What a holder keeps: its share of each tensor by name, in Z(2^64) (``duet.smpc.ring``). What
leaves it: shares of its inputs (uniform: the input minus a fresh uniform mask), its shares of
Beaver's openings e = x - a and f = y - b (masked by the provider's a and b), and, once its
owner accepts a reveal, its share of a computed result. The provider sees only shapes.

Multiplication: the provider deals a triple as seeds and one correction
(``duet.smpc.provider``); each holder opens its e and f to the other, computes its share of
the product and truncates it locally (SecureML's two-party truncation, as
``duet.smpc.truncation.divide_two_party``: holder 0 floor(z0 / 2^f), holder 1
-floor(-z1 / 2^f)). Every triple and every name is used once.

Comparisons and ReLU (comparison.py): the provider deals each part's mask bits and triples
(``deal_comparison``), each holder runs the part's state machine (``compare``, then
``compare_round`` once per step), its messages sealed to the other holder as kind "round",
bound to the comparison, the part and the step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import HandshakeError, NotAllowed, ProtocolError, UsageError
from ...identity import Identity, id_of, verify
from ...secure import crypto
from .. import provider as dealer
from .. import ring
from . import comparison as compare
from . import local_ops
from .encoding import from_bytes, to_bytes

PROTOCOL = "duet-smpc/1"
MAX_ELEMENTS = 1 << 24  # elements of one tensor (128 MiB of shares)
MAX_BYTES = 1 << 30  # shares one party keeps for one computation
MAX_NAMES = 100_000  # names one computation may use

_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mul": torch.mul,
    "matmul": torch.matmul,
}


@dataclass(frozen=True)
class Roster:
    """Who takes part in computation ``computation``: the holders in order and the provider."""

    computation: str
    holders: tuple[str, str]
    provider: str
    fractional_bits: int

    def check(self) -> None:
        if self.holders[0] == self.holders[1]:
            raise UsageError("the two share holders must be different owners")
        if self.provider in self.holders:
            raise NotAllowed(
                f"the crypto provider {self.provider} is also named as a share holder: a provider "
                "that holds a share can remove the masks it dealt and read the values"
            )

    def role_of(self, owner: str) -> str | None:
        if owner in self.holders:
            return "holder"
        return "provider" if owner == self.provider else None

    def transcript(self, owner: str, role: str, cipher_key: bytes) -> bytes:
        """What ``owner`` signs: the computation as it sees it, its role, its key."""
        fields = (PROTOCOL, self.computation, ",".join(self.holders), self.provider,
                  str(self.fractional_bits), owner, role, cipher_key.hex())  # fmt: skip
        return "|".join(fields).encode()

    @property
    def digest(self) -> bytes:
        text = "|".join((PROTOCOL, self.computation, ",".join(self.holders), self.provider,
                         str(self.fractional_bits)))  # fmt: skip
        return hashlib.sha256(text.encode()).digest()


@dataclass
class SharedValue:
    """A holder's share of one tensor; ``derived``: computed (not an input as shared);
    ``expression``: how it was computed, from the names of the inputs (for the owner)."""

    share: torch.Tensor
    derived: bool
    expression: str


@dataclass
class _Triple:
    op: str
    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    e: torch.Tensor
    f: torch.Tensor
    expression: str


@dataclass
class Sealed:
    """A value sealed by ``sender`` to ``receiver`` (the wire's SealedWire, bytes)."""

    sender: str
    receiver: str
    nonce: bytes
    ciphertext: bytes

    def wire(self) -> dict[str, str]:
        return {"sender": self.sender, "receiver": self.receiver, "nonce": self.nonce.hex(),
                "ciphertext": self.ciphertext.hex()}  # fmt: skip


@dataclass
class Party:
    """``identity``'s part in the computation ``roster`` (thread-confined: one worker)."""

    identity: Identity
    roster: Roster
    max_bytes: int = MAX_BYTES
    #: told every change in the bytes of shares kept (+ before keeping: it may refuse, - after
    #: forgetting), so that an owner counts them against the scientist's quota
    account: Callable[[int], None] | None = None
    role: str = field(init=False)
    index: int | None = field(init=False)
    tensors: dict[str, SharedValue] = field(default_factory=dict, init=False)
    _key: object = field(init=False, repr=False)
    _pair_keys: dict[str, bytes] = field(default_factory=dict, init=False, repr=False)
    _triples: dict[str, _Triple] = field(default_factory=dict, init=False, repr=False)
    _dealt: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _names: set[str] = field(default_factory=set, init=False, repr=False)
    _comparisons: dict[str, compare.Group] = field(default_factory=dict, init=False, repr=False)
    _nbytes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.roster.check()
        role = self.roster.role_of(self.identity.id)
        if role is None:
            raise NotAllowed(f"this owner ({self.identity.id}) is not named in the computation")
        self.role = role
        self.index = self.roster.holders.index(self.identity.id) if role == "holder" else None
        self._key = crypto.new_key()

    # ---- keys
    def advertise(self) -> dict[str, str]:
        """This party's signed key (a PartyKeyWire's fields)."""
        public = crypto.public_bytes(self._key)  # type: ignore[arg-type]
        signature = self.identity.sign(self.roster.transcript(self.identity.id, self.role, public))
        return {"owner": self.identity.id, "role": self.role,
                "identity_key": self.identity.public_key.hex(), "cipher_key": public.hex(),
                "signature": signature.hex()}  # fmt: skip

    def agree(self, keys: Sequence[dict[str, str]]) -> None:
        """Check every party's signed key against the roster this party holds; derive a key
        with each other party. Raises ProtocolError naming what does not match."""
        if self._pair_keys:
            raise UsageError("the keys of this computation were agreed already")
        everyone = {*self.roster.holders, self.roster.provider}
        seen: dict[str, bytes] = {}
        for key in keys:
            owner, role = key["owner"], key["role"]
            if owner not in everyone or owner in seen:
                raise ProtocolError(f"a key from {owner}, who is not (or twice) in the computation")
            if role != self.roster.role_of(owner):
                raise ProtocolError(f"{owner}'s key claims the role {role!r}, not its own")
            identity_key = bytes.fromhex(key["identity_key"])
            if id_of(identity_key) != owner:
                raise ProtocolError(f"the identity key relayed for {owner} is not {owner}'s")
            cipher_key = bytes.fromhex(key["cipher_key"])
            try:
                verify(identity_key, bytes.fromhex(key["signature"]),
                       self.roster.transcript(owner, role, cipher_key), who=owner)  # fmt: skip
            except HandshakeError:
                raise ProtocolError(
                    f"{owner}'s key is not signed over the computation this party holds (another "
                    "roster, role, fixed point or key: the relay changed it, or the parties were "
                    "told different computations); refused, nothing was revealed"
                ) from None
            seen[owner] = cipher_key
        if set(seen) != everyone:
            raise ProtocolError(f"keys missing from {sorted(everyone - set(seen))}")
        mine = crypto.public_bytes(self._key)  # type: ignore[arg-type]
        if seen[self.identity.id] != mine:
            raise ProtocolError("the key relayed as this party's is not the one it made")
        for owner, public in seen.items():
            if owner == self.identity.id:
                continue
            try:
                secret = crypto.agree(self._key, public)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ProtocolError(f"{owner}'s key is not a usable X25519 key") from exc
            low, high = sorted((owner, self.identity.id))
            context = self.roster.digest + f"|{low}|{high}".encode()
            self._pair_keys[owner] = crypto.derive(secret, purpose="smpc pair", context=context)

    # ---- sealing
    def _associated(self, sender: str, receiver: str, kind: str, name: str, extra: str) -> bytes:
        return "|".join((PROTOCOL, self.roster.computation, sender, receiver, kind, name,
                         extra)).encode()  # fmt: skip

    def seal(self, receiver: str, kind: str, name: str, data: bytes, extra: str = "") -> Sealed:
        key = self._pair_key(receiver)
        ad = self._associated(self.identity.id, receiver, kind, name, extra)
        nonce, ciphertext = crypto.seal(key, data, ad)
        return Sealed(self.identity.id, receiver, nonce, ciphertext)

    def open(self, sealed: Sealed, sender: str, kind: str, name: str, extra: str = "") -> bytes:
        """The plaintext ``sender`` sealed to this party as ``kind`` ``name``; ProtocolError
        otherwise (forged, replayed into another slot, or meant for someone else)."""
        what = f"the {kind} {name!r} relayed from {sender}"
        if sealed.sender != sender or sealed.receiver != self.identity.id:
            raise ProtocolError(
                f"{what} is addressed from {sealed.sender} to {sealed.receiver}, not from "
                f"{sender} to this owner ({self.identity.id}); refused, nothing was revealed"
            )
        ad = self._associated(sender, self.identity.id, kind, name, extra)
        plain = crypto.open_sealed(self._pair_key(sender), sealed.nonce, sealed.ciphertext, ad)
        if plain is None:
            raise ProtocolError(
                f"{what} does not open: it was not sealed by {sender} for this slot of this "
                "computation (forged, replayed or changed by the relay); refused, nothing was "
                "revealed"
            )
        return plain

    def _pair_key(self, other: str) -> bytes:
        key = self._pair_keys.get(other)
        if key is None:
            raise UsageError(
                f"no key agreed with {other} in this computation (agree the keys first)"
            )
        return key

    # ---- holders: inputs and local operations
    def _holder(self) -> int:
        if self.index is None:
            raise NotAllowed(
                "this owner is the computation's crypto provider: it holds no shares and "
                "deals only triples"
            )
        if not self._pair_keys:
            raise UsageError("agree the computation's keys first")
        return self.index

    @property
    def other(self) -> str:
        return self.roster.holders[1 - self._holder()]

    def _new_name(self, name: str) -> None:
        if name in self._names:
            raise UsageError(f"the name {name!r} was used before in this computation")
        if len(self._names) >= MAX_NAMES:
            raise UsageError(f"this computation used its {MAX_NAMES} names")
        self._names.add(name)

    def _keep(self, name: str, share: torch.Tensor, derived: bool, expression: str) -> None:
        size = share.numel() * 8
        if share.numel() > MAX_ELEMENTS or self._nbytes + size > self.max_bytes:
            raise UsageError(
                f"{name!r} ({share.numel()} elements) would pass what a party keeps for one "
                f"computation ({MAX_ELEMENTS} elements a tensor, {self.max_bytes} bytes in all)"
            )
        if self.account is not None:
            self.account(size)
        self._nbytes += size
        self.tensors[name] = SharedValue(share.contiguous(), derived, expression[:300])

    def get(self, name: str) -> SharedValue:
        value = self.tensors.get(name)
        if value is None:
            raise UsageError(f"no shared tensor {name!r} in this computation here")
        return value

    def split(self, name: str, encoded: torch.Tensor, label: str) -> tuple[list[int], Sealed]:
        """Share this holder's input: keep ``encoded - r``, seal a fresh uniform ``r`` to the
        other holder."""
        self._holder()
        self._new_name(name)
        mask = ring.uniform(encoded.shape)
        self._keep(name, encoded - mask, False, label)
        shape = list(encoded.shape)
        sealed = self.seal(self.other, "input", name, to_bytes(mask), str(shape))
        return shape, sealed

    def accept(self, name: str, shape: list[int], sealed: Sealed, label: str) -> None:
        self._holder()
        _check_shape(shape)
        if name in self._names:
            raise UsageError(f"the name {name!r} was used before in this computation")
        plain = self.open(sealed, self.other, "input", name, str(shape))
        self._new_name(name)  # a forged share does not burn the name; the genuine one, once
        self._keep(name, from_bytes(plain, tuple(shape), f"input {name!r}"), False, label)

    def local(
        self,
        op: str,
        inputs: Sequence[str],
        result: str,
        scalar: float | int | None,
        dim: int | None,
        start: int | None = None,
        length: int | None = None,
    ) -> list[int]:
        """One operation each holder runs on its own share (no interaction: ``local_ops``)."""
        index = self._holder()
        values = [self.get(n) for n in inputs]
        try:
            out, text = local_ops.run(
                op, [v.share for v in values], [v.expression for v in values], holder=index,
                bits=self.roster.fractional_bits, scalar=scalar, dim=dim, start=start,
                length=length,
            )  # fmt: skip
        except (RuntimeError, OverflowError, ValueError) as exc:  # torch's, on shapes or sizes
            raise UsageError(f"{op} of {', '.join(inputs)}: {exc}") from None
        self._new_name(result)
        self._keep(result, out, True, text)
        return list(out.shape)

    # ---- multiplication (Beaver triples)
    def deal(self, triple: str, op: str, x_shape: list[int], y_shape: list[int]) -> list[Sealed]:
        """The provider: a triple for ``op`` on these shapes, each holder's part sealed to it."""
        if self.role != "provider":
            raise NotAllowed("only the computation's crypto provider deals triples")
        if not self._pair_keys:
            raise UsageError("agree the computation's keys first")
        x, y = _check_shape(x_shape), _check_shape(y_shape)
        out_shape = _product_shape(op, x, y)
        self._new_name(triple)
        dealings = dealer.deal_triple(2, torch.Size(x), torch.Size(y), _OPS[op])
        extra = _triple_extra(op, x, y)
        sealed = []
        for holder, dealing in zip(self.roster.holders, dealings, strict=True):
            data = dealing.seed
            for label, correction in dealing.corrections.items():
                if tuple(correction.shape) != out_shape:
                    raise AssertionError("a correction is c's")
                data += bytes([label]) + to_bytes(correction)
            sealed.append(self.seal(holder, "dealing", triple, data, extra))
        return sealed

    def mask(self, triple: str, op: str, x: str, y: str, dealing: Sealed) -> Sealed:
        """A holder: expand its dealing into its shares of a, b, c; seal its shares of the
        openings e = x - a, f = y - b to the other holder."""
        self._holder()
        xv, yv = self.get(x), self.get(y)
        x_shape, y_shape = tuple(xv.share.shape), tuple(yv.share.shape)
        out_shape = _product_shape(op, x_shape, y_shape)
        self._new_name(f"triple:{triple}")
        plain = self.open(dealing, self.roster.provider, "dealing", triple,
                          _triple_extra(op, x_shape, y_shape))  # fmt: skip
        seed, rest = plain[: ring.SEED_BYTES], plain[ring.SEED_BYTES :]
        corrections = {}
        if rest:
            corrections[rest[0]] = from_bytes(rest[1:], out_shape, "the dealing's correction")
        if len(seed) != ring.SEED_BYTES or (self.index == 1) != bool(corrections):
            raise ProtocolError(
                "the dealing is not a seed (and, for the last holder, c's correction)"
            )
        parts = dealer.triple_of(dealer.Dealing(seed, corrections), torch.Size(x_shape),
                                 torch.Size(y_shape), torch.Size(out_shape))  # fmt: skip
        e, f = xv.share - parts.a, yv.share - parts.b
        symbol = "@" if op == "matmul" else "*"
        self._triples[triple] = _Triple(op, parts.a, parts.b, parts.c, e, f,
                                        f"({xv.expression} {symbol} {yv.expression})")  # fmt: skip
        return self.seal(self.other, "opening", triple, to_bytes(e) + to_bytes(f))

    def multiply(self, triple: str, result: str, opening: Sealed) -> list[int]:
        """A holder: the other's openings in, its share of x (op) y out, truncated."""
        index = self._holder()
        pending = self._triples.pop(triple, None)  # used once, whatever happens
        if pending is None:
            raise UsageError(
                f"no opened triple {triple!r} here: mask with it first (each triple is used once)"
            )
        plain = self.open(opening, self.other, "opening", triple)
        size = pending.e.numel() * 8
        if len(plain) != size + pending.f.numel() * 8:
            raise ProtocolError("the openings relayed do not have the operands' sizes")
        e = pending.e + from_bytes(plain[:size], tuple(pending.e.shape), "e")
        f = pending.f + from_bytes(plain[size:], tuple(pending.f.shape), "f")
        op = _OPS[pending.op]
        z = pending.c + op(e, pending.b) + op(pending.a, f)
        if index == 0:
            z = z + op(e, f)
        out = local_ops.truncate(z, index, self.roster.fractional_bits)
        self._new_name(result)
        self._keep(result, out, True, pending.expression)
        return list(out.shape)

    # ---- comparisons and ReLU (duet.smpc.compare's protocol, comparison.py)
    def deal_comparison(
        self, name: str, part: int, op: compare.CompareOp, shape: list[int]
    ) -> list[Sealed]:
        """The provider: one part's mask bits and triples, each holder's blob sealed to it."""
        if self.role != "provider":
            raise NotAllowed("only the computation's crypto provider deals comparison masks")
        if not self._pair_keys:
            raise UsageError("agree the computation's keys first")
        dims = compare.check_shape(_check_shape(shape))
        self._new_name(f"comparison:{name}/{part}")
        blobs = compare.deal(op, dims)
        extra = f"{op}|{list(dims)}"
        return [self.seal(h, "comparison", f"{name}/{part}", b, extra)
                for h, b in zip(self.roster.holders, blobs, strict=True)]  # fmt: skip

    def compare(
        self,
        name: str,
        op: compare.CompareOp,
        x: str,
        result: str,
        part: int,
        parts: int,
        dealing: Sealed,
    ) -> Sealed:
        """A holder: start part ``part`` of ``parts`` of comparison ``name`` of ``x`` with 0
        (``op`` "relu": relu(x), kept as ``result``; "negative": [x < 0]) with the provider's
        dealing for it; its first message, sealed to the other holder. The parts are ``x``'s
        flattened elements in runs of ceil(n / parts)."""
        index = self._holder()
        value = self.get(x)
        group = self._comparisons.get(name)
        if group is None:
            if f"comparison:{name}" in self._names or result in self._names:
                raise UsageError(f"the comparison {name!r} or the name {result!r} was used before")
            group = compare.Group(op, value.share, result, parts, value.expression)
        elif (group.op, group.result, group.parts) != (
            op,
            result,
            parts,
        ) or group.x is not value.share:
            raise UsageError(f"part {part} does not belong to the comparison {name!r} as started")
        chunk = group.chunk(part)
        key = f"{name}/{part}"
        plain = self.open(
            dealing, self.roster.provider, "comparison", key, f"{op}|{[chunk.numel()]}"
        )
        if group.started(part):
            raise UsageError(f"part {part} of the comparison {name!r} was started before")
        working = compare.working_bytes(tuple(chunk.shape))
        if self.account is not None:
            self.account(working)  # held while the part runs (refused past the quota)
        try:
            machine = compare.Comparison(index, chunk, op, plain, self.roster.fractional_bits)
        except BaseException:
            if self.account is not None:
                self.account(-working)
            raise
        if name not in self._comparisons:  # a forged first dealing burns no name
            self._new_name(f"comparison:{name}")
            self._new_name(result)
            self._comparisons[name] = group
        group.machines[part] = machine
        return self.seal(self.other, "round", key, machine.outgoing, "0")

    def compare_round(self, name: str, part: int, message: Sealed) -> Sealed | list[int] | None:
        """A holder: the other holder's message of the step before in, this holder's next
        message out; after a part's last step None (its share kept), after the last part's the
        result's shape. Any failure ends the whole comparison here (its triples are not used
        again)."""
        self._holder()
        group = self._comparisons.get(name)
        machine = None if group is None else group.machines.get(part)
        if group is None or machine is None:
            raise UsageError(
                f"no comparison {name!r} (part {part}) running here: start it with its dealing "
                "(each comparison's masks and triples are used once; one that failed is not "
                "resumed)"
            )
        key = f"{name}/{part}"
        try:
            plain = self.open(message, self.other, "round", key, str(machine.step_count))
            out = machine.step(plain)
        except BaseException:
            self._end_comparison(name)
            raise
        if isinstance(out, bytes):
            return self.seal(self.other, "round", key, out, str(machine.step_count))
        group.finish(part, out)
        if self.account is not None:
            self.account(-compare.working_bytes(machine.shape))
        if not group.done:
            return None
        del self._comparisons[name]
        self._keep(group.result, group.joined(), True, group.text)
        return list(group.x.shape)

    def _end_comparison(self, name: str) -> None:
        group = self._comparisons.pop(name, None)
        if group is not None and self.account is not None:
            for machine in group.machines.values():
                if machine is not None:
                    self.account(-compare.working_bytes(machine.shape))

    # ---- revealing
    def releasable(self, name: str) -> SharedValue:
        """A computed tensor this holder may release its share of (after its owner agrees)."""
        self._holder()
        value = self.get(name)
        if not value.derived:
            raise NotAllowed(
                f"{name!r} is an input as it was shared, not a computed result: its shares are "
                "not opened (ask for the data itself with a get if that is what you want)"
            )
        return value

    def seal_result(self, name: str, receiver: str) -> Sealed:
        value = self.releasable(name)
        if receiver != self.other:
            raise NotAllowed(f"a result is revealed to the other share holder only, not {receiver}")
        return self.seal(
            receiver, "reveal", name, to_bytes(value.share), str(list(value.share.shape))
        )

    def combine(self, name: str, sealed: Sealed) -> torch.Tensor:
        """This holder's share plus the other's: the value, decoded from fixed point."""
        value = self.releasable(name)
        shape = list(value.share.shape)
        plain = self.open(sealed, self.other, "reveal", name, str(shape))
        total = value.share + from_bytes(plain, tuple(shape), "the revealed share")
        self.drop([name])
        return ring.decode(total, self.roster.fractional_bits, torch.float64)

    def drop(self, names: Sequence[str]) -> None:
        for name in names:
            value = self.tensors.pop(name, None)
            if value is not None:
                self._nbytes -= value.share.numel() * 8
                if self.account is not None:
                    self.account(-value.share.numel() * 8)

    def forget(self) -> None:
        """Drop every share and pending triple (the computation ends here)."""
        self.drop(list(self.tensors))
        self._triples.clear()
        for name in list(self._comparisons):
            self._end_comparison(name)


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(d) for d in shape)
    if int(np.prod(out, dtype=np.int64)) > MAX_ELEMENTS:
        raise UsageError(f"a tensor of shape {list(out)} is larger than {MAX_ELEMENTS} elements")
    return out


def _product_shape(op: str, x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    try:
        shape = _OPS[op](torch.empty(x, device="meta"), torch.empty(y, device="meta")).shape
    except RuntimeError as exc:
        raise UsageError(f"{op} of shapes {list(x)} and {list(y)}: {exc}") from None
    return _check_shape(tuple(shape))


def _triple_extra(op: str, x: tuple[int, ...], y: tuple[int, ...]) -> str:
    return f"{op}|{list(x)}|{list(y)}"


__all__ = ["PROTOCOL", "Party", "Roster", "Sealed", "SharedValue"]
