"""``python -m bench --only ops --against REF``: the same benchmarks, this tree and the code as
of a git ref, measured side by side in one run.

The ref is checked out as a git worktree (kept under the system's temporary directory, one per
commit, reused) and run with the same virtual environment: each side is ``python -m bench
--only NAME --json FILE`` started in its own tree (the scientist, the owners and the signaling
server all import that tree's ``duet``). The two sides alternate, ``--rounds`` times each,
this tree first, so that a change in the machine's load falls on both; every figure is printed
with the median of each side and their ratio (this tree / the ref).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .procs import ROOT


def worktree(ref: str) -> Path:
    """A checkout of ``ref`` (made once, reused while its commit is the same)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    path = Path(tempfile.gettempdir()) / f"duet-bench-{commit[:12]}"
    if not (path / "bench" / "__main__.py").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), commit],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    return path


def _run(tree: Path, names: Sequence[str], extra: Sequence[str], out: Path) -> list[dict]:
    command = [sys.executable, "-m", "bench", "--json", str(out), *extra]
    for name in names:
        command += ["--only", name]
    # a duet home of each run's own: the two trees' identity and audit files may differ
    home = out.with_suffix(".home")
    home.mkdir(exist_ok=True)
    env = {**os.environ, "DUET_HOME": str(home)}
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0 or not out.exists():
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"the benchmark in {tree} failed ({done.returncode}):\n{tail}")
    figures: list[dict] = json.loads(out.read_text())["figures"]
    return figures


def _known(tree: Path) -> set[str]:
    """The benchmarks the bench in ``tree`` has (an older ref may lack some)."""
    shown = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=tree, capture_output=True, text=True,
        check=False,
    ).stdout  # fmt: skip
    found = re.search(r"--only \{([a-z_,]+)\}", shown)
    return set(found.group(1).split(",")) if found else set()


def compare(ref: str, names: Sequence[str], *, rounds: int, extra: Sequence[str]) -> None:
    """Run ``names`` here and at ``ref``, alternating, and print medians and ratios."""
    other = worktree(ref)
    print(f"against {ref} ({other}); {rounds} rounds each, alternating", flush=True)
    there = [n for n in names if n in _known(other)]
    if len(there) < len(names):
        missing = ", ".join(n for n in names if n not in there)
        print(f"  {ref} has no {missing} benchmark: measured here only", flush=True)
    seen: dict[str, dict[str, list[float]]] = {}
    units: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(rounds):
            for side, tree, chosen in (("here", ROOT, names), ("ref", other, there)):
                if not chosen:
                    continue
                figures = _run(tree, chosen, extra, Path(scratch) / f"{side}{round_}.json")
                for figure in figures:
                    seen.setdefault(figure["name"], {}).setdefault(side, []).append(figure["value"])
                    units[figure["name"]] = figure["unit"]
                shown = ", ".join(f"{f['name']} {f['value']:,.3g}" for f in figures)
                print(f"  round {round_ + 1}, {side}: {shown}", flush=True)
    print(f"\n{'figure':<46} {'here':>12} {ref[:12]:>12} {'ratio':>7}  unit")
    for name, sides in seen.items():
        here = statistics.median(sides["here"]) if "here" in sides else float("nan")
        if "ref" not in sides:
            print(f"  {name:<44} {here:>12,.4g} {'-':>12} {'-':>7}  {units[name]}")
            continue
        then = statistics.median(sides["ref"])
        ratio = here / then if then else float("nan")
        print(f"  {name:<44} {here:>12,.4g} {then:>12,.4g} {ratio:>7.2f}  {units[name]}")
