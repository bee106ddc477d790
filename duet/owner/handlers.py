"""The owner's handlers: rules that decide requests the moment they arrive.

A handler matches what a request would release (the data it depends on, the op that made it,
its kind and size, a model's architecture), not what the scientist says about it; its name
narrows further but proves nothing. ``RequestQueue.add_handler`` builds one with
:func:`new_handler`, ``remove_handler`` finds them with :func:`choose`; the queue
(requests.py) applies them, first match wins. PySyft-Duet's ways of reading and removing
handlers are kept: ``handler["tags"]``, ``handlers[tag]``, ``remove_handler(str(id.value))``.
"""

from __future__ import annotations

import numbers
import re
import time
import warnings
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, SupportsIndex, overload

from ..errors import UsageError
from ..protocol.allowlist import FUNCTIONS, OP_NAMES, SHAPE_OPS
from .labels import shapes_only
from .snapshot import KINDS

if TYPE_CHECKING:
    import pandas
    from torch import nn

    from .requests import Request


class HandlerId(int):
    """A handler's id: a number (``remove_handler(3)``), with PySyft's ``.value``:
    ``remove_handler(str(handlers[0]["id"].value).replace("-", ""))`` removes it, as it removed
    a PySyft handler by its UID string."""

    __slots__ = ()

    @property
    def value(self) -> int:
        return int(self)


@dataclass(eq=False)
class Handler:
    """Decides matching requests at once. Create with ``requests.add_handler(...)``.

    A handler matches what is released, not what the scientist says about it: ``data_tags``
    must name a tag of every piece of the owner's data the value depends on, ``op_tags`` the
    operation that made it, ``kind`` and ``max_elements`` its type and size. ``name`` (chosen
    by the scientist) narrows further but proves nothing.
    """

    id: HandlerId
    name: str | None
    tags: list[str] | None
    data_tags: frozenset[str]
    op_tags: frozenset[str]
    kind: str | None
    max_elements: int | None
    action: str
    timeout_secs: float
    print_local: bool
    element_quota: int | None
    scientist: str | None = None  # only this scientist's requests (an identity ID)
    log_local: bool = False
    # op tags match the op at the end of any computation from the data (not only that op
    # applied to the published object as a whole)
    derived_inputs: bool = False
    # a model must have this architecture (derivation.architecture), or AS_SENT: the one it
    # had when the scientist sent it; either way its settings must not depend on the data
    architecture: str | None = None
    name_pattern: re.Pattern[str] | None = None  # the request's name must match it whole
    created: float = field(default_factory=time.monotonic)
    created_time: float = field(default_factory=time.time)  # wall clock, as PySyft showed it
    released: int = 0
    matched: int = 0

    # ---- read as a dict, as PySyft-Duet's handlers were (``handler["tags"]``)
    def keys(self) -> list[str]:
        return list(HANDLER_KEYS)

    def __getitem__(self, key: str) -> object:
        fields = self._fields()
        if key not in fields:
            raise KeyError(f"handlers have no {key!r}; they have {', '.join(HANDLER_KEYS)}")
        return fields[key]

    def _fields(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name,
            "tags": list(self.tags or []),  # PySyft's handlers always had a list
            "action": self.action, "timeout_secs": self.timeout_secs,
            "element_quota": self.element_quota, "print_local": self.print_local,
            "log_local": self.log_local, "created_time": self.created_time, "kind": self.kind,
            "max_elements": self.max_elements, "scientist": self.scientist,
            "released": self.released, "matched": self.matched,
            "derived_inputs": self.derived_inputs, "architecture": self.architecture,
        }  # fmt: skip

    def get(self, key: str, default: object = None) -> object:
        return self[key] if key in HANDLER_KEYS else default

    def __contains__(self, key: object) -> bool:
        return key in HANDLER_KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(HANDLER_KEYS)

    def __len__(self) -> int:
        return len(HANDLER_KEYS)

    def items(self) -> list[tuple[str, object]]:
        return list(self._fields().items())

    def values(self) -> list[object]:
        return list(self._fields().values())

    def expired(self, now: float) -> bool:
        return self.timeout_secs >= 0 and now - self.created > self.timeout_secs

    def matches(self, request: Request) -> bool:
        """Whether this handler says what ``request`` releases (its quota aside: ``spent``)."""
        if request.privacy is not None:  # the owner asked to review these by hand
            return False
        if self.scientist is not None and self.scientist != request.peer:
            return False
        if self.name is not None and self.name != _normalize(request.name):
            return False
        if self.name_pattern is not None and not self.name_pattern.fullmatch(request.name):
            return False
        if self.kind is not None and request.kind != self.kind:
            return False
        if self.max_elements is not None and request.elements > self.max_elements:
            return False
        if self.architecture is not None:
            wanted = (
                request.sent_architecture if self.architecture == AS_SENT else self.architecture
            )
            if (
                request.kind != "module"
                or request.settings_private
                or wanted is None
                or request.architecture != wanted
            ):
                return False
        if self.tags is not None:
            if self.op_tags:
                made_by = request.op if self.derived_inputs else request.whole
                if made_by not in self.op_tags:
                    return False
                if self.op_tags <= SHAPE_OPS and not shapes_only(request.label):
                    return False  # a length handler releases shapes, never values
            if self.data_tags or not self.op_tags:
                # every source of the value must be data the handler names; unknown ones never
                if not request.label or any(
                    source.kind == "unknown" or not (source.tags & self.data_tags)
                    for source in request.label
                ):
                    return False
        return True

    def spent(self, request: Request) -> bool:
        """Whether accepting ``request`` would pass this handler's ``element_quota``."""
        return (
            self.action == "accept"
            and self.element_quota is not None
            and self.released + request.elements > self.element_quota
        )

    @property
    def constrained(self) -> bool:
        """True when the handler says something about what is released (not only its name)."""
        return (
            self.tags is not None
            or self.kind is not None
            or self.max_elements is not None
            or self.architecture is not None
        )


