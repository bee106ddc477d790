"""What a user sees, apart from what it is about: a scientist's text shown as data (text.py),
tables built from plain rows (tables.py), the owner's prompt (prompt.py), the countdown of a
wait (countdown.py) and the federation's progress board (progress.py).

Presentation only: this package imports no domain module of duet (tested), so any layer may
show things through it and nothing here reaches back.
"""

from __future__ import annotations

from .countdown import Countdown
from .tables import (
    access_frame,
    audit_frame,
    handlers_frame,
    held_frame,
    history_frame,
    known_scientists_frame,
    requests_frame,
    scientists_frame,
    sent_requests_frame,
    store_frame,
)
from .text import MAX_SHOWN, quoted, shown

__all__ = [
    "MAX_SHOWN",
    "Countdown",
    "access_frame",
    "audit_frame",
    "handlers_frame",
    "held_frame",
    "history_frame",
    "known_scientists_frame",
    "quoted",
    "requests_frame",
    "scientists_frame",
    "sent_requests_frame",
    "shown",
    "store_frame",
]
