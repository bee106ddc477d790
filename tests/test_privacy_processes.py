"""Differential privacy as users run it: an owner and a scientist in processes of their own,
over WebRTC (loopback pairing), the budget enforced by the owner and kept in its ledger file."""

from __future__ import annotations

import pytest

from duet import privacy

from .processes import UNIT, Process

OWNER = """
import sys, torch, duet as sy
owner = sy.OwnerSession(privacy_ledger=sys.argv[1])
owner.publish(torch.arange(100.0), tags=["ages"])
owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
sy.launch_duet(loopback=True, owner=owner, review=False)
print("joined", flush=True)
sys.stdin.readline()
print("requests", len(owner.requests), flush=True)
owner.close()
"""

SCIENTIST = """
import duet as sy
duet = sy.join_duet(loopback=True)
ages = duet.store["ages"]
print("mean", duet.privacy.mean(ages, bounds=(0, 100), epsilon=0.6, timeout_secs=60), flush=True)
try:
    duet.privacy.mean(ages, bounds=(0, 100), epsilon=0.6, timeout_secs=60)
except sy.QuotaExceeded as refused:
    print("refused:", refused, flush=True)
print("left", duet.privacy.budget("ages", timeout_secs=60)["remaining"], flush=True)
duet.close()
"""


def test_a_scientist_process_spends_its_budget_and_the_owner_process_keeps_the_ledger(tmp_path):
    ledger_path = tmp_path / "privacy.sqlite3"
    env = {"DUET_LOOPBACK_FILE": str(tmp_path / "loopback.json")}
    owner = Process("-c", OWNER, str(ledger_path), env=env)
    started = [owner]
    try:
        scientist = Process("-c", SCIENTIST, env=env, stdin=False)
        started.append(scientist)
        assert owner.line(r"^joined$", 3 * UNIT)
        assert 0 <= float(scientist.line(r"^mean (.*)$", 2 * UNIT).group(1)) <= 100
        refused = scientist.line(r"^refused: (.*)$", UNIT).group(1)
        assert "needs epsilon 0.6, 0.4 left at delta 1e-05" in refused
        assert float(scientist.line(r"^left (.*)$", UNIT).group(1)) == pytest.approx(0.4)
        assert scientist.exit_code(UNIT) == 0, "".join(scientist.errors)[-3000:]
        owner.send("")
        assert owner.line(r"^requests (\d+)$", UNIT).group(1) == "0"
        assert owner.exit_code(UNIT) == 0, "".join(owner.errors)[-3000:]
    finally:
        for process in reversed(started):
            process.stop()
    with privacy.Ledger(ledger_path) as ledger:
        (charge,) = ledger.history()
        assert charge["state"] == "committed"
