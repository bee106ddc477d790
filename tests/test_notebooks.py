"""The tutorial notebooks run end to end: owner and scientist side by side in real Jupyter kernels.

Both notebooks are executed cell by cell with nbclient, in two kernels started from this venv's
Python, on one asyncio loop. The owner goes first; the scientist's ``join_duet`` cell starts only
once the owner's launch cell has printed that it is waiting (the loopback file is written before
that line), and the scientist's cells after the join start only once the owner has published the
data and added its handlers (as a person running the pair would do). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
OWNER = NOTEBOOKS / "01-data-owner.ipynb"
SCIENTIST = NOTEBOOKS / "02-data-scientist.ipynb"
KERNEL_NAME = "duet-test-python"
CELL_TIMEOUT_SECS = 60
RUN_TIMEOUT_SECS = 150
OWNER_WAITING = (
    "waiting for the scientist to join"  # printed by launch_duet once the file is written
)

OWNER_PARAMETERS = "WAIT_FOR_SCIENTIST_SECS = 60\nSESSION_SECS = 90\n"
SCIENTIST_PARAMETERS = "EPOCHS = 1\nLIMIT_BATCHES = 3\nLOG_INTERVAL = 2\n"


class WatchingClient(NotebookClient):
    """An nbclient that sets an asyncio.Event when given text appears in a cell's output."""

    def __init__(self, nb: Any, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.watches: list[tuple[str, asyncio.Event]] = []

    def watch(self, text: str) -> asyncio.Event:
        event = asyncio.Event()
        self.watches.append((text, event))
        return event

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        text = msg["content"].get("text", "") if msg["msg_type"] == "stream" else ""
        for wanted, event in self.watches:
            if wanted in text:
                event.set()
        return out


def load(path: Path, parameters: str) -> Any:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    cells[0].source = parameters
    return nb


def code_cells(nb: Any) -> Iterable[tuple[int, Any]]:
    return ((i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code")


def tags(cell: Any) -> list[str]:
    return list(cell.metadata.get("tags", []))


async def bounded_wait(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), CELL_TIMEOUT_SECS)
    except TimeoutError:
        raise AssertionError(f"{what} within {CELL_TIMEOUT_SECS} s") from None


async def execute(
    client: WatchingClient,
    *,
    wait_after: dict[str, tuple[asyncio.Event, str]] | None = None,
    signal_after: dict[str, asyncio.Event] | None = None,
) -> None:
    """Run the notebook's code cells in order; after a tagged cell, signal or wait for an event."""
    wait_after, signal_after = wait_after or {}, signal_after or {}
    for index, cell in code_cells(client.nb):
        await client.async_execute_cell(cell, index)
        for tag in tags(cell):
            if tag in signal_after:
                signal_after[tag].set()
            if tag in wait_after:
                await bounded_wait(*wait_after[tag])


def kernel_specs(kernels: Path) -> KernelSpecManager:
    """Kernelspecs holding only one that runs this venv's Python (``sys.executable``)."""
    write_kernel_spec(kernels / KERNEL_NAME)
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    argv = specs.get_kernel_spec(KERNEL_NAME).argv
    assert argv[0] == sys.executable, argv
    return specs


async def run_pair(owner_nb: Any, scientist_nb: Any, tmp_path: Path, loopback: Path) -> None:
    env = {
        **os.environ,
        "DUET_ICE_HOSTS": "127.0.0.1",
        "DUET_LOOPBACK_FILE": str(loopback),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # no debugger notice on the kernels' stderr
    }
    settings = dict(timeout=CELL_TIMEOUT_SECS, startup_timeout=60, shutdown_kernel="immediate")
    specs = kernel_specs(tmp_path / "kernels")
    owner, scientist = (
        WatchingClient(
            nb,
            km=AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            **settings,
        )
        for nb in (owner_nb, scientist_nb)
    )
    owner_waiting = owner.watch(OWNER_WAITING)
    owner_ready = asyncio.Event()

    async def scientist_side() -> None:
        await bounded_wait(owner_waiting, "the owner's launch_duet did not start waiting")
        assert json.loads(loopback.read_text())["session_id"]
        not_ready = "the owner did not publish the data and add its handlers"
        await execute(scientist, wait_after={"join": (owner_ready, not_ready)})

    start = dict(env=env, cwd=str(NOTEBOOKS), cleanup_kc=True)
    async with owner.async_setup_kernel(**start), scientist.async_setup_kernel(**start):
        tasks = {
            asyncio.create_task(execute(owner, signal_after={"setup-done": owner_ready})),
            asyncio.create_task(scientist_side()),
        }
        await finish_all(tasks, RUN_TIMEOUT_SECS)


async def finish_all(tasks: Iterable[asyncio.Task[Any]], timeout_secs: float) -> None:
    """Wait for the notebooks' tasks: the first failure is raised (with its cell's traceback)
    and the others cancelled; all of them must be done within ``timeout_secs``."""
    done, pending = await asyncio.wait(
        set(tasks), timeout=timeout_secs, return_when=asyncio.FIRST_EXCEPTION
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()
    assert not pending, f"the notebooks did not finish within {timeout_secs} s"


def stream_text(nb: Any) -> str:
    return "".join(
        out.get("text", "")
        for _, cell in code_cells(nb)
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stdout"
    )


def tagged_result(nb: Any, tag: str) -> str:
    (cell,) = [c for _, c in code_cells(nb) if tag in tags(c)]
    return "".join(
        out.data.get("text/plain", "")
        for out in cell.outputs
        if out.output_type == "execute_result"
    )


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_owner_and_scientist_notebooks_train_together(tmp_path):
    loopback = tmp_path / "duet-loopback.json"
    owner = load(OWNER, OWNER_PARAMETERS)
    scientist = load(SCIENTIST, SCIENTIST_PARAMETERS)

    asyncio.run(run_pair(owner, scientist, tmp_path, loopback))

    said = stream_text(scientist)
    assert "connected to the data owner" in said
    assert "the owner's machine has CUDA: False" in said
    assert re.findall(r"^Train Epoch: 1 (\d+) \?$", said, re.M) == ["0", "2"], said  # denied
    assert not re.search(r"^Train Epoch: 1 \d+ [\d.]", said, re.M), said  # no loss released
    accuracy = re.search(r"^Accuracy on 360 held-out digits: ([\d.]+)%$", said, re.M)
    assert accuracy and 0 <= float(accuracy.group(1)) <= 100, said

    shown = stream_text(owner)
    assert "connected to scientist" in shown
    losses = re.findall(r"\[duet\] request 'loss' \(denied by a handler\): (\S+)", shown)
    assert len(losses) == 2 and all(float(x) > 0 for x in losses), shown  # print_local
    assert "the scientist has left the duet" in shown
    table = tagged_result(owner, "requests-table")
    assert "model_download" in table and "denied" in table and "accepted" in table, table
    counts = dict(re.findall(r"^(\w+)\s+(\w+)\s+\d+$", shown, re.M))
    assert counts == {
        "cuda_is_available": "accepted",
        "loss": "denied",
        "model_download": "accepted",
        "train_size": "accepted",
    }, shown
    assert not loopback.exists()  # launch_duet removes it once the scientist has joined


@pytest.mark.parametrize("path", [OWNER, SCIENTIST], ids=lambda p: p.stem)
def test_notebooks_are_stored_valid_and_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for _, cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source
    assert [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
