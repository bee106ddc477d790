"""Settle the owner's process for serving: its memory allocator and its garbage collector.

Measured on the tutorial's training loop (bench/README.md): glibc's adaptive thresholds make the
owner give a step's activations back to the system and fault them in again on the next step
(+15 ms a step, 6,700 page faults), and the collector's full passes over the ~350,000 objects
torch's import leaves behind cost ~1.5 ms a step on average. So, once per process, when the
first owner session starts:

- glibc's allocator keeps blocks up to 32 MiB on its heap and returns freed memory only past
  1 GiB (``mallopt``); other allocators are left alone;
- the objects that exist at that moment (imports, mostly) are moved out of the collector's way
  (``gc.freeze``); objects made later are collected as usual.

Each scientist's operations run on a thread of their own, and glibc gives threads arenas of
their own: what a departed scientist freed stays in its arena, which the next scientist's thread
may not be given, so the owner's resident memory grew with the arenas in rotation (three
visits of 60 MB each: 181 MB) though it held nothing. ``give_back_memory()``, called when a
scientist leaves, returns the free memory of every arena to the system.

``DUET_OWNER_TUNING=0`` leaves the process as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False
_lock = threading.Lock()


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def give_back_memory() -> None:
    """Return the free memory of every allocator arena to the system (glibc's
    ``malloc_trim``); nothing elsewhere, or with ``DUET_OWNER_TUNING=0``."""
    if os.environ.get("DUET_OWNER_TUNING", "1") == "0":
        return
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)


def tune_owner_process() -> None:
    global _done
    with _lock:
        if _done or os.environ.get("DUET_OWNER_TUNING", "1") == "0":
            return
        _done = True
    libc = _libc()
    if libc is not None:
        try:
            ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(
                _M_TRIM_THRESHOLD, 1 << 30
            )
            if not ok:
                log.info("mallopt refused the owner's allocator settings; left as they are")
        except AttributeError:  # not glibc
            log.debug("no glibc mallopt here; the allocator is left as it is")
    gc.freeze()
