"""The two sessions, side by side, on one role-neutral ``Connection`` each (duet/connection.py).

- base.py: what both share (connected, close, wait_closed; closed at exit: ``LIVE``);
- owner.py: the owner's role: ``OwnerSession`` (a node serving many scientists), each
  scientist's ``ScientistLink``, admitting, ``scientists`` views, and what the owner answers
  for messages it could not take;
- admission.py: the owner's door: a ``Verdict`` per scientist, strangers' confirmations;
- scientist.py: ``ScientistSession`` (what ``join_duet`` returns) and ``connect_scientist``;
- aio.py: the scientist's async face (``AsyncSession``: awaitable syncs and requests).

Users import these from ``duet``. This package imports the layers below it (owner/,
scientist/, transport/, protocol/, display/, pairing/, the connection, notices; the review page
when the owner asks for it), and none of those imports it (tests/test_layers.py).
"""
