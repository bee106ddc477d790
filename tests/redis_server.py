"""A real ``redis-server`` for tests and benchmarks: started on a Unix socket of its own (no TCP
port at all, so nothing listens on any address), nothing saved to disk, stopped at the end.

    with RedisServer() as redis:
        url = redis.url            # "unix:///tmp/.../redis.sock": what redis-py's from_url takes

The server is Debian's ``redis-server`` (``apt-get install redis-server``; ``.ci/run`` installs
it). Starting waits for the server's own "Ready to accept connections" line, read with a
timeout, never a polling loop.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

START_TIMEOUT_SECS = 30.0
STOP_TIMEOUT_SECS = 10.0
_READY = "ready to accept connections"  # "The server is now ready to accept connections at ..."


class RedisServer:
    def __init__(self, *, timeout_secs: float = START_TIMEOUT_SECS):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._dir = tempfile.TemporaryDirectory(prefix="duet-redis-")
        self.socket = Path(self._dir.name) / "redis.sock"
        command = [
            binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name, "--loglevel", "notice",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self._wait_ready(timeout_secs)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout_secs: float) -> None:
        while True:
            try:
                line = self._lines.get(timeout=timeout_secs)
            except queue.Empty:
                raise RuntimeError(
                    f"redis-server did not get ready in {timeout_secs:.0f} s:\n"
                    + "".join(self.output)
                ) from None
            if line is None:
                raise RuntimeError("redis-server exited while starting:\n" + "".join(self.output))
            if _READY in line.lower():
                return

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_TIMEOUT_SECS)
        self._reader.join(STOP_TIMEOUT_SECS)  # it reads to the end of the output, then stops
        if self._process.stdout is not None and not self._reader.is_alive():
            self._process.stdout.close()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
