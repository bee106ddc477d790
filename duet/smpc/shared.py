"""``x.share(bob, alice, crypto_provider=carol)``: additive shares in Z(2^64) on workers.

A ``SharedTensor`` holds one pointer per holder, to that holder's share; the shares add up (mod
2^64) to the secret's encoding. Linear operations run on each holder's share alone; a product
of two shared values uses a Beaver triple the crypto provider deals (provider.py); a fixed-point
product is truncated afterwards (truncation.py). Comparisons, ReLU, abs and max run
compare.py's protocol; shares created with ``requires_grad=True`` record their operations for
``backward()`` (autograd.py, gradients.py). ``get()`` reconstructs and deletes the shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

import torch

from ..errors import UsageError
from ..scientist.pointer import Pointer
from ..workers import VirtualWorker
from . import compare, ring
from . import gradients as rules
from . import provider as dealer
from .autograd import Differentiable, no_recording, record, tracked, untracked
from .fixed import FixedPrecisionTensor, set_sharer
from .parties import Share, check_holders, check_provider, deliver, open_value
from .truncation import divide_two_party, shift_with_provider

# torch's functions and Tensor's operators, by name, for calls with a SharedTensor among the
# arguments: torch_functions.py fills it (it builds on this module)
TORCH_FUNCTIONS: dict[str, Callable[..., object]] = {}


class SharedTensor(Differentiable):
    """Additive shares of a tensor held by two or more VirtualWorkers.

    ``precision_fractional`` is 0 for shared integers (``torch.tensor([25]).share(...)``) and
    the fixed-point precision for ``x.fix_precision().share(...)``. ``requires_grad``, ``grad``
    and ``backward()`` work as torch's (autograd.py).
    """

    def __init__(
        self,
        shares: Sequence[Share],
        holders: Sequence[VirtualWorker],
        *,
        crypto_provider: VirtualWorker | None,
        precision_fractional: int,
        dtype: torch.dtype,
        shape: torch.Size,
    ):
        self.shares = list(shares)
        self.holders = tuple(holders)
        self.crypto_provider = crypto_provider
        self.precision_fractional = precision_fractional
        self.dtype = dtype
        self.shape = torch.Size(shape)
        self._taken = False

    @classmethod
    def from_secret(
        cls,
        encoded: torch.Tensor,
        workers: Sequence[object],
        *,
        crypto_provider: object,
        precision_fractional: int,
        dtype: torch.dtype,
        options: dict[str, object],
    ) -> SharedTensor:
        if options.get("requires_grad") and precision_fractional == 0:
            raise UsageError(
                "share(requires_grad=True) on integers: gradients need fixed precision, "
                "x.fix_precision().share(..., requires_grad=True)"
            )
        unknown = set(options) - {"requires_grad", "protocol", "field", "dtype"}
        if unknown:
            raise UsageError(f"share() got unexpected keywords: {', '.join(sorted(unknown))}")
        if options.get("protocol") not in (None, "snn", "fss"):
            raise UsageError(f"share(protocol={options['protocol']!r}) is not known")
        if options.get("field") not in (None, 2**64) or options.get("dtype") not in (None, "long"):
            raise UsageError("duet shares live in Z(2^64) only (field=2**64, dtype='long')")
        holders = check_holders(workers)
        provider = check_provider(crypto_provider, holders)
        randoms = [ring.uniform(encoded.shape) for _ in holders[1:]]
        last = encoded - sum(randoms, start=torch.zeros_like(encoded))
        shares = [deliver(s, w) for s, w in zip([last, *randoms], holders, strict=True)]
        out = cls(
            shares,
            holders,
            crypto_provider=provider,
            precision_fractional=precision_fractional,
            dtype=dtype,
            shape=encoded.shape,
        )
        out.requires_grad = bool(options.get("requires_grad"))
        return out

    # -- bookkeeping
    def _like(self, shares: Sequence[Share], shape: torch.Size | None = None) -> SharedTensor:
        return SharedTensor(
            shares,
            self.holders,
            crypto_provider=self.crypto_provider,
            precision_fractional=self.precision_fractional,
            dtype=self.dtype,
            shape=self.shape if shape is None else shape,
        )

    def _integer(self, shares: Sequence[Share], shape: torch.Size) -> SharedTensor:
        """A sharing of integers (precision 0) among the same holders."""
        return SharedTensor(
            shares,
            self.holders,
            crypto_provider=self.crypto_provider,
            precision_fractional=0,
            dtype=torch.int64,
            shape=shape,
        )

    def _scaled_to(self, precision_fractional: int, dtype: torch.dtype) -> SharedTensor:
        """An integer sharing in fixed point: each share times 2^precision_fractional."""
        factor = 1 << precision_fractional
        return SharedTensor(
            [s * factor for s in self.shares],
            self.holders,
            crypto_provider=self.crypto_provider,
            precision_fractional=precision_fractional,
            dtype=dtype if precision_fractional else torch.int64,
            shape=self.shape,
        )

    def _constant(
        self,
        value: float,
        shape: torch.Size | tuple[int, ...] | None = None,
        *,
        precision_fractional: int | None = None,
    ) -> SharedTensor:
        """A public constant as a sharing among the same holders (the first holds it all)."""
        bits = self.precision_fractional if precision_fractional is None else precision_fractional
        size = torch.Size(self.shape if shape is None else shape)
        encoded = ring.encode(torch.full(size, float(value), dtype=torch.float64), bits)
        zeros = torch.zeros(size, dtype=torch.int64)
        shares = [deliver(encoded if i == 0 else zeros, w) for i, w in enumerate(self.holders)]
        out = self._integer(shares, size)
        out.precision_fractional = bits
        out.dtype = self.dtype if bits else torch.int64
        return out

    def _expanded(self, shape: torch.Size) -> SharedTensor:
        """Broadcast to ``shape`` (each holder its share)."""
        return self._like(self._copies(0, torch.Size(shape)), torch.Size(shape))

    def _assign(self, other: SharedTensor) -> None:
        """Take ``other``'s shares in place (an optimiser's update): this object, which a model
        holds, now stands for the new value."""
        self.shares = other.shares
        other.shares = []
        other._taken = True

    def _copies(self, start: int, shape: torch.Size | None = None) -> list[Share]:
        """Copies of the shares from ``start`` on, on their holders: a result never holds its
        input's pointers (its ``get()`` would take the input's shares away). Broadcast to
        ``shape`` when a public operand made the result larger."""
        if shape is None or shape == self.shape:
            return [s.copy() for s in self.shares[start:]]
        zeros = torch.zeros(shape, dtype=torch.int64)
        return [s + zeros for s in self.shares[start:]]

    def _check_live(self) -> None:
        if self._taken:
            raise UsageError(
                "this shared tensor was reconstructed with .get(): its shares are gone"
            )

    def _partner(self, other: SharedTensor, *, same_precision: bool = True) -> VirtualWorker | None:
        """Check ``other`` is shared among the same holders at the same precision; the crypto
        provider the two agree on."""
        other._check_live()
        if other.holders != self.holders:
            ours = ", ".join(repr(w.id) for w in self.holders)
            theirs = ", ".join(repr(w.id) for w in other.holders)
            raise UsageError(
                f"these tensors are shared among different workers ({ours} and {theirs}); "
                "share both among the same workers, in the same order"
            )
        if same_precision and other.precision_fractional != self.precision_fractional:
            raise UsageError(
                f"precision mismatch: precision_fractional={self.precision_fractional} and "
                f"{other.precision_fractional} (an integer sharing has 0); fix both with the "
                "same precision"
            )
        mine, its = self.crypto_provider, other.crypto_provider
        if mine is not None and its is not None and mine is not its:
            raise UsageError(
                f"these tensors have different crypto providers ({mine.id!r} and {its.id!r})"
            )
        return mine if mine is not None else its

    def _public(self, other: object) -> torch.Tensor | None:
        """A public operand in this sharing's encoding, or None if it is not one."""
        if isinstance(other, FixedPrecisionTensor):
            if other.precision_fractional != self.precision_fractional:
                raise UsageError(
                    f"precision mismatch: precision_fractional={self.precision_fractional} and "
                    f"{other.precision_fractional}"
                )
            return other.child
        if isinstance(other, bool):
            return None
        if isinstance(other, int | float | torch.Tensor):
            if isinstance(other, torch.Tensor) and type(other) is not torch.Tensor:
                raise UsageError(
                    f"a {type(other).__name__} (a value on a worker) cannot meet a shared tensor: "
                    "share it among the same workers first"
                )
            if self.precision_fractional == 0 and (
                isinstance(other, float)
                or (isinstance(other, torch.Tensor) and other.is_floating_point())
            ):
                raise UsageError(
                    "a float cannot meet an integer sharing: fix_precision() the secret first"
                )
            return ring.encode(other, self.precision_fractional)
        return None

    def _refuse(self, other: object, what: str) -> NoReturn:
        if isinstance(other, Pointer):
            raise UsageError(
                f"{what}: a pointer (a value on one worker) cannot meet a shared tensor; share it "
                "among the same workers first"
            )
        raise UsageError(f"{what}: not defined for {type(other).__name__}")

    # -- linear operations: each holder on its own share
    @tracked("add", rules.add_rule)
    def __add__(self, other: object) -> SharedTensor:
        self._check_live()
        if isinstance(other, SharedTensor):
            provider = self._partner(other)
            out = self._like([a + b for a, b in zip(self.shares, other.shares, strict=True)])
            out.crypto_provider = provider
            out.shape = torch.broadcast_shapes(self.shape, other.shape)
            return out
        public = self._public(other)
        if public is None:
            self._refuse(other, "+")
        shape = torch.broadcast_shapes(self.shape, public.shape)
        shares = [self.shares[0] + public, *self._copies(1, shape)]
        return self._like(shares, shape)

    __radd__ = __add__

    @tracked("neg", rules.neg_rule)
    def __neg__(self) -> SharedTensor:
        self._check_live()
        return self._like([s.neg() for s in self.shares])

    @tracked("sub", rules.sub_rule)
    def __sub__(self, other: object) -> SharedTensor:
        if isinstance(other, SharedTensor):
            return self + (-other)
        self._check_live()
        public = self._public(other)
        if public is None:
            self._refuse(other, "-")
        shape = torch.broadcast_shapes(self.shape, public.shape)
        shares = [self.shares[0] - public, *self._copies(1, shape)]
        return self._like(shares, shape)

    def __rsub__(self, other: object) -> SharedTensor:
        return (-self) + other

    @tracked("sum", rules.sum_rule)
    def sum(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> SharedTensor:
        """The sum of all elements, or along ``dim``: each holder sums its share."""
        self._check_live()
        if dim is None:
            shares = [s.sum() for s in self.shares]
            shape = torch.zeros(self.shape).sum().shape
        else:
            shares = [s.sum(dim, keepdim=keepdim) for s in self.shares]
            shape = torch.zeros(self.shape).sum(dim, keepdim=keepdim).shape
        return self._like(shares, shape)

    # -- products
    @tracked("mul", rules.mul_rule)
    def __mul__(self, other: object) -> SharedTensor:
        self._check_live()
        if isinstance(other, SharedTensor):
            return self._beaver(other, torch.mul, "*")
        if isinstance(other, int) and not isinstance(other, bool):
            return self._like([s * other for s in self.shares])  # an int is not scaled
        public = self._public(other)
        if public is None:
            self._refuse(other, "*")
        shape = torch.broadcast_shapes(self.shape, public.shape)
        return self._truncated([s * public for s in self.shares], shape, self.crypto_provider)

    __rmul__ = __mul__

    @tracked("matmul", rules.matmul_rule)
    def __matmul__(self, other: object) -> SharedTensor:
        self._check_live()
        if isinstance(other, SharedTensor):
            return self._beaver(other, torch.matmul, "@")
        public = self._public(other)
        if public is None:
            self._refuse(other, "@")
        shape = torch.matmul(torch.zeros(self.shape), torch.zeros(public.shape)).shape
        return self._truncated([s.matmul(public) for s in self.shares], shape, self.crypto_provider)

    @tracked("matmul", rules.rmatmul_rule)
    def __rmatmul__(self, other: object) -> SharedTensor:
        self._check_live()
        public = self._public(other)
        if public is None:
            self._refuse(other, "@")
        shape = torch.matmul(torch.zeros(public.shape), torch.zeros(self.shape)).shape
        shares = [
            deliver(public, w).matmul(s) for s, w in zip(self.shares, self.holders, strict=True)
        ]
        return self._truncated(shares, shape, self.crypto_provider)

    mm = matmul = __matmul__

    def _beaver(
        self,
        other: SharedTensor,
        op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        symbol: str,
    ) -> SharedTensor:
        provider = self._partner(other)
        shares, shape = self._beaver_shares(other, op, symbol, provider)
        return self._truncated(shares, shape, provider)

    def _times_integer(self, other: SharedTensor) -> SharedTensor:
        """Elementwise product with an integer sharing (0/1 bits, signs, indices): a Beaver
        product with no truncation, in this sharing's precision."""
        provider = self._partner(other, same_precision=False)
        shares, shape = self._beaver_shares(other, torch.mul, "*", provider)
        out = self._like(shares, shape)
        out.crypto_provider = provider
        return out

    def _beaver_shares(
        self,
        other: SharedTensor,
        op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        symbol: str,
        provider: VirtualWorker | None,
    ) -> tuple[list[Share], torch.Size]:
        """Shares of op(self, other) at scale 2^(f + f'), with a triple the provider deals."""
        if provider is None:
            raise UsageError(
                f"shared {symbol} shared needs a crypto provider to deal Beaver triples: "
                "share with crypto_provider=<a worker that holds no share>"
            )
        shape = op(torch.zeros(self.shape), torch.zeros(other.shape)).shape
        dealings = dealer.deal_triple(len(self.holders), self.shape, other.shape, op)
        eps, deltas, triples = [], [], []
        for x_i, y_i, dealing, worker in zip(
            self.shares, other.shares, dealings, self.holders, strict=True
        ):
            triple = dealer.triple_of(dealing, self.shape, other.shape, shape)
            a, b, c = (deliver(t, worker) for t in (triple.a, triple.b, triple.c))
            eps.append(x_i - a)
            deltas.append(y_i - b)
            triples.append((a, b, c))
        e, d = open_value(eps), open_value(deltas)  # uniform: masked by a and b
        shares = []
        for i, ((a, b, c), worker) in enumerate(zip(triples, self.holders, strict=True)):
            e_w, d_w = deliver(e, worker), deliver(d, worker)
            z = c + op(e_w, b) + op(a, d_w)  # type: ignore[arg-type]
            shares.append(z + op(e, d) if i == 0 else z)
        return shares, shape

    def _truncated(
        self, shares: list[Share], shape: torch.Size, provider: VirtualWorker | None
    ) -> SharedTensor:
        """A product's shares (scale 2^(2f)) brought back to scale 2^f."""
        out = self._like(shares, shape)
        out.crypto_provider = provider
        bits = self.precision_fractional
        if bits == 0:
            return out
        if len(self.holders) == 2:
            out.shares = divide_two_party(shares, 1 << bits)
        elif provider is not None:
            out.shares = shift_with_provider(shares, self.holders, shape, bits)
        else:
            raise UsageError(
                f"a fixed-point product among {len(self.holders)} holders needs a crypto provider "
                "for its truncation: share with crypto_provider=<a worker that holds no share>"
            )
        return out

    @tracked("div", rules.div_rule)
    def __truediv__(self, other: object) -> SharedTensor:
        """Division by a public positive int (PySyft's ``x / 2``)."""
        self._check_live()
        if isinstance(other, bool) or not isinstance(other, int) or other <= 0:
            raise UsageError(
                f"a shared tensor divides by a public positive int only, not {other!r} "
                "(division by a shared value needs a secure division protocol)"
            )
        if other == 1:
            return self._like(self._copies(0))
        if len(self.holders) == 2:
            return self._like(divide_two_party(self.shares, other))
        power = other.bit_length() - 1
        if other == 1 << power and self.crypto_provider is not None and power <= 62:
            return self._like(shift_with_provider(self.shares, self.holders, self.shape, power))
        if self.precision_fractional and self.crypto_provider is not None:
            return self * (1.0 / other)  # the reciprocal in fixed point, then truncation
        raise UsageError(
            f"dividing by {other} among {len(self.holders)} holders needs a crypto provider "
            "(and fixed precision unless the divisor is a power of two)"
        )

    __floordiv__ = __truediv__

    def __pow__(self, exponent: object) -> SharedTensor:
        """``x ** n`` for a public int n >= 1: products of x with itself (Beaver triples)."""
        self._check_live()
        if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 1:
            raise UsageError(
                f"a shared tensor takes a public int power >= 1 only, not {exponent!r}"
            )
        result: SharedTensor | None = None
        square = self
        while True:  # square and multiply: about 2 log2(n) products
            if exponent & 1:
                result = square if result is None else result * square
            exponent >>= 1
            if not exponent:
                break
            square = square * square
        assert result is not None
        return result if result is not self else self * 1

    # -- shape: each holder reshapes its own share
    def _reshaped(self, name: str, *args: object, **kwargs: object) -> SharedTensor:
        self._check_live()
        shape = getattr(torch.empty(self.shape, device="meta"), name)(*args, **kwargs).shape
        return self._like([getattr(s, name)(*args, **kwargs) for s in self.shares], shape)

    @tracked("view", rules.reshape_rule)
    def view(self, *shape: object) -> SharedTensor:
        return self._reshaped("view", *shape)

    @tracked("reshape", rules.reshape_rule)
    def reshape(self, *shape: object) -> SharedTensor:
        return self._reshaped("reshape", *shape)

    @tracked("flatten", rules.reshape_rule)
    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> SharedTensor:
        return self._reshaped("flatten", start_dim, end_dim)

    @tracked("t", rules.t_rule)
    def t(self) -> SharedTensor:
        return self._reshaped("t")

    @tracked("transpose", rules.transpose_rule)
    def transpose(self, dim0: int, dim1: int) -> SharedTensor:
        return self._reshaped("transpose", dim0, dim1)

    @tracked("permute", rules.permute_rule)
    def permute(self, *dims: object) -> SharedTensor:
        return self._reshaped("permute", *dims)

    @tracked("unsqueeze", rules.reshape_rule)
    def unsqueeze(self, dim: int) -> SharedTensor:
        return self._reshaped("unsqueeze", dim)

    @tracked("squeeze", rules.reshape_rule)
    def squeeze(self, *dim: object) -> SharedTensor:
        return self._reshaped("squeeze", *dim)

    @untracked("indexing (x[...])")
    def __getitem__(self, index: object) -> SharedTensor:
        return self._reshaped("__getitem__", index)

    # -- comparisons (compare.py): shared 0/1 in this sharing's precision
    def _bit(self, compute: Callable[[], SharedTensor]) -> SharedTensor:
        self._check_live()
        with no_recording():
            return compute()._scaled_to(self.precision_fractional, self.dtype)

    def __lt__(self, other: object) -> SharedTensor:
        return self._bit(lambda: compare.less_than(self, other))

    def __gt__(self, other: object) -> SharedTensor:
        return self._bit(lambda: compare.greater_than(self, other))

    def __le__(self, other: object) -> SharedTensor:
        return self._bit(lambda: 1 - compare.greater_than(self, other))

    def __ge__(self, other: object) -> SharedTensor:
        return self._bit(lambda: 1 - compare.less_than(self, other))

    def __eq__(self, other: object) -> SharedTensor:  # type: ignore[override]
        return self._bit(
            lambda: 1 - compare.less_than(self, other) - compare.greater_than(self, other)
        )

    def __ne__(self, other: object) -> SharedTensor:  # type: ignore[override]
        return self._bit(lambda: compare.less_than(self, other) + compare.greater_than(self, other))

    __hash__ = object.__hash__
    gt, ge, lt, le, eq, ne = __gt__, __ge__, __lt__, __le__, __eq__, __ne__

    def relu(self) -> SharedTensor:
        """max(x, 0); differentiable (its derivative is the comparison bit)."""
        self._check_live()
        with no_recording():
            out, positive = compare.relu(self)
        record(out, "relu", (self,), lambda g: (g._times_integer(positive),))
        return out

    @untracked("abs()")
    def abs(self) -> SharedTensor:
        """|x|: x times its shared sign."""
        self._check_live()
        return compare.absolute(self)

    __abs__ = abs

    @untracked("max()")
    def max(
        self, dim: int | None = None, keepdim: bool = False
    ) -> SharedTensor | compare.MaxResult:
        """The largest element; along ``dim``, torch's (values, indices) pair (indices shared,
        in this sharing's precision)."""
        self._check_live()
        result = compare.maximum(self, dim)
        if dim is None:
            return result.values
        if keepdim:
            return compare.MaxResult(result.values.unsqueeze(dim), result.indices.unsqueeze(dim))
        return result

    @untracked("argmax()")
    def argmax(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """The index of the largest element (the first on ties), shared; with ``dim=None`` an
        index into the flattened tensor, as torch's."""
        self._check_live()
        indices = compare.maximum(self, dim).indices
        return indices.unsqueeze(dim) if keepdim and dim is not None else indices

    def min(
        self, dim: int | None = None, keepdim: bool = False
    ) -> SharedTensor | compare.MaxResult:
        """The smallest element: -max(-x)."""
        result = (-self).max(dim, keepdim)
        if isinstance(result, compare.MaxResult):
            return compare.MaxResult(-result.values, result.indices)
        return -result

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        return (-self).argmax(dim, keepdim)

    # -- torch's functions (F.linear in a model's forward, tensor + shared, ...)
    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., object],
        types: object,
        args: Sequence[object] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        name = getattr(func, "__name__", repr(func))
        kwargs = kwargs or {}
        operation = TORCH_FUNCTIONS.get(name)
        if operation is None:
            raise UsageError(
                f"torch's {name} is not defined on shared tensors; they take + - * @ / by a "
                "public int, ** n, .sum(), F.linear, comparisons, relu, abs, max / argmax, and "
                "reshaping (view, t, transpose, [...])"
            )
        return operation(*args, **kwargs)

    # -- what is refused
    @property
    def is_sparse(self) -> bool:
        # torch's optimisers ask this of every gradient first: a shared model's gradient
        # reaching one means its optimiser was not converted
        raise UsageError(
            "torch's own optimiser cannot update shared weights: convert it, "
            "optim.SGD(params=model.parameters(), lr=0.1).fix_precision(), as PySyft's Part 12 "
            "does"
        )

    def __bool__(self) -> bool:
        raise UsageError("the truth of a shared tensor is secret: .get() it first")

    def float_precision(self) -> NoReturn:
        raise UsageError("reconstruct first: x.get().float_precision()")

    float_prec = float_precision

    def share(self, *args: object, **kwargs: object) -> NoReturn:
        raise UsageError("this tensor is shared already")

    def send(self, *args: object, **kwargs: object) -> NoReturn:
        raise UsageError("a shared tensor lives on its holders: .get() it first to move it")

    # -- reading
    def get(self) -> FixedPrecisionTensor | torch.Tensor:
        """Reconstruct: every holder's share comes back (and is deleted there) and the shares
        are added. A FixedPrecisionTensor (``.float_precision()`` for floats) for fixed
        precision, an int64 tensor for a shared integer."""
        self._check_live()
        secret = open_value(self.shares)
        self._taken = True
        self.shares = []
        if self.precision_fractional == 0:
            return secret
        return FixedPrecisionTensor(
            secret, precision_fractional=self.precision_fractional, dtype=self.dtype
        )

    @property
    def child(self) -> dict[str, Share]:
        """Each holder's share, by worker id (PySyft's ``x.child.child``)."""
        return {w.id: s for w, s in zip(self.holders, self.shares, strict=True)}

    @property
    def locations(self) -> list[VirtualWorker]:
        return list(self.holders)

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        kind = (
            f"fixed precision {self.precision_fractional} bits"
            if self.precision_fractional
            else "integers"
        )
        holders = ", ".join(w.id for w in self.holders)
        state = " (reconstructed)" if self._taken else ""
        grad = ", requires_grad" if self.requires_grad else ""
        return f"<SharedTensor shape={tuple(self.shape)} {kind} among {holders}{grad}{state}>"


def share(
    self: torch.Tensor, *workers: object, crypto_provider: object = None, **options: object
) -> SharedTensor:
    """``x.share(bob, alice, crypto_provider=carol)`` on an integer tensor: additive shares of
    its values (for floats, ``x.fix_precision().share(...)``)."""
    if self.is_floating_point() or self.is_complex():
        raise UsageError(
            f"share() on a {self.dtype} tensor: shares are integers; use "
            "x.fix_precision().share(...) for real numbers"
        )
    return SharedTensor.from_secret(
        ring.encode(self, 0),
        workers,
        crypto_provider=crypto_provider,
        precision_fractional=0,
        dtype=torch.int64,
        options=options,
    )


def _share_fixed(
    fixed: FixedPrecisionTensor,
    workers: tuple[object, ...],
    crypto_provider: object,
    options: dict[str, object],
) -> SharedTensor:
    return SharedTensor.from_secret(
        fixed.child,
        workers,
        crypto_provider=crypto_provider,
        precision_fractional=fixed.precision_fractional,
        dtype=fixed.dtype,
        options=options,
    )


set_sharer(_share_fixed)  # FixedPrecisionTensor.share

__all__ = ["TORCH_FUNCTIONS", "SharedTensor", "share"]
