"""duet's errors, shown short: the user's own lines and duet's message, not the library's insides.

A duet error a user causes (a wrong session ID, no signaling server at the URL, a refused join)
already says what happened and what to do. Left to Python, it would be printed under 20 to 30
lines of asyncio, websockets and duet internals and the chain of errors behind it. When such an
error is not caught, duet prints the frames of the user's code that led into duet, then the
error, and says how to see the rest:

    Traceback (most recent call last):
      File "scientist.py", line 3, in <module>
        duet = sy.join_duet("ab12...", signaling_url="ws://127.0.0.1:5000")
    duet.pairing.signaling.SignalingUnreachable: cannot connect to the signaling server ...
    (duet left out its internals; DUET_DEBUG=1 shows the whole traceback)

Nothing is lost: the exception keeps its ``__cause__`` and traceback (a debugger, ``except``,
``traceback.print_exc()`` see them all), and with ``DUET_DEBUG=1`` in the environment Python's
own report is printed. Other exceptions are left to whatever shows them. Installed by
``launch_duet`` and ``join_duet`` (a script's ``sys.excepthook`` when it is Python's own, an
IPython shell's handler when it has none), never at import.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import DuetError

PACKAGE = str(Path(__file__).resolve().parent)
DEBUG_ENV = "DUET_DEBUG"
HINT = f"(duet left out its internals; {DEBUG_ENV}=1 shows the whole traceback)"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def short_report(exc: BaseException, tb: TracebackType | None = None) -> str:
    """``exc`` as the user should see it: the frames of their code up to where duet was called,
    the error's type and message, and the hint."""
    frames = []
    for frame in traceback.extract_tb(tb if tb is not None else exc.__traceback__):
        if str(Path(frame.filename).resolve()).startswith(PACKAGE):
            break  # from here on: duet's insides
        frames.append(frame)
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines.append(f"{public_name(type(exc))}: {exc}\n")
    lines += [f"{note}\n" for note in getattr(exc, "__notes__", ())]
    return "".join(lines) + HINT + "\n"


def public_name(kind: type[BaseException]) -> str:
    """The name a user knows an error by: the nearest class of ``duet.errors`` it is
    (``duet.SignalingError``, not the transport's subclass of it)."""
    for cls in kind.__mro__:
        if cls.__module__ == "duet.errors":
            return f"duet.{cls.__name__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if isinstance(exc, DuetError) and not debugging():
        sys.stderr.write(short_report(exc, tb))
        sys.stderr.flush()
        return
    sys.__excepthook__(kind, exc, tb)


def _ipython_handler(
    shell: Any,  # Any: IPython's shell, which duet does not depend on
    kind: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> list[str]:
    """IPython's handler for duet errors: it shows the report itself (IPython's ``run_code``
    ignores what the handler returns) as the cell's error, and returns it."""
    if debugging():
        shown = list(shell.InteractiveTB.structured_traceback(kind, exc, tb, tb_offset=tb_offset))
    else:  # the first frame is IPython's own (run_code's exec), as its tracebacks skip it
        shown = [short_report(exc, tb.tb_next if tb is not None else None)]
    show = getattr(shell, "_showtraceback", None)  # what ipykernel sends as the cell's error
    if callable(show):
        show(kind, exc, shown)
    else:
        sys.stderr.write("".join(shown))
    return shown


def install() -> None:
    """Show uncaught duet errors short from now on (idempotent; leaves others' hooks alone)."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    if shell is not None and not getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((DuetError,), _ipython_handler)


__all__ = ["DEBUG_ENV", "install", "short_report"]
