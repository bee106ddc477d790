"""``sy.logger``: PySyft's logging calls, on the standard library's ``logging``.

PySyft 0.5 logged through loguru; its notebooks call ``sy.logger.add(sink="./syft.log")`` to
keep a log and ``sy.logger.remove()`` to stop. duet logs through ``logging`` under the names
``duet`` and ``signaling_server``, and these functions attach and detach handlers there, so
that code runs unchanged with no new dependency::

    import duet as sy
    handler_id = sy.logger.add("duet.log", level="INFO")  # or sys.stderr, or a logging.Handler
    sy.logger.info("epoch", 3, "done")                    # your own lines, in the same log
    sy.logger.remove(handler_id)                          # or remove() for all of them

Levels are loguru's names (TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL, any case)
or numbers. Handlers you configure with ``logging`` yourself are left alone.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn, Protocol, TypeGuard

from .errors import UsageError

#: the loggers duet's own modules log under (their children included)
LOGGER_NAMES = ("duet", "signaling_server")
#: the lines written with ``sy.logger.info(...)`` and friends
USER_LOGGER = "duet.user"
LOG_FORMAT = "[%(asctime)s][%(levelname)s][%(name)s][%(process)d] %(message)s"
#: where ``add()`` with no sink writes, in the working folder (PySyft's was syft_{time}.log)
DEFAULT_SINK = "duet_{time}.log"
TRACE = 5
LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "SUCCESS": 25,
          "WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}  # fmt: skip

_lock = threading.Lock()
_ids = itertools.count(1)
_handlers: dict[int, logging.Handler] = {}
_saved_levels: dict[str, int] = {}  # each logger's own level before the first add()

for _name, _number in (("TRACE", TRACE), ("SUCCESS", 25)):
    if logging.getLevelName(_number) == f"Level {_number}":
        logging.addLevelName(_number, _name)


def _level(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    if isinstance(level, str) and level.upper() in LEVELS:
        return LEVELS[level.upper()]
    raise UsageError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)} or a number")


class _Stream(Protocol):
    """A stream a sink can be (``sys.stderr``, an open file)."""

    def write(self, text: str, /) -> object: ...


# what ``add`` takes: a file path, a stream, a logging.Handler or a function (None: the default)
Sink = logging.Handler | str | os.PathLike[str] | _Stream | Callable[[str], object] | None


def _is_stream(sink: object) -> TypeGuard[_Stream]:
    return callable(getattr(sink, "write", None))


class _CallableHandler(logging.Handler):
    """A function as a sink, as loguru takes one: called with each formatted line."""

    def __init__(self, sink: Callable[[str], object]):
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink(self.format(record))
        except Exception:
            self.handleError(record)


def _handler(sink: Sink) -> logging.Handler:
    if isinstance(sink, logging.Handler):
        return sink
    if sink is None:
        sink = DEFAULT_SINK
    if isinstance(sink, str | os.PathLike):
        path = os.fspath(sink).replace("{time}", time.strftime("%Y-%m-%d_%H-%M-%S"))
        return logging.FileHandler(path, encoding="utf-8")
    if _is_stream(sink):
        return logging.StreamHandler(sink)
    if callable(sink):
        return _CallableHandler(sink)
    raise UsageError(
        f"a log sink is a file path, a stream (sys.stderr), a logging.Handler or a function, "
        f"not {type(sink).__name__}"
    )


def add(sink: Sink = None, level: str | int = "ERROR") -> int:
    """Send duet's log records at ``level`` and above to ``sink``; returns the handler's id.

    ``sink``: a file path (``{time}`` in it becomes the date and time; appended to), a stream
    such as ``sys.stderr``, a ``logging.Handler``, or a function called with each line. None:
    ``duet_{time}.log`` in the working folder, as PySyft did. Raises UsageError for an unknown
    level or sink.
    """
    number = _level(level)
    handler = _handler(sink)
    handler.setLevel(number)
    if handler.formatter is None:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    with _lock:
        handler_id = next(_ids)
        _handlers[handler_id] = handler
        for name in LOGGER_NAMES:
            target = logging.getLogger(name)
            _saved_levels.setdefault(name, target.level)
            if target.getEffectiveLevel() > number:  # let the records reach the handler
                target.setLevel(number)
            target.addHandler(handler)
    return handler_id


def remove(handler_id: int | None = None) -> None:
    """Stop sending the log where ``add`` did: the handler ``handler_id``, or all of them.

    Files are closed. Loggers get back the levels they had before the first ``add``. Raises
    UsageError for an id ``add`` did not return (or that was removed already).
    """
    with _lock:
        if handler_id is None:
            chosen = list(_handlers)
        elif handler_id in _handlers:
            chosen = [handler_id]
        else:
            raise UsageError(f"no log handler {handler_id!r} to remove (add() returns the ids)")
        for key in chosen:
            handler = _handlers.pop(key)
            for name in LOGGER_NAMES:
                logging.getLogger(name).removeHandler(handler)
            handler.close()
        for name, saved in list(_saved_levels.items()):
            target = logging.getLogger(name)
            target.setLevel(saved)
            if not _handlers:
                del _saved_levels[name]
                continue
            lowest = min(h.level for h in _handlers.values())
            if target.getEffectiveLevel() > lowest:  # the remaining handlers still get theirs
                target.setLevel(lowest)


def start() -> int:
    """PySyft's ``start``: critical records to stderr."""
    return add(sys.stderr, level="CRITICAL")


def stop() -> None:
    """PySyft's ``stop``: remove every handler ``add`` attached."""
    remove()


def _log(level: int, args: tuple[object, ...], show: bool, exc_info: bool = False) -> None:
    message = " ".join(str(a) for a in args)
    if show:
        builtins.print(message, flush=True)
    logging.getLogger(USER_LOGGER).log(level, "%s", message, exc_info=exc_info)


def trace(*args: object, print: bool = False) -> None:
    """Log ``args`` (joined by spaces) at TRACE; ``print=True`` also prints them."""
    _log(TRACE, args, print)


def debug(*args: object, print: bool = False) -> None:
    """Log ``args`` at DEBUG; ``print=True`` also prints them."""
    _log(logging.DEBUG, args, print)


def info(*args: object, print: bool = False) -> None:
    """Log ``args`` at INFO; ``print=True`` also prints them."""
    _log(logging.INFO, args, print)


def warning(*args: object, print: bool = False) -> None:
    """Log ``args`` at WARNING; ``print=True`` also prints them."""
    _log(logging.WARNING, args, print)


def error(*args: object, print: bool = False) -> None:
    """Log ``args`` at ERROR; ``print=True`` also prints them."""
    _log(logging.ERROR, args, print)


def critical(*args: object, print: bool = False) -> None:
    """Log ``args`` at CRITICAL; ``print=True`` also prints them."""
    _log(logging.CRITICAL, args, print)


def traceback(*args: object, print: bool = False) -> None:
    """Log ``args`` at ERROR with the exception being handled (call it in an ``except``)."""
    _log(logging.ERROR, args, print, exc_info=True)


def traceback_and_raise(e: object, verbose: bool = False) -> NoReturn:
    """Log ``e`` (CRITICAL; with its traceback if ``verbose``) and raise it (an exception, or
    ``Exception(e)`` for anything else)."""
    error = e if isinstance(e, BaseException) else Exception(e)
    _log(logging.CRITICAL, (error,), False, exc_info=verbose)
    raise error


__all__ = [
    "add",
    "critical",
    "debug",
    "error",
    "info",
    "remove",
    "start",
    "stop",
    "trace",
    "traceback",
    "traceback_and_raise",
    "warning",
]