# what ``handler[key]`` reads: PySyft-Duet's keys, then ours
HANDLER_KEYS = ("id", "name", "tags", "action", "timeout_secs", "element_quota", "print_local",
                "log_local", "created_time", "kind", "max_elements", "scientist", "released",
                "matched", "derived_inputs", "architecture")  # fmt: skip


def _owner_facts() -> frozenset[str]:
    """The tags of the owner's own information (``torch.cuda.is_available``, a dataset read
    from its files): a handler may name them as it names published data."""
    return frozenset(path for path, op in list(FUNCTIONS.items()) if op.owner_data)


#: ``add_handler(architecture=AS_SENT)``: a model must have the architecture it was sent with
AS_SENT = "as sent"


def scientist_id(text: str) -> str:
    from .access import _key

    return _key(text)


def _architecture(model: object) -> str:
    from torch import nn

    from .derivation import architecture

    if isinstance(model, str):
        return model  # a digest, as the request table shows it
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"architecture is a model (an nn.Module) or AS_SENT, not {type(model).__name__}"
        )
    found = architecture(model)
    if found is None:
        raise UsageError(f"the architecture of this {type(model).__name__} cannot be described")
    return found


def _count(argument: str, value: object) -> int | None:
    """``value`` as a number of elements (an int >= 0, or None); UsageError naming
    ``argument`` otherwise (a bool, a float, a string are not counts)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(
            f"{argument} is a whole number of elements (an int >= 0) or None, not "
            f"{type(value).__name__} {value!r}"
        )
    if value < 0:
        raise UsageError(f"{argument} is a number of elements, at least 0, not {value}")
    return int(value)


def _seconds(argument: str, value: object) -> float:
    """``value`` as seconds (a number >= 0, or -1: never); UsageError naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(
            f"{argument} is a number of seconds (or -1: never), not {type(value).__name__} "
            f"{value!r}"
        )
    seconds = float(value)
    if seconds != seconds or (seconds < 0 and seconds != -1):  # NaN, or a negative but -1
        raise UsageError(f"{argument} is a number of seconds >= 0, or -1 (never), not {value}")
    return seconds


