"""The network's notebook pair (issue 21) runs end to end in real Jupyter kernels: seed 003's
birth records, found through the network. A signaling server as a real process is the network;
the hospital's node (``01-hospital-node.ipynb``) publishes its births table, lists it and sets a
privacy budget; once it says it is listed, the researcher's notebook
(``02-researcher-search.ipynb``), which knows only the network's address, searches it by tag,
joins the owner it found, gets DP counts and means per year and is refused over budget. Each
kernel has a duet home of its own; the hospital is given the researcher's ID (a person would
read it to them). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager

from .processes import start_signaling_server
from .test_federated_notebooks import scientist_id
from .test_notebooks import (
    CELL_TIMEOUT_SECS,
    KERNEL_NAME,
    WatchingClient,
    bounded_wait,
    execute,
    finish_all,
    kernel_specs,
    load,
    stream_text,
)
from .test_privacy_notebooks import homes, kernel_env, tagged_text

NETWORK = Path(__file__).resolve().parents[1] / "notebooks" / "network"
HOSPITAL = NETWORK / "01-hospital-node.ipynb"
RESEARCHER = NETWORK / "02-researcher-search.ipynb"
RUN_TIMEOUT_SECS = 150
LISTED = "listed on the network as "  # printed by the hospital's node once it is announced
EPSILON_COUNTS = 0.5
SETTINGS = dict(timeout=CELL_TIMEOUT_SECS, startup_timeout=60, shutdown_kernel="immediate")


async def run_pair(hospital_nb: Any, researcher_nb: Any, made: dict[str, Path], tmp: Path) -> None:
    specs = kernel_specs(tmp / "kernels")
    clients = {
        name: WatchingClient(
            nb, km=AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            **SETTINGS,
        )
        for name, nb in {"hospital": hospital_nb, "researcher": researcher_nb}.items()
    }  # fmt: skip
    listed = clients["hospital"].watch(LISTED)

    async def researcher_side() -> None:
        await bounded_wait(listed, "the hospital's node did not say it was listed")
        await execute(clients["researcher"])

    async with contextlib.AsyncExitStack() as stack:
        for name, home in made.items():
            await stack.enter_async_context(
                clients[name].async_setup_kernel(
                    env=kernel_env(home), cwd=str(NETWORK), cleanup_kc=True
                )
            )
        tasks = {
            asyncio.create_task(execute(clients["hospital"])),
            asyncio.create_task(researcher_side()),
        }
        await finish_all(tasks, RUN_TIMEOUT_SECS)


@pytest.mark.timeout(RUN_TIMEOUT_SECS + 60)
def test_a_researcher_finds_the_hospital_on_the_network_and_gets_only_dp_births(
    tmp_path, monkeypatch
):
    server, url = start_signaling_server()
    try:
        made = homes(tmp_path, ["hospital", "researcher"])
        researcher_id = scientist_id(made["researcher"], monkeypatch)
        hospital = load(HOSPITAL, (
            f"NETWORK_URL = {url!r}\nRESEARCHER_ID = {researcher_id!r}\n"
            "FIRST_YEAR, LAST_YEAR = 2018, 2022\nEPSILON_BUDGET = 4.0\nDELTA = 1e-5\n"
            "SESSION_SECS = 90\n"
        ))  # fmt: skip
        researcher = load(RESEARCHER, (
            f"NETWORK_URL = {url!r}\nFIRST_YEAR, LAST_YEAR = 2018, 2022\n"
            f"EPSILON_COUNTS = {EPSILON_COUNTS}\nEPSILON_MEANS = 2.5\n"
            "WEIGHT_BOUNDS = (500.0, 5500.0)\nTIMEOUT_SECS = 60\n"
        ))  # fmt: skip
        asyncio.run(run_pair(hospital, researcher, made, tmp_path))
    finally:
        server.stop()

    shown, said = stream_text(hospital), stream_text(researcher)
    owner_id = re.search(rf"^{LISTED}(\S+): \['births'\]$", shown, re.M)
    assert owner_id, shown  # listed, with nothing failing
    # the search found exactly the hospital's one listed dataset, and the join reached it
    assert "1 listed datasets tagged births" in said, said
    assert owner_id.group(1) in tagged_text(researcher, "found")
    assert f"joined {owner_id.group(1)}" in said, said
    truth = {
        int(year): (int(n), float(w))
        for year, n, w in re.findall(
            r"^births in (\d+): (\d+), mean weight ([\d.]+) g$", shown, re.M
        )
    }
    assert sorted(truth) == [2018, 2019, 2020, 2021, 2022], shown
    released = re.findall(r"^DP births in (\d+): (-?\d+), DP mean weight ([\d.]+) g$", said, re.M)
    assert sorted(int(y) for y, _, _ in released) == sorted(truth), said
    for year, count, mean in released:
        births, weight = truth[int(year)]
        assert abs(int(count) - births) <= 10 / EPSILON_COUNTS, (year, count, births)
        assert abs(float(mean) - weight) < 100, (year, mean, weight)  # ~10 g of noise
    refused = re.search(r"^refused: (.*)$", said, re.M)
    assert refused and "needs epsilon 1.5, 1 left at delta 1e-05" in refused.group(1), said
    # the hospital served the researcher, every release decided by the budget alone
    assert "the researcher has come and gone" in shown, shown
    assert "decided by: ['privacy budget']" in shown, shown
    assert "requests waiting for the owner: 0" in shown, shown
