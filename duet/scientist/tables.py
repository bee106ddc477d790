"""A pointer to the owner's published table (a pandas DataFrame), and its columns.

A table is read only by DP statistics: ``duet.privacy.mean(births["weight_g"], bounds=...,
epsilon=...)``, ``duet.privacy.count(births, by="year", keys=years, epsilon=...)``. Indexing it
by a column name makes a local reference to that column (nothing is sent: the statistic runs
on the published table as it is); every other use (arithmetic, ``get``, ``.values``, torch
functions, indexing by position) is refused here with what to use instead, and the owner
refuses the same on its side whatever a scientist sends.

What the listing shows is here without a round trip: ``columns`` (names and dtypes),
``shape`` (rows, columns), ``tags``, ``description``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NoReturn

from ..errors import UsageError

if TYPE_CHECKING:
    from .client import PointerClient

REFUSED = (
    "{what}: only DP statistics read it "
    "(duet.privacy.mean(table['column'], bounds=(lo, hi), epsilon=...), sum, count, "
    "histogram; by='column', keys=[...] for groups); {use} is refused"
)


class _OnlyDp:
    """What a table and its columns refuse: any operator, torch function, or local use."""

    __slots__ = ()

    def _refuse(self, use: str) -> NoReturn:
        raise UsageError(self._refusal(use))

    def _refusal(self, use: str) -> str:
        raise NotImplementedError

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):  # Python's and IPython's probes stay attribute errors
            raise AttributeError(name)
        self._refuse(f".{name}")

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., object],
        types: Iterable[type],
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> NoReturn:
        raise UsageError(
            REFUSED.format(
                what="an argument is the owner's published table",
                use=getattr(func, "__name__", "a torch function"),
            )
        )

    def __setitem__(self, key: object, value: object) -> NoReturn:
        self._refuse("writing into it")

    def __iter__(self) -> NoReturn:
        self._refuse("iterating it")

    def __len__(self) -> NoReturn:
        self._refuse("len() (the listing's shape gives its rows)")

    def __bool__(self) -> NoReturn:
        self._refuse("its truth value")

    def __array__(self, *args: object, **kwargs: object) -> NoReturn:
        self._refuse("making it an array")

    def __reduce__(self) -> NoReturn:
        self._refuse("pickling it")

    __hash__ = object.__hash__


def _refused_operator(name: str) -> Callable[..., NoReturn]:
    def method(self: _OnlyDp, *args: object) -> NoReturn:
        self._refuse(f"the operator {name}")

    method.__name__ = name
    return method


for _name in (
    "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ "
    "__rfloordiv__ __mod__ __rmod__ __pow__ __rpow__ __matmul__ __rmatmul__ __neg__ __pos__ "
    "__abs__ __invert__ __lt__ __le__ __gt__ __ge__ __and__ __rand__ __or__ __ror__ __xor__ "
    "__rxor__ __iadd__ __isub__ __imul__ __itruediv__ __int__ __float__ __index__ __round__"
).split():
    setattr(_OnlyDp, _name, _refused_operator(_name))


class TablePointer(_OnlyDp):
    """The owner's published table ``object_id``, as the listing shows it (``meta``)."""

    __slots__ = ("_client", "id", "meta")

    def __init__(self, client: PointerClient, object_id: str, meta: dict[str, object]):
        self._client = client
        self.id = object_id
        self.meta = meta

    def _refusal(self, use: str) -> str:
        return REFUSED.format(what=f"object {self.id} is the owner's published table", use=use)

    @property
    def columns(self) -> dict[str, str]:
        """Its columns' names and dtypes, as the owner published them."""
        columns = self.meta.get("columns")
        if not isinstance(columns, dict):
            return {}
        return {str(k): str(v) for k, v in columns.items()}

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows, columns), as the owner's listing shows it."""
        shape = self.meta.get("shape")
        if not isinstance(shape, list):
            return ()
        return tuple(int(n) for n in shape if isinstance(n, int) and not isinstance(n, bool))

    @property
    def tags(self) -> list[str]:
        tags = self.meta.get("tags") or []
        return [str(t) for t in tags] if isinstance(tags, list | tuple) else []

    @property
    def description(self) -> str:
        return str(self.meta.get("description") or "")

    def __getitem__(self, name: object) -> Column:
        """A local reference to the column ``name`` (nothing is sent)."""
        if not isinstance(name, str):
            self._refuse(f"indexing it by {type(name).__name__} (a column is named: table['age'])")
        if name not in self.columns:
            raise UsageError(
                f"the table {self.id} has no column {name[:100]!r}; its columns are "
                f"{list(self.columns)}"
            )
        return Column(self, name)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n} ({d})" for n, d in self.columns.items())
        return f"<table {self.id} ({self.shape[0] if self.shape else '?'} rows): {shown}>"


class Column(_OnlyDp):
    """Column ``name`` of the published table ``table``: what a DP statistic reads."""

    __slots__ = ("name", "table")

    def __init__(self, table: TablePointer, name: str):
        self.table = table
        self.name = name

    def _refusal(self, use: str) -> str:
        what = f"column {self.name!r} of the owner's published table {self.table.id}"
        return REFUSED.format(what=what, use=use)

    @property
    def dtype(self) -> str:
        return self.table.columns.get(self.name, "")

    def __getitem__(self, key: object) -> NoReturn:
        self._refuse(f"indexing it by {str(key)[:100]!r}")

    def __repr__(self) -> str:
        return f"<column {self.name!r} ({self.dtype}) of table {self.table.id}>"


__all__ = ["Column", "TablePointer"]
