"""The differential-privacy notebooks (issue 19) run end to end in real Jupyter kernels.

``notebooks/privacy/``: a hospital publishes its birth records as one table and sets a privacy
budget on it; a researcher, on a loopback duet, gets DP counts and DP mean birth weights by
year (grouped statistics on the table), then is refused over budget. ``notebooks/privacy/duets/``:
two owners each hold half of the digits and allow a federation only as DP jobs under a budget
(``allow_federated_training(..., dp=...)``); the scientist's ``Federation(..., dp=DpRound(...))``
runs a DP-SGD job on each owner each round, averages the released models and evaluates them on
her own held-out digits. Kernels are driven with the helpers of
``test_notebooks`` and ``test_federated_notebooks``, each with a duet home of its own; every wait
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

from .processes import start_signaling_server
from .test_federated_notebooks import ADDRESS, ADDRESS_SAID, scientist_id
from .test_notebooks import (
    CELL_TIMEOUT_SECS,
    KERNEL_NAME,
    OWNER_WAITING,
    WatchingClient,
    bounded_wait,
    code_cells,
    execute,
    finish_all,
    kernel_specs,
    load,
    stream_text,
)

PRIVACY = Path(__file__).resolve().parents[1] / "notebooks" / "privacy"
HOSPITAL = PRIVACY / "01-hospital-owner.ipynb"
RESEARCHER = PRIVACY / "02-researcher.ipynb"
DUETS = PRIVACY / "duets"
DP_OWNER = DUETS / "owner.ipynb"
DP_SCIENTIST = DUETS / "01-dp-federated-digits.ipynb"
RUN_TIMEOUT_SECS = 150
SETTINGS = dict(timeout=CELL_TIMEOUT_SECS, startup_timeout=60, shutdown_kernel="immediate")

EPSILON_COUNTS = 0.5
HOSPITAL_PARAMETERS = (
    "FIRST_YEAR, LAST_YEAR = 2018, 2022\nEPSILON_BUDGET = 4.0\nDELTA = 1e-5\n"
    "WAIT_FOR_SCIENTIST_SECS = 60\nSESSION_SECS = 90\n"
)
RESEARCHER_PARAMETERS = (
    f"FIRST_YEAR, LAST_YEAR = 2018, 2022\nEPSILON_COUNTS = {EPSILON_COUNTS}\n"
    "EPSILON_MEANS = 2.5\nWEIGHT_BOUNDS = (500.0, 5500.0)\nTIMEOUT_SECS = 60\n"
)


def kernel_env(home: Path, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "DUET_HOME": str(home),
        "DUET_ICE_HOSTS": "127.0.0.1",
        "OMP_NUM_THREADS": "1",  # the kernels share the test machine's cores
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # no debugger notice on the kernels' stderr
        **more,
    }


def homes(tmp_path: Path, names: list[str]) -> dict[str, Path]:
    made = {name: tmp_path / f"{name}-home" for name in names}
    for home in made.values():
        home.mkdir(mode=0o700)
    return made


async def run_hospital(owner_nb: Any, researcher_nb: Any, tmp_path: Path) -> None:
    """The hospital first, the researcher once the hospital's launch cell is waiting (its data
    and budgets are in place before it launches)."""
    loopback = tmp_path / "duet-loopback.json"
    specs = kernel_specs(tmp_path / "kernels")
    clients = {
        name: WatchingClient(
            nb, km=AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            **SETTINGS,
        )
        for name, nb in {"hospital": owner_nb, "researcher": researcher_nb}.items()
    }  # fmt: skip
    waiting = clients["hospital"].watch(OWNER_WAITING)

    async def researcher_side() -> None:
        await bounded_wait(waiting, "the hospital's launch_duet did not start waiting")
        assert json.loads(loopback.read_text())["session_id"]
        await execute(clients["researcher"])

    async with contextlib.AsyncExitStack() as stack:
        for name, home in homes(tmp_path, list(clients)).items():
            env = kernel_env(home, DUET_LOOPBACK_FILE=str(loopback))
            await stack.enter_async_context(
                clients[name].async_setup_kernel(env=env, cwd=str(PRIVACY), cleanup_kc=True)
            )
        tasks = {
            asyncio.create_task(execute(clients["hospital"])),
            asyncio.create_task(researcher_side()),
        }
        await finish_all(tasks, RUN_TIMEOUT_SECS)


def tagged_text(nb: Any, tag: str) -> str:
    (cell,) = [c for _, c in code_cells(nb) if tag in c.metadata.get("tags", [])]
    return "".join(
        out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in cell.outputs
    )


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_a_researcher_gets_dp_births_per_year_and_is_refused_over_budget(tmp_path):
    hospital = load(HOSPITAL, HOSPITAL_PARAMETERS)
    researcher = load(RESEARCHER, RESEARCHER_PARAMETERS)

    asyncio.run(run_hospital(hospital, researcher, tmp_path))

    shown, said = stream_text(hospital), stream_text(researcher)
    truth = {
        int(year): (int(n), float(w))
        for year, n, w in re.findall(
            r"^births in (\d+): (\d+), mean weight ([\d.]+) g$", shown, re.M
        )
    }
    assert sorted(truth) == [2018, 2019, 2020, 2021, 2022], shown
    # one DP count per year (one grouped count on the table), near the true count: 10 Laplace
    # scales (1 / epsilon) at most
    counts = {int(y): int(n) for y, n in re.findall(r"^DP births in (\d+): (-?\d+)$", said, re.M)}
    assert sorted(counts) == sorted(truth), said
    scale = 1 / EPSILON_COUNTS
    for year, (births, _) in truth.items():
        assert abs(counts[year] - births) <= 10 * scale, (year, counts[year], births)
    # the released table: one row per year, the DP counts and means a user sees
    table = tagged_text(researcher, "released")
    rows = re.findall(r"^\s*(\d{4})\s+(-?\d+)\s+([\d.]+)$", table, re.M)
    assert [int(r[0]) for r in rows] == sorted(truth), table
    for year, count, mean in rows:
        assert int(count) == counts[int(year)]
        # a DP mean over ~2,400 weights at epsilon 2.5 / 5 years: the noise is ~10 grams
        assert abs(float(mean) - truth[int(year)][1]) < 100, (year, mean, truth[int(year)])
    refused = re.search(r"^refused: (.*)$", said, re.M)
    assert refused and "needs epsilon 1.5, 1 left at delta 1e-05" in refused.group(1), said
    assert "'births'" in refused.group(1), said
    assert re.search(r"^the table refused it: column .weight_g. .*only DP statistics", said, re.M)
    # the owner saw every release decided by the budget, none waiting for it
    assert "the researcher has left the duet" in shown
    assert "decided by: ['privacy budget']" in shown, shown
    assert "requests waiting for the owner: 0" in shown, shown
    budgets = tagged_text(hospital, "budgets")
    assert "births" in budgets and "births-2018" not in budgets, budgets
    listing = tagged_text(hospital, "published")
    assert "table" in listing and "births" in listing, listing


def dp_owner_parameters(name: str, shard: int, url: str, scientist: str) -> str:
    return (
        f"NAME = {name!r}\nSHARD, SHARDS = {shard}, 2\nSIGNALING_URL = {url!r}\n"
        f"SCIENTIST_ID = {scientist!r}\nEPSILON, DELTA = 5.0, 1e-5\n"
        "WAIT_FOR_SCIENTIST_SECS = 60\nSESSION_SECS = 90\n"
    )


DP_SCIENTIST_PARAMETERS = (
    "ROUNDS = 2\nEPOCHS = 1\nBATCH_SIZE = 32\nLEARNING_RATE = 1.0\nMAX_GRAD_NORM = 1.0\n"
    "NOISE_MULTIPLIER = 1.1\nJOB_TIMEOUT_SECS = 60\n"
)


async def run_dp_federation(
    owners: dict[str, Any], scientist: Any, homes: dict[str, Path], tmp_path: Path
) -> None:
    """The owner notebooks first; once each printed its address, the scientist's notebook with
    those addresses as its ``OWNERS`` (as test_federated_notebooks does)."""
    specs = kernel_specs(tmp_path / "kernels")
    clients = {
        name: WatchingClient(
            nb, km=AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            **SETTINGS,
        )
        for name, nb in {**owners, "scientist": scientist}.items()
    }  # fmt: skip
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
            await stack.enter_async_context(
                client.async_setup_kernel(env=kernel_env(homes[name]), cwd=str(DUETS),
                                          cleanup_kc=True)
            )  # fmt: skip
        tasks = {asyncio.create_task(execute(clients[name])) for name in owners}
        tasks.add(asyncio.create_task(scientist_side()))
        await finish_all(tasks, RUN_TIMEOUT_SECS)


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_two_owners_run_dp_rounds_and_the_averaged_model_beats_chance(tmp_path, monkeypatch):
    names = ["alice", "bob"]
    made = homes(tmp_path, [*names, "scientist"])
    me = scientist_id(made["scientist"], monkeypatch)
    server, url = start_signaling_server()
    try:
        owners = {
            name: load(DP_OWNER, dp_owner_parameters(name, shard, url, me))
            for shard, name in enumerate(names)
        }
        scientist = load(DP_SCIENTIST, DP_SCIENTIST_PARAMETERS)
        asyncio.run(run_dp_federation(owners, scientist, made, tmp_path))
    finally:
        server.stop()

    said = stream_text(scientist)
    assert f"your scientist ID: {me}\n" in said, said
    # each owner's job, each round: the epsilon it returned is the one it was quoted
    jobs = re.findall(r"^round (\d), (\w+): epsilon (\S+) \(quoted (\S+)\)$", said, re.M)
    assert sorted((int(r), name) for r, name, _, _ in jobs) == [
        (r, name) for r in (1, 2) for name in names
    ], said
    for _, _, epsilon, quoted in jobs:
        assert float(epsilon) == float(quoted) and 0 < float(epsilon) < 5.0, said
    # what each owner's ledger says the scientist spent: the two jobs composed, within budget
    for name in names:
        own = [float(e) for _, n, e, _ in jobs if n == name]
        spent = re.search(rf"^{name}: spent epsilon ([\d.]+) of 5.0, ([\d.]+) left", said, re.M)
        assert spent, said
        assert max(own) <= float(spent.group(1)) <= sum(own) + 1e-3, (own, spent.group(0))
        shown = stream_text(owners[name])
        assert f"{name}: the scientist spent epsilon {spent.group(1)} of 5.0" in shown, shown
        assert "2 releases, decided by: ['privacy budget']" in shown, shown
        assert "released by a handler (the sample count): 1" in shown, shown
        assert "requests waiting for the owner: 0" in shown, shown
    accuracy = re.search(r"^held-out accuracy of the averaged model: ([\d.]+)%$", said, re.M)
    assert accuracy and float(accuracy.group(1)) > 30, said  # 360 held-out digits; chance: 10%


@pytest.mark.parametrize(
    "path", [HOSPITAL, RESEARCHER, DP_OWNER, DP_SCIENTIST], ids=lambda p: p.stem
)
def test_privacy_notebooks_are_stored_valid_and_without_outputs(path: Path) -> None:
    nb: Any = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for _, cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source
    assert len([c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]) == 1
