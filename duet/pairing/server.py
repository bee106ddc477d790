"""The signaling server an owner starts for itself when it is given no URL, as a child process.

``launch_duet()`` without a URL and ``duet serve`` without ``signaling_url`` both start one here
(``python -m signaling_server --port 0``), never on the library's own loop: the rendezvous
cannot slow the owner's connections, and the owner's threads cannot stall it. The child stops
when the owner closes the session, and also when the owner's process ends however it ends (it
watches its standard input, whose other end only this process holds).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import subprocess
import sys
import tempfile
import threading

from ..errors import DuetTimeout, UsageError

log = logging.getLogger(__name__)

START_TIMEOUT_SECS = 30.0  # a cold interpreter importing websockets, on a busy machine
STOP_TIMEOUT_SECS = 5.0
_LISTENING = re.compile(r"listening on (ws://\S+)")


class SignalingProcess:
    """A signaling server running as this process's child; ``url`` is where it listens."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, timeout_secs: float = START_TIMEOUT_SECS
    ):
        self._log = tempfile.TemporaryFile()  # its stderr: shown if it fails to start
        command = [
            sys.executable, "-m", "signaling_server", "--host", host, "--port", str(port),
            "--stop-on-stdin-eof", "--log-level", "WARNING",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        try:
            self.url = self._read_url(timeout_secs)
        except BaseException:
            self.close()
            raise
        log.info("signaling server (pid %d) listening on %s", self._process.pid, self.url)

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read_url(self, timeout_secs: float) -> str:
        """The URL from the child's one line on stdout, waiting at most ``timeout_secs``.
        (A thread reads it: a pipe cannot be waited on with a timeout everywhere.)"""
        stdout = self._process.stdout
        assert stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(
            target=lambda: lines.put(stdout.readline()), name="signaling-start", daemon=True
        ).start()
        try:
            line = lines.get(timeout=timeout_secs)
        except queue.Empty:
            raise DuetTimeout(
                f"the signaling server did not start within {timeout_secs:g} s{self._said()}"
            ) from None
        if not line:  # it exited
            code = self._process.wait(timeout=STOP_TIMEOUT_SECS)
            raise UsageError(
                f"the signaling server could not start (exit code {code}){self._said()}"
            )
        found = _LISTENING.search(line.decode(errors="replace"))
        if found is None:
            raise UsageError(f"the signaling server said {line[:200]!r}, not where it listens")
        return found.group(1)

    def _said(self) -> str:
        """The end of what the child wrote to stderr, to quote in an error."""
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            text = self._log.read().decode(errors="replace").strip()
            if text:
                return f": {text[-500:]}"
        return ""

    def close(self) -> None:
        """Stop the server (its sessions end; connected duets are not affected). Idempotent."""
        process = self._process
        if process.poll() is None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()  # it stops at end of file ...
            try:
                process.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:  # ... or is made to
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECS)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            self._log.close()
