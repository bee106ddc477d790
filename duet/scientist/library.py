"""Remote libraries: ``duet.torch`` and ``duet.python`` mirror torch and Python's types.

Attribute access walks the allowlist: a namespace gives another proxy, a function gives a
callable that queues the call and returns a pointer, anything else is NotAllowed at once and
nothing is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotAllowed
from ..protocol import allowlist

if TYPE_CHECKING:
    from .client import PointerClient
    from .pointer import Pointer


class RemoteLibrary:
    def __init__(self, client: PointerClient, path: str):
        self._client = client
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        path = f"{self._path}.{name}"
        if path in allowlist.FUNCTIONS:
            return RemoteFunction(self._client, allowlist.FUNCTIONS[path])
        if path in allowlist.NAMESPACES:
            return RemoteLibrary(self._client, path)
        raise NotAllowed(f"{path!r} is not on the allowlist of remote operations")

    def __dir__(self) -> list[str]:
        prefix = self._path + "."
        names = {
            p[len(prefix) :].split(".")[0] for p in allowlist.FUNCTIONS if p.startswith(prefix)
        }
        return sorted(names)

    def __repr__(self) -> str:
        return f"<remote {self._path}>"


class RemoteFunction:
    __slots__ = ("_client", "op")

    def __init__(self, client: PointerClient, op: allowlist.Op):
        self._client = client
        self.op = op

    def __call__(self, *args: Any, **kwargs: Any) -> Pointer:
        return self._client.call(self.op, None, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote function {self.op.path}>"
