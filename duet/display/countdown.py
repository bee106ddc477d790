"""A visible wait: one line saying what is awaited and how long is left.

In a terminal the line is rewritten in place each second; elsewhere (a notebook, a log file) a
line is printed when the wait starts and then every ``quiet_every_secs``, so a notebook cell
does not fill up. Used by ``join_duet`` while the owner has not launched yet, and by a
scientist's blocking request while the owner decides.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO


class Countdown:
    """``total_secs`` from now; ``pause(secs)`` waits (at most until the deadline) while the
    line counts down, ``done()`` clears it. Not thread-safe: one waiting caller."""

    def __init__(
        self,
        what: str,
        total_secs: float,
        *,
        stream: TextIO | None = None,
        quiet_every_secs: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self.total_secs = total_secs
        self.stream = stream if stream is not None else sys.stderr
        self.quiet_every_secs = quiet_every_secs
        self._clock = clock
        self.deadline = clock() + total_secs
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty()) if callable(isatty) else False
        self._shown: float | None = None  # the seconds left last shown
        self._width = 0

    def left(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - self._clock())

    def show(self, note: str = "") -> None:
        """Say what is awaited and how long is left (rate-limited as the module says)."""
        left = math.ceil(self.left())
        if self._shown is not None:
            if left == self._shown:
                return
            if not self.live and self._shown - left < self.quiet_every_secs:
                return
        self._shown = left
        text = f"♫♫♫ > {self.what}: {left} s left" + (f" ({note})" if note else "")
        if self.live:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def pause(self, secs: float, note: str = "") -> None:
        """Wait ``secs`` (never past the deadline), updating the line each second."""
        end = min(self._clock() + secs, self.deadline)
        while (remaining := end - self._clock()) > 0:  # at most secs + 1 turns
            self.show(note)
            time.sleep(min(remaining, 1.0))
        self.show(note)

    def wait_for(self, ready: Callable[[float], bool], note: str = "") -> bool:
        """Wait until ``ready(secs)`` (which blocks for at most ``secs`` waiting for what is
        awaited, a future or an event) says True, or the deadline passes, updating the line
        each second. Returns whether it became ready."""
        while True:
            self.show(note)
            left = self.left()
            if ready(min(left, 1.0)):
                return True
            if left <= 0:
                return False

    def done(self) -> None:
        """End the wait: a terminal line is cleared; a printed one stays."""
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        self._width = 0
