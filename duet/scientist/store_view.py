"""``scientist.store``: the owner's published, pointable objects, as pointers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from ..errors import ProtocolError, UsageError
from ..protocol.messages import ListStore
from ..protocol.serde import JSONValue
from .tables import TablePointer

if TYPE_CHECKING:
    import pandas

    from .client import PointerClient
    from .pointer import Pointer


class RemoteStore:
    """Each access asks the owner for the current listing (one round trip)."""

    def __init__(self, client: PointerClient):
        self._client = client

    def _rows(self) -> list[dict[str, JSONValue]]:
        reply, _ = self._client.request(
            lambda rid: ListStore(rid=rid), timeout_secs=None, what="listing the owner's store"
        )
        self._client.raise_for(reply)
        rows = reply.value
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) for r in rows
        ):
            raise ProtocolError("the owner's store listing is malformed")
        return rows

    def _pointer(self, row: dict[str, JSONValue]) -> Pointer | TablePointer:
        meta: dict[str, object] = {
            k: row[k]
            for k in ("fields", "shape", "dtype", "tags", "description", "columns")
            if k in row
        }
        # the owner's listing: an id (checked in _rows) and a type key or None
        object_id, kind = cast(str, row["id"]), cast("str | None", row.get("kind"))
        if kind == "Table":  # read only by DP statistics (the owner refuses anything else)
            return TablePointer(self._client, object_id, meta)
        return self._client.pointer(object_id, kind, meta, owned=False)

    def __len__(self) -> int:
        return len(self._rows())

    def __iter__(self) -> Iterator[Pointer | TablePointer]:
        return iter([self._pointer(r) for r in self._rows()])

    def __getitem__(self, key: int | str) -> Pointer | TablePointer:
        rows = self._rows()
        if isinstance(key, int):
            if not -len(rows) <= key < len(rows):
                raise UsageError(
                    f"the owner's store lists {len(rows)} objects; index {key} is out of range"
                )
            return self._pointer(rows[key])
        for row in rows:
            if row["id"] == key:
                return self._pointer(row)
        # a row's tags: a list of strings (the owner's listing)
        matches = [r for r in rows if key in cast("list[str]", r.get("tags") or [])]
        if len(matches) == 1:
            return self._pointer(matches[0])
        if not matches:
            raise UsageError(f"no object in the owner's store has the id or tag {key!r}")
        described = ", ".join(
            f"{r['id']} ({r.get('description') or 'no description'})" for r in matches
        )
        raise UsageError(
            f"tag {key!r} matches {len(matches)} objects: {described}; use an id instead"
        )

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import store_frame

        return store_frame(self._rows())

    def __repr__(self) -> str:
        return f"<the owner's store: {len(self)} objects>"
