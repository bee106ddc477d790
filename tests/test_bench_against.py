"""``bench --against REF --bench-at REF2``: both sides run REF2's benchmarks, each with its own
code first on the path (how the tutorial's loop, written after the release boundary, is measured
against the code before it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import against

from .processes import UNIT

ROOT = Path(__file__).resolve().parent.parent
FIRST_BENCH = "5d09f56"  # the commit that added the tutorial's benchmark


def _has(ref: str) -> bool:
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}^{{commit}}"], capture_output=True
    )
    return found.returncode == 0


@pytest.mark.timeout(2 * UNIT)
def test_another_refs_benchmarks_run_on_this_trees_code(tmp_path):
    ref = FIRST_BENCH if _has(FIRST_BENCH) else "HEAD"  # (a shallow clone has only HEAD)
    bench = against.extract_bench(ref, tmp_path)
    assert (bench / "bench" / "tutorial.py").exists()
    assert not (bench / "duet").exists()  # the code comes from the tree named, not from REF2
    # that bench, started as each side is, lists its benchmarks, and imports this tree's duet
    assert {"ops", "tutorial"} <= against._known(ROOT, bench)
    cwd, env = against._where(ROOT, bench)
    shown = subprocess.run(
        [sys.executable, "-c", "import bench, duet; print(bench.__file__); print(duet.__file__)"],
        cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=UNIT,
    ).stdout.split()  # fmt: skip
    assert Path(shown[0]).is_relative_to(bench)
    assert Path(shown[1]).is_relative_to(ROOT / "duet")


def test_bench_at_needs_against():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--bench-at", "HEAD", "--only", "ops"],
        cwd=ROOT, capture_output=True, text=True, timeout=UNIT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--bench-at goes with --against" in done.stderr