def _normalize(name: str | None) -> str:
    return (name or "").strip().lower()


class HandlerWarning(UserWarning):
    """A handler that accepts requests by their name alone (the scientist chooses names), or
    whose tags name nothing the owner has published."""


def new_handler(
    handler_id: int,
    data_tags: Collection[str],
    *,
    name: str | None,
    tags: list[str] | None,
    action: str,
    timeout_secs: float,
    print_local: bool,
    log_local: bool,
    element_quota: int | None,
    kind: str | None,
    max_elements: int | None,
    scientist: str | None,
    derived_inputs: bool,
    architecture: nn.Module | str | None,
    name_pattern: str | None,
) -> Handler:
    """The handler ``RequestQueue.add_handler`` adds (its docstring says what each argument
    means), its arguments checked; ``data_tags``: the tags of what the owner has published.
    Warns (HandlerWarning, at the owner's call) about a handler that matches nothing or accepts
    by name alone."""
    if action not in ("accept", "deny"):
        raise UsageError(f"action must be 'accept' or 'deny', not {action!r}")
    element_quota = _count("element_quota", element_quota)
    max_elements = _count("max_elements", max_elements)
    timeout_secs = _seconds("timeout_secs", timeout_secs)
    if kind is not None and kind not in KINDS:
        raise UsageError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    if isinstance(tags, str):
        raise UsageError("tags is a list of tags, not one string")
    tag_list = None if tags is None else [str(t) for t in tags]
    wanted = None
    if architecture is not None:
        wanted = AS_SENT if architecture == AS_SENT else _architecture(architecture)
    pattern = None
    if name_pattern is not None:
        try:
            pattern = re.compile(name_pattern)
        except re.error as exc:
            raise UsageError(
                f"name_pattern {name_pattern!r} is not a regular expression: {exc}"
            ) from None
    op_tags = frozenset(t for t in tag_list or () if t in OP_NAMES and t not in data_tags)
    # a handler whose data tags name nothing published (nor the owner's own information,
    # tagged with the op's path) matches nothing: a misspelt tag, or data not yet published
    named = frozenset(tag_list or ()) - op_tags
    unpublished = sorted(named)
    if named and not named & (frozenset(data_tags) | _owner_facts()):
        known = ", ".join(repr(t) for t in sorted(data_tags)) or "none yet"
        warnings.warn(
            f"tags {unpublished} name nothing you have published (the published tags: "
            f"{known}), so this handler matches no request until data with those tags is "
            "published; check the spelling, or publish first",
            HandlerWarning,
            stacklevel=4,
        )
    handler = Handler(
        id=HandlerId(handler_id),
        name=None if name is None else _normalize(name),
        tags=tag_list,
        data_tags=frozenset(tag_list or ()) - op_tags,
        op_tags=op_tags,
        kind=kind,
        max_elements=max_elements,
        action=action,
        timeout_secs=float(timeout_secs),
        print_local=print_local,
        element_quota=element_quota,
        scientist=None if scientist is None else scientist_id(scientist),
        log_local=bool(log_local),
        derived_inputs=bool(derived_inputs),
        architecture=wanted,
        name_pattern=pattern,
    )
    if action == "accept" and not handler.constrained:
        what = f"named {name!r}" if name is not None else "of any kind"
        warnings.warn(
            f"this handler accepts every request {what}, whatever it releases (the "
            "scientist chooses request names); constrain it by what is released: "
            "tags=[...] (the data's tags and op names like '__len__'), kind=..., "
            "max_elements=...",
            HandlerWarning,
            stacklevel=4,
        )
    return handler


