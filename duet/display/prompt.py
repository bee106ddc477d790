"""The owner's questions at the keyboard: one line asked, one line read.

The answer is read by ``read``: the built-in ``input`` unless another is given (a test's, or a
front end's), so what is asked can be checked without a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import UsageError

Read = Callable[[str], str]
CLIENT_ID_QUESTION = "♫♫♫ > a scientist wants to join; enter the client ID it was shown: "


def ask_client_id(*, read: Read | None = None) -> str:
    """The client ID the owner types when a scientist wants to join, as typed (the caller
    compares it). ``read`` asks the question and returns the answer (default: ``input``).
    Raises UsageError when nobody can answer: no ``read`` given and standard input closed."""
    if read is None:
        if not sys.stdin or sys.stdin.closed:
            raise UsageError(
                "confirm=True needs someone to type the client ID; pass confirm='<id>'"
            )
        read = input
    return read(CLIENT_ID_QUESTION)
