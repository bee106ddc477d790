"""Real processes for the benchmarks: the signaling server, owners, a TCP peer; RSS readings."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DUET_ICE_HOSTS": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


class Process:
    """A child Python process whose stdout lines are read on a thread (stderr kept for errors)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, stdin: bool = True):
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or child_env(),
        )
        self.pid = self.popen.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _drain(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.errors.append(line)

    def line(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"no line matching {pattern!r} within {timeout} s; stderr:\n{self.stderr()}"
                ) from None
            if line is None:
                raise RuntimeError(f"process ended before {pattern!r}; stderr:\n{self.stderr()}")
            match = re.search(pattern, line)
            if match:
                return match

    def event(self, name: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next JSON line ``{"event": name, ...}`` (other output is skipped)."""
        match = self.line(rf'^\{{"event": "{re.escape(name)}"', timeout)
        return json.loads(match.string)

    def stderr(self) -> str:
        return "".join(self.errors)[-3000:]

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None and self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)


def start_signaling_server() -> tuple[Process, str]:
    server = Process(
        "-m", "signaling_server", "--host", "127.0.0.1", "--port", "0", stdin=False
    )  # fmt: skip
    url = server.line(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
    return server, url


def terminate(process: Process) -> None:
    """Stop a process we started (SIGTERM by its own pid, then SIGKILL)."""
    if process.popen.poll() is None:
        process.popen.terminate()
    process.stop()


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc/<pid>/status."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def thread_stats(pid: int) -> dict[int, tuple[float, int]]:
    """Per thread of a process, by native id: CPU seconds used so far and minor page faults
    (what an allocator that gives memory back to the OS costs).

    CPU comes from ``schedstat`` (nanoseconds): ``stat`` counts in 10 ms ticks, too coarse
    for a thread that works 0.3 ms per training step.
    """
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            cpu_ns = int((task / "schedstat").read_text().split()[0])
        except OSError:  # the thread ended
            continue
        out[int(task.name)] = (cpu_ns / 1e9, int(fields[7]))
    return out


def thread_waits(pid: int) -> dict[int, float]:
    """Per thread of a process, by native id: seconds it has spent runnable but waiting for a
    CPU (``schedstat``'s second field), so far. A thread's wall time is its CPU, this, and the
    time it was blocked (on a lock, the GIL, a queue, I/O)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[1]) / 1e9
        except OSError:  # the thread ended
            continue
    return out


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters


def pin_malloc() -> str:
    """Keep glibc's allocator from handing torch's big buffers back to the OS every step.

    By default glibc raises its mmap threshold on the fly, trims the main heap's top once
    more than twice that is free, and unmaps a thread's 64 MiB heap as soon as it is empty: a
    training step's activations (5-10 MB each here) are then given back and faulted in again,
    zeroed, the next step (5,000-7,000 page faults per step). Whether that happens depends on
    the thread (main arena or not) and on the allocation history, so the same torch step costs
    37 or 47 ms from one process or thread to the next: more noise than what is measured. One
    arena with fixed thresholds removes it; both processes of a benchmark call this first
    thing, before any other thread allocates.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "allocator as is (no glibc)"
    ok = (
        libc.mallopt(M_ARENA_MAX, 1)
        and libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    )
    if not ok:
        return "allocator as is (mallopt failed)"
    return "glibc allocator pinned (one arena, mmap/trim thresholds 32 MiB / 1 GiB)"


class Owner:
    """An owner process (``bench/owner.py``) serving one scientist: this driver process."""

    def __init__(
        self,
        url: str,
        *args: str,
        threads: int,
        profile: str | None = None,
        malloc: str | None = None,
    ):
        extra = {"BENCH_PROFILE": profile} if profile else {}
        if malloc:  # "pinned" or "glibc" (see pin_malloc); default: as the driver was told
            extra["BENCH_MALLOC"] = malloc
        self.process = Process(
            "-m", "bench.owner", *args, "--url", url, "--threads", str(threads),
            env=child_env(**extra),
        )  # fmt: skip
        self.url = url
        self.ready = self.process.event("ready")
        self.pid = self.process.pid

    def join(self) -> Any:
        """Join the owner's session from this process; returns the scientist session."""
        import duet as sy

        with contextlib.redirect_stdout(io.StringIO()):
            duet = sy.join_duet(self.ready["session_id"], self.url)
        self.process.event("published")
        return duet

    def threads(self) -> dict[int, str]:
        """The owner's threads: native id -> name (``duet-loop``, ``duet-owner-...``)."""
        self.process.send("threads")
        return {int(k): v for k, v in self.process.event("threads")["ids"].items()}

    def idle_secs(self) -> float:
        """How long the owner's workers have waited for work, so far (seconds)."""
        self.process.send("idle")
        return float(self.process.event("idle")["secs"])

    def close(self, duet: Any) -> dict[str, Any]:
        duet.close()
        closed = self.process.event("closed")
        self.process.stop()
        return closed
