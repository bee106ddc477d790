"""The scientist's side of secret-shared computation over duets: ``SecureComputation`` drives
two share holders and a crypto provider (owner nodes, joined as sessions) and relays what
they send each other, sealed end to end; ``RemoteShared`` is a tensor shared between the
holders, with PySyft's arithmetic.

    comp = SecureComputation(model_owner, data_owner, crypto_provider=provider)
    x = comp.share(data_owner.store["digits-heldout"])          # the data owner's input
    w = comp.share(model_owner.store["digits-model"], part="weight")
    b = comp.share(model_owner.store["digits-model"], part="bias")
    logits = x @ w.t() + b
    logits.reveal_to(data_owner, name="logits")                  # MLaaS: only it learns them
    logits.get(name="logits", reason="...").float_precision()    # or: a request to each holder

The scientist holds no share and is never the provider (refused); what it relays is
ciphertext it cannot open. Every call blocks until the parties answer (at most
``timeout_secs``); a reveal waits for each releasing owner's decision.
"""

from __future__ import annotations

import concurrent.futures
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ...errors import DuetTimeout, UsageError
from ...protocol.messages import Message, Reply
from ...protocol.smpc_messages import (
    LocalOp,
    PartyKeyWire,
    SealedWire,
    SmpcAccept,
    SmpcAgree,
    SmpcCompare,
    SmpcCompareDeal,
    SmpcDeal,
    SmpcDrop,
    SmpcKeys,
    SmpcLocal,
    SmpcMask,
    SmpcMultiply,
    SmpcReveal,
    SmpcRound,
    SmpcShare,
)
from ...scientist.pointer import Pointer
from .. import ring
from ..fixed import FixedPrecisionTensor
from .comparison import CompareOp, parts_for

if TYPE_CHECKING:
    from ...sessions.scientist import ScientistSession

DEFAULT_TIMEOUT_SECS = 60.0
Product = Literal["mul", "matmul"]
_DENIED = object()


def _owner(session: object, what: str) -> str:
    owner_id = getattr(session, "owner_id", "")
    if getattr(session, "client", None) is None or not isinstance(owner_id, str) or not owner_id:
        raise UsageError(
            f"{what} must be a joined duet (sy.join_duet(...)) whose owner proved its identity, "
            f"not {type(session).__name__}: the scientist holds no share and deals no triple"
        )
    return owner_id


