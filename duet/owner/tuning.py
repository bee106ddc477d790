"""Settle the owner's process for serving: its memory allocator and its garbage collector.

Measured on the tutorial's training loop (bench/README.md): glibc's adaptive thresholds make the
owner give a step's activations back to the system and fault them in again on the next step
(+15 ms a step, 6,700 page faults), and the collector's full passes over the ~350,000 objects
torch's import leaves behind cost ~1.5 ms a step on average. So, once per process, when the
first owner session starts:

- glibc's allocator keeps blocks up to 32 MiB on its heap and returns freed memory only past
  1 GiB (``mallopt``); other allocators are left alone;
- the objects that exist at that moment (imports, mostly) are moved out of the collector's way
  (``gc.freeze``); objects made later are collected as usual;
- and again after a burst of imports (``settle_imports``, between a worker's frames): a
  scientist's first optimizer makes torch import its compiler stack (~900 modules, ~130,000
  objects), which each full collection then walked between a step's kernels (~45 ms each, on
  the tutorial's loop). What is alive at that moment is frozen with them: should some of it
  later become garbage in a reference cycle, it stays until the process ends. That happens once
  per burst, and bursts end once torch's modules are in.

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
# modules imported since the last freeze, past which a worker freezes again (settle_imports)
REFREEZE_MODULES = 50
_frozen_modules = 0


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
    global _done, _frozen_modules
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
    _frozen_modules = len(sys.modules)


def settle_imports() -> None:
    """Freeze again what a burst of imports left behind, once REFREEZE_MODULES modules came
    in since the last freeze (called by a worker between frames; cheap otherwise)."""
    global _frozen_modules
    if not _done or len(sys.modules) - _frozen_modules < REFREEZE_MODULES:
        return
    with _lock:
        if len(sys.modules) - _frozen_modules < REFREEZE_MODULES:
            return
        _frozen_modules = len(sys.modules)
        gc.collect()
        gc.freeze()
