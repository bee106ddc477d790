"""In-process owners by name and the scientist's session with each, for the federation tests;
``close()`` ends them all (the sessions first)."""

from __future__ import annotations

import duet as sy


class OwnerPairs:
    def __init__(self) -> None:
        self.owners: dict[str, sy.OwnerSession] = {}
        self.sessions: dict[str, sy.ScientistSession] = {}

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        for owner in self.owners.values():
            owner.close()
