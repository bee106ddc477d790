"""The two sessions, side by side, on one role-neutral ``Connection`` each (duet/connection.py).

- base.py: what both share (connected, close, wait_closed; closed at exit: ``LIVE``);
- owner.py: the owner's role: ``OwnerSession`` (a node serving many scientists), each
  scientist's ``ScientistLink``, admission, ``scientists`` views, and what the owner answers
  for messages it could not take;
- scientist.py: ``ScientistSession`` (what ``join_duet`` returns) and ``connect_scientist``;
- aio.py: the scientist's async face (``AsyncSession``: awaitable syncs and requests).

Users import these from ``duet``; this package imports owner/, scientist/, transport/,
protocol/, display/ and pairing/, and none of those imports it.
"""