class SecureComputation:
    """A computation shared between two owners (``holders``, in order) with
    ``crypto_provider`` (a third owner) dealing Beaver triples. Starting it agrees the
    parties' keys; each owner must allow it (``owner.allow_secure_computation``).

    Raises UsageError (not two holders, the scientist or a holder as the provider), NotAllowed
    (an owner's rule refuses), DuetTimeout."""

    def __init__(
        self,
        *holders: ScientistSession,
        crypto_provider: ScientistSession | None = None,
        precision_fractional: int = ring.DEFAULT_FRACTIONAL_BITS,
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
    ):
        if len(holders) == 1 and isinstance(holders[0], list | tuple):
            holders = tuple(holders[0])
        if len(holders) != 2:
            raise UsageError(
                f"a secure computation over duets has two share holders, not {len(holders)}: "
                "SecureComputation(model_owner, data_owner, crypto_provider=provider)"
            )
        if crypto_provider is None:
            raise UsageError(
                "crypto_provider= names a third owner's duet: the scientist is never the crypto "
                "provider (it could remove the masks it dealt and read the values)"
            )
        ids = [_owner(h, "a share holder") for h in holders]
        provider_id = _owner(crypto_provider, "the crypto provider")
        if provider_id in ids or any(crypto_provider is h for h in holders):
            raise UsageError(
                f"the crypto provider ({provider_id}) is also a share holder: a provider that "
                "holds a share can remove the masks it dealt; use a third owner"
            )
        if ids[0] == ids[1]:
            raise UsageError("the two share holders must be different owners")
        self.holders = tuple(holders)
        self.holder_ids = tuple(ids)
        self.provider = crypto_provider
        self.provider_id = provider_id
        self.precision_fractional = ring.check_fractional_bits(precision_fractional)
        self.timeout_secs = timeout_secs
        self.id = secrets.token_hex(16)
        self._count = 0
        parties = [*holders, crypto_provider]
        keys = self._all(parties, lambda s: lambda rid: SmpcKeys(
            rid=rid, computation=self.id, holders=list(ids), provider=provider_id,
            fractional_bits=self.precision_fractional,
        ), "keys")  # fmt: skip
        wires = [PartyKeyWire.model_validate(k) for k in keys]
        self._all(parties, lambda s: lambda rid: SmpcAgree(
            rid=rid, computation=self.id, keys=wires), "key agreement")  # fmt: skip

    # ---- talking to the parties
    def _name(self, prefix: str = "t") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _all(
        self,
        sessions: Sequence[ScientistSession],
        build: Callable[[ScientistSession], Callable[[int], Message]],
        what: str,
        *,
        timeout_secs: float | None = None,
    ) -> list[Any]:
        """Each session's answer to its message, asked of all at once (the first error
        raised, naming the owner)."""
        timeout = self.timeout_secs if timeout_secs is None else timeout_secs
        futures = [s.client.request_async(build(s)) for s in sessions]  # type: ignore[union-attr]
        return [_answer(s, f, what, timeout) for s, f in zip(sessions, futures, strict=True)]

    def _one(self, session: ScientistSession, build: Callable[[int], Message], what: str) -> Any:
        return self._all([session], lambda s: build, what)[0]

    def _holders(self, build: Callable[[int, int], Message], what: str) -> list[Any]:
        """Both holders' answers (``build(rid, holder index)``)."""
        index = {id(h): i for i, h in enumerate(self.holders)}
        return self._all(self.holders, lambda s: lambda rid: build(rid, index[id(s)]), what)

    # ---- sharing
    def share(
        self, pointer: Pointer, *, part: str | None = None, rows: slice | None = None
    ) -> RemoteShared:
        """Secret-share a holder's published tensor (``pointer``, from its ``store``), or one
        parameter of its published model (``part="weight"``), or some of its rows
        (``rows=slice(0, 1)``): the holder splits it and seals the other holder's share to it.
        Raises NotAllowed for data its owner's rule does not name."""
        span = None
        if rows is not None:
            if rows.step not in (None, 1) or rows.start is None or rows.stop is None:
                raise UsageError("rows= is a slice(start, stop) of the first dimension")
            span = [rows.start, rows.stop]
        if not isinstance(pointer, Pointer):
            raise UsageError(
                f"share() takes a pointer to a holder's object, not {type(pointer).__name__}"
            )
        owners = [i for i, h in enumerate(self.holders) if h.client is pointer._client]
        if not owners:
            raise UsageError(
                f"{pointer!r} is not on a share holder of this computation: the provider and the "
                "scientist share nothing"
            )
        i = owners[0]
        name = self._name()
        answer = self._one(self.holders[i], lambda rid: SmpcShare(
            rid=rid, computation=self.id, source=pointer.id, part=part, rows=span, result=name), "share")  # fmt: skip
        shape, sealed = _shape(answer), SealedWire.model_validate(answer["sealed"])
        self._one(self.holders[1 - i], lambda rid: SmpcAccept(
            rid=rid, computation=self.id, result=name, shape=shape, sealed=sealed), "share")  # fmt: skip
        return RemoteShared(self, name, shape)

    def _local(
        self,
        op: LocalOp,
        inputs: list[str],
        *,
        scalar: float | int | None = None,
        dim: int | None = None,
        start: int | None = None,
        length: int | None = None,
    ) -> RemoteShared:
        name = self._name()
        shapes = self._holders(lambda rid, _i: SmpcLocal(
            rid=rid, computation=self.id, op=op, inputs=inputs, result=name, scalar=scalar, dim=dim,
            start=start, length=length,
        ), op)  # fmt: skip
        return RemoteShared(self, name, _shape(shapes[0]))

    def _multiply(self, op: Product, x: RemoteShared, y: RemoteShared) -> RemoteShared:
        """Beaver: the provider deals, the holders open e and f to each other, each keeps its
        share of the product."""
        triple, name = self._name("b"), self._name()
        dealt = self._one(self.provider, lambda rid: SmpcDeal(
            rid=rid, computation=self.id, triple=triple, op=op, x_shape=x.shape, y_shape=y.shape,
        ), f"{op} (dealing)")  # fmt: skip
        if not isinstance(dealt, list) or len(dealt) != 2:
            raise UsageError("the crypto provider answered with something other than two dealings")
        dealings = [SealedWire.model_validate(d) for d in dealt]
        openings = [SealedWire.model_validate(o) for o in self._holders(lambda rid, i: SmpcMask(
            rid=rid, computation=self.id, triple=triple, op=op, x=x.name, y=y.name,
            dealing=dealings[i]), f"{op} (openings)")]  # fmt: skip
        shapes = self._holders(lambda rid, i: SmpcMultiply(
            rid=rid, computation=self.id, triple=triple, result=name, opening=openings[1 - i],
        ), f"{op} (product)")  # fmt: skip
        return RemoteShared(self, name, _shape(shapes[0]))

    def _each(
        self, asks: Sequence[tuple[ScientistSession, Callable[[int], Message]]], what: str
    ) -> list[Any]:
        """The answers to several messages (to any parties), all sent before any is awaited."""
        futures = [s.client.request_async(build) for s, build in asks]  # type: ignore[union-attr]
        return [_answer(s, f, what, self.timeout_secs)
                for (s, _), f in zip(asks, futures, strict=True)]  # fmt: skip

    def _compare(self, op: CompareOp, x: RemoteShared) -> RemoteShared:
        """``duet.smpc.compare``'s protocol between the holders: the provider deals each part's
        mask bits and triples, the holders exchange their messages step by step (every part at
        once: 2 + 9 round trips for [x < 0], 2 + 10 for relu), each keeps its share."""
        comparison, name = self._name("c"), self._name()
        elements = 1
        for d in x.shape:
            elements *= d
        parts = parts_for(elements)
        size = -(-elements // parts)
        holders = self.holders

        def deal(k: int) -> Callable[[int], Message]:
            shape = [min(size, elements - k * size)]
            return lambda rid: SmpcCompareDeal(rid=rid, computation=self.id,
                                               comparison=comparison, part=k, op=op, shape=shape)  # fmt: skip

        def start(k: int, i: int) -> Callable[[int], Message]:
            dealing = SealedWire.model_validate(dealt[k][i])
            return lambda rid: SmpcCompare(rid=rid, computation=self.id, comparison=comparison,
                                           op=op, x=x.name, result=name, part=k, parts=parts,
                                           dealing=dealing)  # fmt: skip

        def step(k: int, i: int) -> Callable[[int], Message]:
            message = SealedWire.model_validate(messages[k][1 - i])
            return lambda rid: SmpcRound(rid=rid, computation=self.id, comparison=comparison,
                                         part=k, message=message)  # fmt: skip

        dealt = self._each([(self.provider, deal(k)) for k in range(parts)], f"{op} (dealing)")
        for d in dealt:
            if not isinstance(d, list) or len(d) != 2:
                raise UsageError("the crypto provider answered with something other than dealings")
        sent = self._each(
            [(holders[i], start(k, i)) for k in range(parts) for i in (0, 1)], f"{op} (start)"
        )
        messages = {k: (sent[2 * k], sent[2 * k + 1]) for k in range(parts)}
        shape: list[int] | None = None
        while messages:
            live = sorted(messages)
            answers = self._each(
                [(holders[i], step(k, i)) for k in live for i in (0, 1)], f"{op} (round)"
            )
            for j, k in enumerate(live):
                pair = answers[2 * j], answers[2 * j + 1]
                if all(isinstance(a, dict) and "shape" in a for a in pair):
                    del messages[k]
                    if pair[0]["shape"] is not None:
                        shape = _shape(pair[0])
                elif any(isinstance(a, dict) and "shape" in a for a in pair):
                    raise UsageError(f"the holders disagree on when part {k} of {op} ends")
                else:
                    messages[k] = pair
        if shape is None:
            raise UsageError(f"the holders finished {op} without the result's shape")
        return RemoteShared(self, name, shape)

    def cat(self, tensors: Sequence[RemoteShared], dim: int = 0) -> RemoteShared:
        """``torch.cat`` of shared tensors of this computation, along ``dim``: each holder joins
        its own shares (no interaction)."""
        if not tensors:
            raise UsageError("cat takes at least one shared tensor")
        out = tensors[0]
        for other in tensors[1:]:
            out = self._local("cat", [out.name, out._other(other).name], dim=dim)
        return out

    def close(self) -> None:
        """Ask every party to forget this computation's shares."""
        self._all([*self.holders, self.provider], lambda s: lambda rid: SmpcDrop(
            rid=rid, computation=self.id), "closing")  # fmt: skip

    def __enter__(self) -> SecureComputation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<SecureComputation {self.id[:8]} holders {', '.join(self.holder_ids)}, "
                f"provider {self.provider_id}>")  # fmt: skip


