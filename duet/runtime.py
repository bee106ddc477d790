"""The library's one background event loop, started lazily on first use, never at import.

Sessions, channels and timers live on this loop; notebook code calls in from its own thread.
The caller's event loop (Jupyter's) is never touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import TypeVar

from .errors import DuetTimeout, UsageError

T = TypeVar("T")
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    # uvloop, when installed, moves packets faster (aiortc is CPU-bound in Python per packet)
    if os.environ.get("DUET_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread or not _thread.is_alive():
            loop = _new_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="duet-loop", daemon=True)
            _thread.start()
            ready.wait(10)
            _loop = loop
        return _loop


def shutdown(timeout_secs: float = 5.0) -> None:
    """Stop the library loop: cancel what still runs on it, stop it, wait for its thread.

    Called at interpreter exit (after the sessions said goodbye): a loop thread still running
    native code (aiortc's, uvloop's) while the interpreter tears its modules down can crash the
    process on its way out. The next ``get_loop()`` starts a new loop."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or thread is None or not thread.is_alive() or on_loop_thread():
        return

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_secs)
        await loop.shutdown_asyncgens()

    try:
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout_secs)
    except Exception:  # best effort: stop the loop whatever its tasks did
        pass
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout_secs)
    if not thread.is_alive():
        loop.close()


def on_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[object, object, T], *, timeout_secs: float | None, what: str) -> T:
    """Run a coroutine on the library loop and wait for it (``what`` names it in errors)."""
    if on_loop_thread():
        coro.close()
        raise UsageError(f"{what} cannot block the duet event loop thread")
    future = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return future.result(timeout_secs)
    except concurrent.futures.TimeoutError as exc:
        future.cancel()
        raise DuetTimeout(f"{what} did not finish within {timeout_secs} s") from exc
