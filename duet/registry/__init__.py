"""A network of owners: owners list datasets on their signaling server's registry, scientists
search it and join the owners they find.

- ``records``: an owner's registration, signed with its identity (metadata, never values);
- ``client``: announce, withdraw and search over a websocket, every result verified;
- ``node``: an owner node's listing, announced, renewed before it expires, re-announced when
  it changes and withdrawn on close;
- ``search``: ``duet.search`` (a pandas table) and ``duet.join`` (a session and a pointer).
"""

from __future__ import annotations

from .client import Found, RegistryClient, RegistryError
from .search import join, search

__all__ = ["Found", "RegistryClient", "RegistryError", "join", "search"]
