"""``duet.scientists``: the owner's view of who is connected now, and of who its identity knows
(a view over the node's links and its audit database; tables by display/)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..display import quoted

if TYPE_CHECKING:
    import pandas as pd

    from .owner import OwnerSession, ScientistLink


def claimed(name: str) -> str:
    """A name a scientist gave itself, as the owner is shown it: quoted, so that what the
    scientist wrote cannot run into the owner's own words, and marked: ``"Mallory" (claimed)``.
    "" for no name."""
    return f"{quoted(name)} (claimed)" if name else ""


class ScientistsView:
    """``duet.scientists``: who is connected now (``.pandas``), and who the owner knows."""

    def __init__(self, node: OwnerSession):
        self._node = node

    def __len__(self) -> int:
        return len(self._node.links)

    def __iter__(self) -> Iterator[ScientistLink]:
        return iter(list(self._node.links.values()))

    @property
    def pandas(self) -> pd.DataFrame:
        from ..display import scientists_frame

        return scientists_frame(self.rows())

    def rows(self) -> list[dict[str, object]]:
        """Who is connected now, as plain rows (``since``: seconds since the epoch)."""
        node = self._node
        rows = []
        for scientist, link in list(node.links.items()):
            quota = node.objects.quotas.get(scientist)
            rows.append(
                {
                    "scientist": scientist,
                    "name": node.scientist_name(scientist),
                    "since": link.since,
                    "objects": quota.objects if quota else 0,
                    "bytes": quota.bytes_used if quota else 0,
                    "pending": quota.pending if quota else 0,
                    "rule": str(node.access.rule_for(scientist)),
                }
            )
        return rows

    @property
    def known(self) -> pd.DataFrame:
        """Every scientist this owner's identity knows: confirmed by it (its ID typed or given,
        a confirm function's yes) or let in by a rule naming it; other owner identities sharing
        the duet home know their own. ID, name (the owner's, or the claimed one, marked), role,
        first and last seen."""
        from ..display import known_scientists_frame

        return known_scientists_frame(self.known_rows())

    def known_rows(self) -> list[dict[str, object]]:
        """What ``known`` shows, as plain rows (first and last seen: seconds since the epoch)."""
        node = self._node
        return [
            {**row, "name": row["name"] if row["named_by_owner"] else claimed(row["name"])}
            for row in node.audit.known_scientists(owner_id=node.identity.id)
        ]

    def forget(self, scientist: str) -> None:
        """This owner's identity no longer knows ``scientist`` (an ID): it is a stranger again,
        confirmed or refused as ``unknown`` says the next time it joins (a rule naming it still
        lets it in: remove the rule too)."""
        node = self._node
        node.audit.forget(scientist, owner_id=node.identity.id)

    def __repr__(self) -> str:
        return f"<{len(self)} scientists connected>"


__all__ = ["ScientistsView", "claimed"]
