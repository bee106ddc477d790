"""``python -m bench --only ops --against REF``: the same benchmarks, this tree and the code as
of a git ref, measured side by side in one run.

The ref is checked out as a git worktree (kept under the system's temporary directory, one per
commit, reused) and run with the same virtual environment: each side is ``python -m bench
--only NAME --json FILE`` started in its own tree (the scientist, the owners and the signaling
server all import that tree's ``duet``). The two sides alternate, ``--rounds`` times each,
this tree first, so that a change in the machine's load falls on both; every figure is printed
with the median of each side and their ratio (this tree / the ref).

``--bench-at REF2``: both sides run the benchmarks as of REF2 instead (its ``bench/``, extracted
once into a directory of their own, each side's ``duet`` and ``signaling_server`` put first on
the path): how a ref older than a benchmark is measured with it, like for like (the tutorial's
loop, added after the release boundary, against the code before it: ``--only tutorial --against
30f3fdb --bench-at 5d09f56``). REF2's bench must run on both sides' code.
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
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


def extract_bench(ref: str, into: Path) -> Path:
    """``bench/`` as of ``ref``, alone in a new directory under ``into`` (returned)."""
    root = into / "bench-at"
    root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "bench"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def _where(tree: Path, bench: Path | None) -> tuple[Path, dict[str, str]]:
    """The directory to run the bench from, and its environment: the tree itself, or ``bench``
    (another ref's benchmarks) with the tree's code first on the path."""
    if bench is None:
        return tree, dict(os.environ)
    path = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH", "")]))
    return bench, {**os.environ, "PYTHONPATH": path}


def _run(
    tree: Path, names: Sequence[str], extra: Sequence[str], out: Path, bench: Path | None = None
) -> list[dict]:
    command = [sys.executable, "-m", "bench", "--json", str(out), *extra]
    for name in names:
        command += ["--only", name]
    # a duet home of each run's own: the two trees' identity and audit files may differ
    home = out.with_suffix(".home")
    home.mkdir(exist_ok=True)
    cwd, env = _where(tree, bench)
    env["DUET_HOME"] = str(home)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0 or not out.exists():
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"the benchmark in {tree} failed ({done.returncode}):\n{tail}")
    figures: list[dict] = json.loads(out.read_text())["figures"]
    return figures


def _known(tree: Path, bench: Path | None = None) -> set[str]:
    """The benchmarks the bench in ``tree`` (or ``bench``) has (an older ref may lack some)."""
    cwd, env = _where(tree, bench)
    shown = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=cwd, capture_output=True, text=True,
        check=False, env=env,
    ).stdout  # fmt: skip
    found = re.search(r"--only \{([a-z_,]+)\}", shown)
    return set(found.group(1).split(",")) if found else set()


def compare(
    ref: str,
    names: Sequence[str],
    *,
    rounds: int,
    extra: Sequence[str],
    bench_at: str | None = None,
) -> None:
    """Run ``names`` here and at ``ref``, alternating, and print medians and ratios;
    ``bench_at``: with the benchmarks as of that ref on both sides."""
    other = worktree(ref)
    with tempfile.TemporaryDirectory() as scratch:
        bench = None if bench_at is None else extract_bench(bench_at, Path(scratch))
        using = "" if bench_at is None else f", both with the benchmarks as of {bench_at}"
        print(f"against {ref} ({other}); {rounds} rounds each, alternating{using}", flush=True)
        here = [n for n in names if bench is None or n in _known(ROOT, bench)]
        if not here:
            print(f"  the benchmarks as of {bench_at} have none of {', '.join(names)} that "
                  "starts on this tree's code: nothing measured", flush=True)  # fmt: skip
            return
        known = _known(other, bench)
        there = [n for n in here if n in known]
        if bench is not None and not known:  # its bench --help failed: an import, most often
            print(f"  the benchmarks as of {bench_at} do not start on {ref}'s code: measured "
                  "here only", flush=True)  # fmt: skip
        elif len(there) < len(names):
            missing = ", ".join(n for n in names if n not in there)
            print(f"  {ref} has no {missing} benchmark: measured here only", flush=True)
        seen, units = _alternate(other, here, there, rounds, extra, Path(scratch), bench)
    _print(ref, seen, units)


def _alternate(
    other: Path,
    here: Sequence[str],
    there: Sequence[str],
    rounds: int,
    extra: Sequence[str],
    scratch: Path,
    bench: Path | None,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Each side's figures, round after round, this tree first: {figure: {side: values}}, and
    each figure's unit."""
    seen: dict[str, dict[str, list[float]]] = {}
    units: dict[str, str] = {}
    for round_ in range(rounds):
        for side, tree, chosen in (("here", ROOT, here), ("ref", other, there)):
            if not chosen:
                continue
            figures = _run(tree, chosen, extra, scratch / f"{side}{round_}.json", bench)
            for figure in figures:
                seen.setdefault(figure["name"], {}).setdefault(side, []).append(figure["value"])
                units[figure["name"]] = figure["unit"]
            shown = ", ".join(f"{f['name']} {f['value']:,.3g}" for f in figures)
            print(f"  round {round_ + 1}, {side}: {shown}", flush=True)
    return seen, units


def _print(ref: str, seen: dict[str, dict[str, list[float]]], units: dict[str, str]) -> None:
    print(f"\n{'figure':<46} {'here':>12} {ref[:12]:>12} {'ratio':>7}  unit")
    for name, sides in seen.items():
        here = statistics.median(sides["here"]) if "here" in sides else float("nan")
        if "ref" not in sides:
            print(f"  {name:<44} {here:>12,.4g} {'-':>12} {'-':>7}  {units[name]}")
            continue
        then = statistics.median(sides["ref"])
        ratio = here / then if then else float("nan")
        print(f"  {name:<44} {here:>12,.4g} {then:>12,.4g} {ratio:>7.2f}  {units[name]}")
