"""The README's Quick start and federated example run as written: the Quick start's owner and
scientist blocks in two processes (the scientist's join line replaced by the one the owner
printed, as a person pastes it), the federated example as a script."""

from __future__ import annotations

import re
from pathlib import Path

from .processes import UNIT, Process

README = (Path(__file__).parent.parent / "README.md").read_text()


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section headed ``section``."""
    text = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_quick_start_runs_as_written_in_two_processes():
    owner_code, scientist_code = python_blocks("Quick start")[:2]
    owner = Process("-c", owner_code)
    started = [owner]
    try:
        join = owner.line(r"scientists run: (duet = sy\.join_duet\(.*\))$", 2 * UNIT).group(1)
        pasted = re.sub(r"^duet = sy\.join_duet\(.*\)$", lambda _: join, scientist_code, flags=re.M)
        assert pasted != scientist_code
        scientist = Process("-c", pasted, stdin=False)
        started.append(scientist)
        client_id = scientist.line(r"duet client ID: ([0-9a-f-]+)", 2 * UNIT).group(1)
        owner.send(client_id)  # typed at the owner's prompt
        told = owner.line(r'request "mean age" .* waits for you', 2 * UNIT).string
        assert "a tensor (1 element) from ages made by mean" in told
        assert owner.line(r"^mean age cohort summary tensor\(38\.", UNIT)
        assert scientist.line(r"^tensor\(38\.", UNIT)
        assert scientist.exit_code(UNIT) == 0, "".join(scientist.errors)[-3000:]
        owner.send("")  # Enter: the owner stops
        assert owner.exit_code(UNIT) == 0, "".join(owner.errors)[-3000:]
    finally:
        for process in reversed(started):
            process.stop()


def test_the_federated_example_runs_as_written():
    (code,) = python_blocks("Federated learning")[:1]
    process = Process("-c", code, stdin=False)
    try:
        accuracy = float(process.line(r"accuracy after 5 rounds: ([0-9.]+)", 4 * UNIT).group(1))
        assert accuracy >= 0.9  # the owners' rule (x0 + x1 > 0) learnt from their data
        assert process.exit_code(UNIT) == 0, "".join(process.errors)[-3000:]
    finally:
        process.stop()


def test_no_document_or_source_file_holds_a_merge_conflicts_markers():
    root = Path(__file__).parent.parent
    marker = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)
    files = [
        path
        for folder in ("duet", "tests", "notebooks", "bench", "signaling_server", "docs")
        for path in (root / folder).rglob("*")
        if path.suffix in {".py", ".md", ".ipynb", ".toml"}
    ] + [root / "README.md", root / "pyproject.toml"]
    marked = [str(p.relative_to(root)) for p in files if marker.search(p.read_text("utf-8"))]
    assert marked == []
