"""Who may do what on the owner's side: access rules per scientist, and one for unknown ones.

A rule says whether a scientist may connect, which of the owner's published data it may
compute on (by tag; all, or none), and whether it may ask for releases at all. Rules are set
in code (``duet.access.allow(id, tags=[...], requests=False)``) or in a node's config file,
and checked on the owner for every action and every get (policy.py); a refusal names the rule.
A rule that names a scientist is the owner's word about it: an ``allow`` lets it in without a
confirmation (it becomes known to the owner's identity), and its ``name`` is the one the owner
sees for that scientist, whatever name the scientist claims.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas

DEFAULT = "default"


@dataclass(frozen=True)
class AccessRule:
    """``scientist``: an identity ID, or "default" for scientists without a rule of their own.
    ``tags``: the tags of published data it may compute on (None: all of it). ``name``: the
    owner's name for that scientist (shown in its place of the name it claims)."""

    scientist: str = DEFAULT
    connect: bool = True
    tags: frozenset[str] | None = None
    requests: bool = True
    name: str = ""

    def allows_data(self, tags: Iterable[str]) -> bool:
        return self.tags is None or bool(self.tags & set(tags))

    def __str__(self) -> str:
        who = "scientists without a rule" if self.scientist == DEFAULT else self.scientist
        parts = [f"connect={self.connect}"]
        parts.append("data=all" if self.tags is None else f"data tagged {sorted(self.tags)}")
        parts.append(f"requests={self.requests}")
        return f"the access rule for {who} ({', '.join(parts)})"


class AccessRules:
    """``duet.access``: the owner's rules, by scientist ID (``"default"`` for the rest)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, AccessRule] = {DEFAULT: AccessRule()}

    def allow(
        self,
        scientist: str = DEFAULT,
        *,
        tags: Iterable[str] | None = None,
        requests: bool = True,
        name: str = "",
    ) -> AccessRule:
        """Let ``scientist`` (an ID, or "default") connect; compute on the published data
        tagged ``tags`` (None: all; []: none); ask for releases if ``requests``. A scientist
        named by its ID is let in without being confirmed; ``name`` is what the owner calls it
        (shown instead of the name the scientist claims).

        >>> duet.access.allow("3fa2-91bc-0d4e-77a1", tags=["digits-train"], name="Ada")
        """
        if isinstance(tags, str):
            raise UsageError("tags is a list of tags, not one string")
        key = _key(scientist)
        rule = AccessRule(
            key,
            True,
            None if tags is None else frozenset(map(str, tags)),
            requests,
            _name(name, key),
        )
        with self._lock:
            self._rules[rule.scientist] = rule
        return rule

    def deny(self, scientist: str = DEFAULT, *, name: str = "") -> AccessRule:
        """Refuse ``scientist`` (or every scientist without a rule of its own) at the door;
        ``name``: what the owner calls it (in the log of its refusals)."""
        key = _key(scientist)
        rule = AccessRule(key, False, frozenset(), False, _name(name, key))
        with self._lock:
            self._rules[rule.scientist] = rule
        return rule

    def remove(self, scientist: str) -> None:
        key = _key(scientist)
        with self._lock:
            if key == DEFAULT:
                self._rules[DEFAULT] = AccessRule()
            elif self._rules.pop(key, None) is None:
                raise UsageError(f"no access rule for {scientist!r}")

    def rule_for(self, scientist: str) -> AccessRule:
        with self._lock:
            return self._rules.get(scientist) or self._rules[DEFAULT]

    def naming(self, scientist: str) -> AccessRule | None:
        """The rule that names ``scientist`` by its ID, or None (the default rule applies)."""
        if scientist == DEFAULT:
            return None
        with self._lock:
            return self._rules.get(scientist)

    def __iter__(self):  # type: ignore[no-untyped-def]
        with self._lock:
            return iter(list(self._rules.values()))

    def rows(self) -> list[dict[str, object]]:
        """Every rule as a plain row (what ``.pandas`` shows); ``tags`` None: all the data."""
        return [
            {"scientist": r.scientist, "name": r.name, "connect": r.connect, "tags": r.tags,
             "requests": r.requests}
            for r in self
        ]  # fmt: skip

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import access_frame

        return access_frame(self.rows())

    def __repr__(self) -> str:
        return f"<access rules: {len(self._rules)}>"


def _key(scientist: str) -> str:
    if scientist == DEFAULT:
        return DEFAULT
    from ..identity import ID_DIGITS

    digits = "".join(ch for ch in str(scientist).lower() if ch.isalnum())
    if len(digits) != ID_DIGITS or any(ch not in "0123456789abcdef" for ch in digits):
        raise UsageError(
            f"{scientist!r} is not a scientist ID like '3fa2-91bc-0d4e-77a1' (or 'default')"
        )
    return "-".join(digits[i : i + 4] for i in range(0, ID_DIGITS, 4))


def _name(name: str, key: str) -> str:
    if not isinstance(name, str):
        raise UsageError(f"name is a string, not {type(name).__name__}")
    if name and key == DEFAULT:
        raise UsageError("name is the owner's name for one scientist: give its ID too")
    return name.strip()
