"""``sy.lib.python``: PySyft's Python primitives, as local values that can be sent.

PySyft code builds a value here and sends it::

    x_ptr = sy.lib.python.List([1, 2, 3]).send(duet)      # a pointer to your own list
    total = duet.python.Float(0.0)                        # the same kind of object, made remotely

``Int``, ``Float``, ``String``, ``List``, ``Dict`` and ``Tuple`` are the builtin types with
``send`` and ``upcast`` added, so they work wherever the builtin does. ``Bool`` wraps a bool
(``bool`` cannot be subclassed). What travels is always the plain Python value: on the owner's
side it is an ordinary ``list`` (or ``int``...), the object ``duet.python.List(...)`` makes.

PySyft's other primitives (``Set``, ``Complex``, ``Range``, ``Slice``, ``SyNone``,
``Iterator``, ``Any``, ``PyPrimitive``, ``collections``) have no remote counterpart in duet:
naming one raises NotAllowed.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ..errors import NotAllowed, UsageError
from ..scientist import tagging
from ..sessions.owner import OwnerSession

#: deeper than this is refused before anything is sent (the wire refuses it anyway)
MAX_DEPTH = 64


class Primitive:
    """What the sendable primitives add to their builtin type: ``send``, ``upcast``, and
    ``tag`` / ``describe`` before sending (as tensors have)."""

    tag = tagging.tag
    describe = tagging.describe

    def upcast(self) -> object:
        """The plain Python value (``list``, ``int``...), containers converted all the way down."""
        return plain(self)

    def send(
        self,
        session: object,
        *,
        pointable: bool | None = None,
        tags: list[str] | None = None,
        description: str = "",
        searchable: bool | None = None,
        listed: bool = False,
    ) -> Any:  # Any: the owner's stored entry, or a pointer that callers chain calls on
        """Send the value to a duet session (or worker) as ``x.send(duet)`` sends a tensor.

        To an owner session: publish it (``pointable=False`` keeps it out of the scientist's
        listing); returns the stored entry. To a scientist session: store it on the owner's
        side as your own object; returns a pointer. Raises UsageError for anything else.
        """
        value = plain(self)
        tags, description = tagging.sent_tags(self, tags, description)  # or those of .tag()
        on_network = bool(listed)  # registered on the network, not only in the owner's store
        listed = tagging.visibility(pointable, searchable)  # (``searchable``: PySyft's name)
        if isinstance(session, OwnerSession):
            return session.publish(
                value, pointable=listed, tags=tags, description=description, listed=on_network
            )
        send_value = getattr(session, "send_value", None)  # a fixed name, on a local object
        if send_value is None:
            raise UsageError(f"send() takes a duet session or worker, not {type(session).__name__}")
        return send_value(value, tags=tags, description=description)


class Int(Primitive, int):
    pass


class Float(Primitive, float):
    pass


class String(Primitive, str):
    pass


class List(Primitive, list):  # type: ignore[misc]
    pass


class Dict(Primitive, dict):  # type: ignore[misc]
    pass


class Tuple(Primitive, tuple):  # type: ignore[misc]
    pass


class Bool(Primitive):
    """A bool that can be sent: ``sy.lib.python.Bool(True).send(duet)``."""

    def __init__(self, value: object = False):
        self.value = bool(value)

    def __bool__(self) -> bool:
        return self.value

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, Bool) else other)

    def __hash__(self) -> int:
        return hash(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


def plain(value: object, depth: int = 0) -> object:
    """``value`` with every primitive of this module replaced by its builtin value."""
    if depth > MAX_DEPTH:
        raise UsageError(f"a value nested deeper than {MAX_DEPTH} levels cannot be sent")
    if isinstance(value, Bool):
        return value.value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, tuple) and type(value) in (tuple, Tuple):  # not a named tuple
        return tuple(plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in value.items()}
    return value  # tensors and the rest travel as they are


_NOT_IN_DUET = {
    "Set": "send a List",
    "Complex": "send a complex number as it is (x.send is not needed: pass it as an argument)",
    "Range": "send a List of the numbers, or a Tuple (start, stop, step)",
    "Slice": "index a pointer with a slice directly: ptr[1:3]",
    "SyNone": "use None",
    "_SyNone": "use None",
    "Iterator": "iterate the remote List or DataLoader itself",
    "Any": "use the value's own type",
    "PyPrimitive": "use the value's own type",
    "collections": "send a Dict (it keeps insertion order)",
}


def __getattr__(name: str) -> NoReturn:
    instead = _NOT_IN_DUET.get(name)
    if instead is not None:
        raise NotAllowed(
            f"sy.lib.python.{name} has no remote counterpart in duet ({instead}); the Python "
            "types a duet sends are Bool, Dict, Float, Int, List, String and Tuple"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Bool", "Dict", "Float", "Int", "List", "Primitive", "String", "Tuple", "plain"]
