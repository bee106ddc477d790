"""The federated notebooks over real duets run end to end: a signaling server as a real process,
two owner notebooks (``owner.ipynb`` with each owner's parameters) and a scientist notebook, each
in a Jupyter kernel of its own, with a duet home of its own (so each has its own identity).

The owners start first and wait in their launch cell; each prints the line the scientist pastes
into her ``OWNERS`` parameter, and the test hands those lines over as a person would. The
scientist joins both, trains with ``sy.federated`` and leaves; each owner then lists what it
released and who decided. Kernels are driven with the helpers of ``test_notebooks``; every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager

import duet as sy

from .processes import start_signaling_server
from .test_notebooks import (
    CELL_TIMEOUT_SECS,
    KERNEL_NAME,
    WatchingClient,
    bounded_wait,
    code_cells,
    execute,
    finish_all,
    kernel_specs,
    load,
    stream_text,
)

DUETS = Path(__file__).resolve().parents[1] / "notebooks" / "federated" / "duets"
OWNER = DUETS / "owner.ipynb"
SCHOOLS = DUETS / "01-two-schools-scientist.ipynb"
REGRESSION = DUETS / "02-regression-scientist.ipynb"
RUN_TIMEOUT_SECS = 120
ADDRESS_SAID = "for the scientist's OWNERS: "  # printed by the owner's launch cell
ADDRESS = re.compile(r"^for the scientist's OWNERS: (\{.*\})$", re.M)


def owner_parameters(dataset: str, name: str, shard: int, url: str, scientist: str, rounds: int):
    return (
        f"DATASET = {dataset!r}\nNAME = {name!r}\nSHARD, SHARDS = {shard}, 2\n"
        f"SIGNALING_URL = {url!r}\nSCIENTIST_ID = {scientist!r}\nROUNDS = {rounds}\n"
        "WAIT_FOR_SCIENTIST_SECS = 60\nSESSION_SECS = 90\n"
    )


def scientist_id(home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ID of the identity the scientist's kernel will find in ``home`` (made there now)."""
    with monkeypatch.context() as patch:
        patch.setenv("DUET_HOME", str(home))
        return sy.Identity.load_or_create().id


async def run_federation(
    owners: dict[str, Any], scientist: Any, homes: dict[str, Path], tmp_path: Path
) -> None:
    """Run the owner notebooks and, once each printed its address, the scientist's notebook
    with those addresses as its ``OWNERS``; all of them to the end, within RUN_TIMEOUT_SECS."""
    specs = kernel_specs(tmp_path / "kernels")
    settings = dict(timeout=CELL_TIMEOUT_SECS, startup_timeout=60, shutdown_kernel="immediate")
    clients = {
        name: WatchingClient(
            nb,
            km=AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            **settings,
        )
        for name, nb in {**owners, "scientist": scientist}.items()
    }
    addressed = {name: clients[name].watch(ADDRESS_SAID) for name in owners}

    async def scientist_side() -> None:
        addresses = []
        for name, event in addressed.items():
            await bounded_wait(event, f"owner {name} did not print its address")
            said = ADDRESS.search(stream_text(clients[name].nb))
            assert said, stream_text(clients[name].nb)
            addresses.append(json.loads(said.group(1)))
        (parameters,) = [c for c in scientist.cells if "parameters" in c.metadata.get("tags", [])]
        parameters.source += f"OWNERS = {addresses!r}\n"
        await execute(clients["scientist"])

    async with contextlib.AsyncExitStack() as stack:
        for name, client in clients.items():
            env = {
                **os.environ,
                "DUET_HOME": str(homes[name]),
                "DUET_ICE_HOSTS": "127.0.0.1",
                "OMP_NUM_THREADS": "1",  # three kernels share the test machine's cores
                "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            }
            await stack.enter_async_context(
                client.async_setup_kernel(env=env, cwd=str(DUETS), cleanup_kc=True)
            )
        tasks = {asyncio.create_task(execute(clients[name])) for name in owners}
        tasks.add(asyncio.create_task(scientist_side()))
        await finish_all(tasks, RUN_TIMEOUT_SECS)


def federate(
    dataset: str,
    names: list[str],
    scientist_path: Path,
    scientist_parameters: str,
    rounds: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, str], str]:
    """Run a federation of the owners ``names`` and the scientist; returns what each owner and
    the scientist printed."""
    homes = {name: tmp_path / f"{name}-home" for name in [*names, "scientist"]}
    for home in homes.values():
        home.mkdir(mode=0o700)
    me = scientist_id(homes["scientist"], monkeypatch)
    server, url = start_signaling_server()
    try:
        owners = {
            name: load(OWNER, owner_parameters(dataset, name, shard, url, me, rounds))
            for shard, name in enumerate(names)
        }
        scientist = load(scientist_path, f"{scientist_parameters}ROUNDS = {rounds}\n")
        asyncio.run(run_federation(owners, scientist, homes, tmp_path))
    finally:
        server.stop()
    said = stream_text(scientist)
    assert f"your scientist ID: {me}\n" in said, said
    return {name: stream_text(nb) for name, nb in owners.items()}, said


