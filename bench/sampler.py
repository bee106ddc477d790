"""A small sampling profiler over every thread (py-spy is not installed; cProfile sees one thread).

Every ``interval`` seconds it reads ``sys._current_frames()`` and counts, per thread, the
function at the top of each stack (self) and every function on it (inclusive). Duet's work runs
on three threads (the caller's, ``duet-loop`` and ``duet-owner-*``), so a per-thread view is
what shows where the time goes.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path
from types import FrameType

Counter = collections.Counter


def _key(frame: FrameType) -> str:
    code = frame.f_code
    parts = Path(code.co_filename).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else code.co_filename
    return f"{code.co_name} ({short}:{code.co_firstlineno})"


class Sampler:
    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.samples: Counter[str] = Counter()
        self.own: dict[str, Counter[str]] = collections.defaultdict(Counter)
        self.inclusive: dict[str, Counter[str]] = collections.defaultdict(Counter)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.started = 0.0
        self.elapsed = 0.0

    def start(self) -> Sampler:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.elapsed = time.perf_counter() - self.started

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                name = names.get(ident, str(ident))
                if name.startswith("duet-owner-"):
                    name = "duet-owner"
                self.samples[name] += 1
                self.own[name][_key(frame)] += 1
                seen = set()
                f: FrameType | None = frame
                while f is not None:
                    seen.add(_key(f))
                    f = f.f_back
                self.inclusive[name].update(seen)
            time.sleep(self.interval)

    def report(self, title: str, top: int = 14) -> str:
        lines = [f"# {title}: {self.elapsed:.2f} s sampled every {self.interval * 1000:g} ms"]
        for name, total in self.samples.most_common():
            if name.startswith(("asyncio_", "ThreadPool", "bench-", "Thread-")) and total < 10:
                continue
            lines.append(f"\n## thread {name}: {total} samples")
            lines.append("  self%  incl%  function")
            inclusive = self.inclusive[name]
            for key, count in self.own[name].most_common(top):
                lines.append(
                    f"  {100 * count / total:5.1f}  {100 * inclusive[key] / total:5.1f}  {key}"
                )
            lines.append("  -- inclusive --")
            for key, count in inclusive.most_common(top):
                lines.append(
                    f"  {100 * self.own[name][key] / total:5.1f}  {100 * count / total:5.1f}  {key}"
                )
        return "\n".join(lines) + "\n"
