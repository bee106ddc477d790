"""Real OS processes for tests: start them, read their JSON lines with timeouts, stop them."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

PEER = Path(__file__).parent / "peers" / "peer.py"
UNIT = 30.0  # seconds; every wait in these tests is a multiple of it


class Process:
    def __init__(
        self,
        *args: str,
        stdin: bool = True,
        env: dict[str, str] | None = None,
        home: str | None = None,
    ):
        """``home``: the process's duet home (its identity, the scientists it knows); by default
        one of its own, as if it ran on a machine of its own."""
        home = home or tempfile.mkdtemp(prefix="duet-home-")
        env = {**os.environ, "DUET_ICE_HOSTS": "127.0.0.1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1",
               "DUET_HOME": home, **(env or {})}  # fmt: skip
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.lines), daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: Any, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _drain(self) -> None:
        for line in self.popen.stderr:  # type: ignore[union-attr]
            self.errors.append(line)

    def line(self, pattern: str, timeout: float = UNIT) -> re.Match[str]:
        """The next output line matching ``pattern`` (others are kept in ``output``)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout} s; stderr:\n{''.join(self.errors)[-3000:]}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"process ended before printing {pattern!r}; stderr:\n{''.join(self.errors)[-3000:]}"
                )
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def event(self, key: str, value: str, timeout: float = UNIT) -> dict[str, Any]:
        """The next JSON line whose ``key`` equals ``value``."""
        match = self.line(rf'^\{{.*"{key}": "{re.escape(value)}"', timeout)
        return json.loads(match.string)

    def exit_code(self, timeout: float = UNIT) -> int:
        """Wait for the process to end (it must, within ``timeout``); its output is in ``output``."""
        code = self.popen.wait(timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.output.append(line)
        self.lines.put(None)
        self._threads[1].join(timeout)  # all of stderr read
        return code

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(UNIT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(UNIT)
        for thread in self._threads:
            thread.join(UNIT)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # a pipe the killed process left broken
                    pass


def identity_in(home: str) -> str:
    """The ID of the default identity in the duet home ``home`` (made there if new), as the
    processes started with that home will prove it."""
    process = Process(
        "-c", "import duet; print(duet.Identity.load_or_create().id)", stdin=False, home=home
    )
    try:
        return process.line(r"^([0-9a-f-]+)$", 2 * UNIT).group(1)
    finally:
        process.stop()


def start_signaling_server(*extra: str) -> tuple[Process, str]:
    server = Process(
        "-m", "signaling_server", "--host", "127.0.0.1", "--port", "0", *extra, stdin=False
    )
    url = server.line(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
    return server, url
