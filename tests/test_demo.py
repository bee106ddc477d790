"""The main job: ``duet demo`` trains on the owner's digits across real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_trains_remotely_shows_owner_decisions_and_reaches_95_percent():
    env = {**os.environ, "DUET_ICE_HOSTS": "127.0.0.1", "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-m", "duet.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "published 1437 training digits" in out
    assert "request 'cuda_is_available' accepted" in out
    assert "request 'train_size' accepted" in out
    assert "request 'loss' denied" in out and "denied by a handler): " in out  # print_local
    assert "request 'model_download' accepted" in out
    accuracy = float(re.search(r"accuracy on 360 held-out digits: ([\d.]+)%", out).group(1))
    assert accuracy >= 95.0