class RemoteShared:
    """A tensor secret-shared between a computation's two holders (fixed point): + - of two
    sharings, a public number added or multiplied, * and @ of two sharings (Beaver), ``.t()``,
    ``.sum()``, ``** 2``, ``.relu()``, ``<`` and ``>`` with a sharing or a public number;
    ``get()`` and ``reveal_to()`` reconstruct it."""

    def __init__(self, computation: SecureComputation, name: str, shape: list[int]):
        self.computation = computation
        self.name = name
        self.shape = shape

    def _other(self, other: object) -> RemoteShared:
        if not isinstance(other, RemoteShared) or other.computation is not self.computation:
            raise UsageError("both operands must be shared in the same SecureComputation")
        return other

    def __add__(self, other: object) -> RemoteShared:
        if isinstance(other, int | float) and not isinstance(other, bool):
            return self.computation._local("add_public", [self.name], scalar=other)
        return self.computation._local("add", [self.name, self._other(other).name])

    __radd__ = __add__

    def __sub__(self, other: object) -> RemoteShared:
        if isinstance(other, int | float) and not isinstance(other, bool):
            return self + (-other)
        return self.computation._local("sub", [self.name, self._other(other).name])

    def __rsub__(self, other: object) -> RemoteShared:
        return -self + other

    def __neg__(self) -> RemoteShared:
        return self.computation._local("neg", [self.name])

    def __mul__(self, other: object) -> RemoteShared:
        if isinstance(other, int | float) and not isinstance(other, bool):
            return self.computation._local("mul_public", [self.name], scalar=other)
        return self.computation._multiply("mul", self, self._other(other))

    __rmul__ = __mul__

    def __matmul__(self, other: object) -> RemoteShared:
        return self.computation._multiply("matmul", self, self._other(other))

    mm = matmul = __matmul__

    def __pow__(self, exponent: object) -> RemoteShared:
        if exponent != 2 or isinstance(exponent, bool):
            raise UsageError("a shared tensor over duets takes ** 2 only (the square activation)")
        return self * self

    def square(self) -> RemoteShared:
        return self * self

    def t(self) -> RemoteShared:
        return self.computation._local("t", [self.name])

    def relu(self) -> RemoteShared:
        """max(x, 0) on shares, exact (no error of its own): ``duet.smpc.compare``'s
        comparison with 0 between the holders, then x times the shared bit [x >= 0]."""
        return self.computation._compare("relu", self)

    def abs(self) -> RemoteShared:
        """|x| on shares, exact: 2 relu(x) - x (one comparison)."""
        return self.relu() * 2 - self

    __abs__ = abs

    def __lt__(self, other: object) -> RemoteShared:
        """[x < y] as a shared 0 or 1 (fixed point); ``other`` shared or a public number."""
        return self.computation._compare("negative", self - other)

    def __gt__(self, other: object) -> RemoteShared:
        """[x > y] as a shared 0 or 1 (fixed point): the sign of y - x."""
        return self.computation._compare("negative", -self + other)

    def sum(self, dim: int | None = None) -> RemoteShared:
        return self.computation._local("sum", [self.name], dim=dim)

    def narrow(self, dim: int, start: int, length: int) -> RemoteShared:
        """Elements ``start`` to ``start + length`` along ``dim`` (a copy, as ``torch.narrow``
        would give a view)."""
        return self.computation._local("narrow", [self.name], dim=dim, start=start, length=length)

    def squeeze(self, dim: int) -> RemoteShared:
        return self.computation._local("squeeze", [self.name], dim=dim)

    def flatten(self) -> RemoteShared:
        return self.computation._local("flatten", [self.name])

    def _along(self, dim: int | None, what: str) -> tuple[RemoteShared, int, int]:
        """The tensor a tournament runs on (flattened if ``dim`` is None), its axis and count."""
        x = self.flatten() if dim is None else self
        if not -len(x.shape) <= (0 if dim is None else dim) < len(x.shape):
            raise UsageError(f"{what} over dim {dim} of a {len(self.shape)}-D shared tensor")
        axis = 0 if dim is None else dim % len(x.shape)
        if x.shape[axis] == 0:
            raise UsageError(f"{what}() of an empty shared tensor")
        return x, axis, x.shape[axis]

    def max(self, dim: int | None = None, keepdim: bool = False) -> RemoteShared:
        """The largest element (along ``dim``; of all, as a 0-dim tensor, if None), exact on
        shares: a tournament of ceil(log2 n) rounds, each one comparison of two halves,
        max(a, b) = b + relu(a - b). The values only (``argmax`` for the index)."""
        x, axis, count = self._along(dim, "max")
        while count > 1:
            half = count // 2
            first, second = x.narrow(axis, 0, half), x.narrow(axis, half, half)
            larger = second + (first - second).relu()
            if count % 2:  # the odd one out goes on to the next round as it is
                larger = self.computation.cat([larger, x.narrow(axis, 2 * half, 1)], axis)
            x, count = larger, half + count % 2
        return x if keepdim and dim is not None else x.squeeze(axis)

    def min(self, dim: int | None = None, keepdim: bool = False) -> RemoteShared:
        """The smallest element: -max(-x)."""
        return -(-self).max(dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> RemoteShared:
        """The index of the largest element along ``dim`` (into the flattened tensor if None),
        the first on ties as torch's, shared in fixed point: the same tournament as ``max``,
        each round one more comparison ([first >= second]) and one product that carries the
        winner's index. Each product's truncation may move the index by 2**-16, so it is
        within ``ceil(log2 n) * 2**-16`` of an integer: round what is revealed."""
        x, axis, count = self._along(dim, "argmax")
        # offset: how far the element now at each position is from its place in the input
        offset = x * 0
        while count > 1:
            half = count // 2
            first, second = x.narrow(axis, 0, half), x.narrow(axis, half, half)
            keep = 1 - (first < second)  # the first wins ties: torch's first index
            larger = second + (first - second).relu()
            moved = offset.narrow(axis, half, half) + half  # the second half moves down by half
            offset_next = moved + keep * (offset.narrow(axis, 0, half) - moved)
            if count % 2:  # the odd one out moves from 2 * half to half
                last = x.narrow(axis, 2 * half, 1)
                larger = self.computation.cat([larger, last], axis)
                carried = offset.narrow(axis, 2 * half, 1) + half
                offset_next = self.computation.cat([offset_next, carried], axis)
            x, offset, count = larger, offset_next, half + count % 2
        return offset if keepdim and dim is not None else offset.squeeze(axis)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> RemoteShared:
        """The index of the smallest element: argmax(-x)."""
        return (-self).argmax(dim, keepdim)

    def get(
        self, *, name: str = "", reason: str = "", timeout_secs: float = DEFAULT_TIMEOUT_SECS
    ) -> FixedPrecisionTensor | None:
        """Reconstruct here: a request to each holder (its handlers, or its owner, decide).
        Returns the FixedPrecisionTensor (``.float_precision()``), or None when either holder
        denies or lets the request time out. Each holder forgets its share once it released it."""
        comp = self.computation
        answers = comp._holders(lambda rid, _i: SmpcReveal(
            rid=rid, computation=comp.id, tensor=self.name, to="scientist", name=name or self.name,
            reason=reason, timeout_secs=timeout_secs), "reveal")  # fmt: skip
        if any(a is _DENIED for a in answers):
            return None
        import torch

        shares = [a for a in answers if isinstance(a, torch.Tensor) and a.dtype == torch.int64]
        if (
            len(shares) != 2
            or list(shares[0].shape) != self.shape
            or shares[0].shape != shares[1].shape
        ):
            raise UsageError("a holder answered the reveal with something other than its share")
        return FixedPrecisionTensor(
            shares[0] + shares[1], precision_fractional=comp.precision_fractional,
            dtype=torch.float32,
        )  # fmt: skip

    def reveal_to(
        self,
        holder: ScientistSession,
        *,
        name: str = "",
        reason: str = "",
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
    ) -> bool:
        """Reconstruct at ``holder`` only (seed 003's MLaaS: the data owner learns its
        predictions, the scientist nothing): the other holder's share, once its owner accepts,
        is sealed to ``holder``, which adds its own and keeps the value
        (``owner.secure_computation.results[name]``). Returns False when the other holder
        denied or let the request time out."""
        comp = self.computation
        matches = [i for i, h in enumerate(comp.holders) if h is holder]
        if not matches:
            raise UsageError("reveal_to() names one of the computation's two share holders")
        i = matches[0]
        target, other = comp.holders[i], comp.holders[1 - i]
        label = name or self.name
        sealed = comp._one(other, lambda rid: SmpcReveal(
            rid=rid, computation=comp.id, tensor=self.name, to=comp.holder_ids[i], name=label,
            reason=reason, timeout_secs=timeout_secs), "reveal")  # fmt: skip
        if sealed is _DENIED:
            return False
        wire = SealedWire.model_validate(sealed)
        comp._one(target, lambda rid: SmpcReveal(
            rid=rid, computation=comp.id, tensor=self.name, to=comp.holder_ids[i], name=label,
            sealed=wire), "reveal")  # fmt: skip
        return True

    def fix_precision(self, *_args: object, **_kwargs: object) -> RemoteShared:
        raise UsageError("this tensor is shared in fixed point already")

    def __repr__(self) -> str:
        return f"<RemoteShared {self.name} shape={tuple(self.shape)} in {self.computation!r}>"


def _answer(
    session: ScientistSession,
    future: concurrent.futures.Future[tuple[Reply, list[memoryview]]],
    what: str,
    timeout_secs: float,
) -> Any:
    owner = getattr(session, "owner_id", "") or "an owner"
    try:
        reply, buffers = future.result(timeout=max(0.0, timeout_secs) + 5.0)
    except concurrent.futures.TimeoutError:
        raise DuetTimeout(
            f"secure computation ({what}): owner {owner} did not answer within {timeout_secs} s"
        ) from None
    if reply.status in ("denied", "timeout"):
        return _DENIED
    client = session.client
    assert client is not None
    client.raise_for(reply)
    return client.decode(reply.value, buffers)


def _shape(answer: object) -> list[int]:
    shape = answer.get("shape") if isinstance(answer, dict) else None
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise UsageError("a holder answered without the result's shape")
    return shape


__all__ = ["RemoteShared", "SecureComputation"]
