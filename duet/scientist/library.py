"""Remote libraries: ``duet.torch`` and ``duet.python`` mirror torch and Python's types.

Attribute access walks the allowlist: a namespace gives another proxy, a function gives a
callable that queues the call and returns a pointer, anything else is NotAllowed at once and
nothing is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import NotAllowed
from ..protocol import allowlist

if TYPE_CHECKING:
    from .client import PointerClient
    from .pointer import Pointer


class RemoteLibrary:
    def __init__(self, client: PointerClient, path: str):
        self._client = client
        self._path = path

    # Any: a RemoteFunction or a RemoteLibrary, as the allowlist says at run time: chains such as
    # ``duet.torch.nn.Linear(4, 2)`` must type-check
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

    def __call__(self, *args: object, **kwargs: object) -> Pointer:
        return self._client.call(self.op, None, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote function {self.op.path}>"


GYM_REFUSAL = (
    "reinforcement-learning environments are not exposed by duet: an environment is arbitrary "
    "code and state on the owner's machine (its step() runs a simulator that may read files, "
    "render, or carry the owner's state into its observations), and duet cannot label what it "
    "computes as the owner's or yours, so it could neither run it safely nor decide what may be "
    "released. Run the environment on your side and send the observations "
    "(duet.torch.from_numpy(state)), or ask the owner to publish recorded episodes"
)


SYFT_REFUSAL = (
    "PySyft's own remote modules are not exposed by duet: its RemoteDataset(path) made the owner "
    "torch.load (unpickle) a file the scientist named, and duet opens no path a scientist picks "
    "and unpickles nothing. Ask the owner to publish the dataset (duet.publish(dataset, "
    "tags=[...]), or duet serve's [[publish]]) and load it with "
    "duet.torch.utils.data.DataLoader(duet.store['<tag>'], batch_size=32)"
)


class RefusedLibrary:
    """A library PySyft offered remotely that duet refuses (``duet.gym``): using any of it
    raises NotAllowed saying why; nothing is sent."""

    def __init__(self, name: str, why: str):
        self._name = name
        self._why = why

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotAllowed(f"{self._name}.{name}: {self._why}")

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        raise NotAllowed(f"{self._name}: {self._why}")

    def __repr__(self) -> str:
        return f"<{self._name}: not available in duet>"