def choose(
    handlers: list[Handler],
    handler: Handler | int | str | list[str] | tuple[str, ...] | None,
    *,
    name: str | None,
    tags: list[str] | tuple[str, ...] | None,
) -> list[Handler]:
    """The handlers ``RequestQueue.remove_handler`` removes (its docstring says how they are
    named); UsageError when the naming is ambiguous or matches none."""
    if handler is not None and (name is not None or tags is not None):
        raise UsageError("name the handler either by itself or by name=/tags=, not both")
    if isinstance(handler, list | tuple):
        handler, tags = None, handler
    if isinstance(tags, str):
        raise UsageError("tags is a list of tags, not one string")
    if handler is None and name is None and tags is None:
        raise UsageError(
            "say which handler to remove: remove_handler(handler), (name), (tags) "
            "or clear_handlers()"
        )
    by_id = (
        [h for h in handlers if str(h.id) == handler.strip()] if isinstance(handler, str) else []
    )  # PySyft's remove_handler(id string): the id first, as PySyft looked it up
    if by_id:
        chosen = by_id
    elif handler is not None:
        chosen = [
            h
            for h in handlers
            if h is handler
            or (isinstance(handler, int) and not isinstance(handler, bool)
                and h.id == handler)
            or (isinstance(handler, str) and h.name == _normalize(handler))
        ]  # fmt: skip
        if not chosen and isinstance(handler, str):  # PySyft's handlers[tag]
            chosen = [h for h in handlers if h.tags is not None and handler in h.tags]
            if len(chosen) > 1:
                raise UsageError(
                    f"{len(chosen)} handlers have the tag {handler!r} (handler ids "
                    f"{[h.id for h in chosen]}); remove one by its id, or by all its "
                    "tags: remove_handler(tags=[...])"
                )
    else:
        wanted = None if tags is None else {str(t) for t in tags}
        chosen = [
            h
            for h in handlers
            if (name is None or h.name == _normalize(name))
            and (wanted is None or (h.tags is not None and set(h.tags) == wanted))
        ]
    if not chosen:
        what = repr(handler) if handler is not None else _described(name, tags)
        known = ", ".join(_shown(h) for h in handlers) or "none"
        raise UsageError(f"no handler matches {what}; the handlers are: {known}")
    return chosen


class HandlerList(list[Handler]):
    @overload
    def __getitem__(self, key: SupportsIndex | str) -> Handler: ...

    @overload
    def __getitem__(self, key: slice) -> list[Handler]: ...

    def __getitem__(self, key: SupportsIndex | slice | str) -> Handler | list[Handler]:
        """A handler by position, or (PySyft's ``handlers[key]``) by its id's string or by the
        one tag it alone has. Raises KeyError naming the handlers otherwise."""
        if not isinstance(key, str):
            return super().__getitem__(key)
        chosen = [h for h in self if str(h.id) == key.strip()]
        if not chosen:
            chosen = [h for h in self if h.tags is not None and key in h.tags]
        if len(chosen) == 1:
            return chosen[0]
        known = ", ".join(_shown(h) for h in self) or "none"
        what = "no handler has" if not chosen else f"{len(chosen)} handlers have"
        raise KeyError(f"{what} the id or tag {key!r}; the handlers are: {known}")

    def rows(self) -> list[dict[str, object]]:
        """Every handler as a plain row (what ``.pandas`` shows)."""
        return [
            {
                "id": h.id, "name": h.name, "tags": h.tags, "scientist": h.scientist,
                "kind": h.kind, "max_elements": h.max_elements, "action": h.action,
                "timeout_secs": h.timeout_secs, "print_local": h.print_local,
                "element_quota": h.element_quota, "released": h.released, "matched": h.matched,
            }
            for h in self
        ]  # fmt: skip

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import handlers_frame

        return handlers_frame(self.rows())

    @property
    def handlers(self) -> list[Handler]:
        """The handlers as a plain list (PySyft's ``duet.requests.handlers.handlers``)."""
        return list(self)


def _described(name: str | None, tags: Iterable[str] | None) -> str:
    parts = ([] if name is None else [f"name={name!r}"]) + (
        [] if tags is None else [f"tags={list(tags)!r}"]
    )
    return ", ".join(parts)


def _shown(handler: Handler) -> str:
    return f"{handler.id} (name={handler.name!r}, tags={handler.tags!r}, {handler.action})"