def check_took_part(said: str, names: list[str], rounds: int) -> None:
    """Every round counted, with every owner's model in it."""
    took_part = re.findall(r"^round (\d+): took part: (.*)$", said, re.M)
    assert took_part == [(str(r), ", ".join(names)) for r in range(1, rounds + 1)], said
    summaries = re.findall(r"^round \d+: (\d+) of (\d+) owners, counted;", said, re.M)
    assert summaries == [("2", "2")] * rounds, said


def check_released_by_handlers(shown: str, rounds: int) -> None:
    """The owner released the sample count once and, each round, a model and a loss, every one
    decided by a handler allow_federated_training added; then the scientist left."""
    released = re.findall(r"^released '(.+)' \((\w+)\), decided by (handler \d+)$", shown, re.M)
    expected = {("federated samples", "int")} | {
        (f"federated round {r} {what}", kind)
        for r in range(1, rounds + 1)
        for what, kind in (("update", "module"), ("loss", "float"))
    }
    assert sorted((name, kind) for name, kind, _ in released) == sorted(expected), shown
    releases = 2 * rounds + 1
    assert f"{releases} releases, {releases} decided by the federated-training handlers" in shown
    assert "the scientist has left the federation" in shown


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_two_schools_train_one_digit_classifier_over_real_duets(tmp_path, monkeypatch):
    names, rounds = ["westside", "grapevine"], 5
    shown, said = federate(
        "digits", names, SCHOOLS, "EPOCHS = 1\nBATCH_SIZE = 32\nLEARNING_RATE = 0.1\n"
        "ROUND_TIMEOUT_SECS = 60\n", rounds, tmp_path, monkeypatch,
    )  # fmt: skip

    check_took_part(said, names, rounds)
    accuracy = re.search(r"^held-out accuracy of the federated model: ([\d.]+)%$", said, re.M)
    assert accuracy and float(accuracy.group(1)) >= 85, said  # 360 held-out digits; chance: 10%
    for name, samples in zip(names, [719, 718], strict=True):  # 1,437 training digits in all
        assert f"{name} holds {samples} samples of digits" in shown[name], shown[name]
        check_released_by_handlers(shown[name], rounds)


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_two_devices_average_a_regression_that_beats_the_mean_over_real_duets(
    tmp_path, monkeypatch
):
    names, rounds = ["device1", "device2"], 10
    shown, said = federate(
        "diabetes", names, REGRESSION, "EPOCHS = 1\nBATCH_SIZE = 16\nLEARNING_RATE = 0.02\n"
        "ROUND_TIMEOUT_SECS = 60\n", rounds, tmp_path, monkeypatch,
    )  # fmt: skip

    check_took_part(said, names, rounds)
    final = re.search(
        r"^averaged model: test MSE ([\d.]+), R² (-?[\d.]+) \(the mean: MSE ([\d.]+), R² 0\)$",
        said,
        re.M,
    )
    assert final, said
    mse, r2, variance = (float(x) for x in final.groups())
    assert r2 > 0.3 and mse < variance, said
    for name in names:
        check_released_by_handlers(shown[name], rounds)


@pytest.mark.parametrize("path", [OWNER, SCHOOLS, REGRESSION], ids=lambda p: p.stem)
def test_federated_duet_notebooks_are_stored_valid_and_without_outputs(path: Path) -> None:
    nb: Any = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for _, cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source
    assert len([c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]) == 1
