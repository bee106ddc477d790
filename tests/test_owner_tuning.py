"""The owner's process settles for serving (duet/owner/tuning.py): what imports leave behind
stays out of the garbage collector's full passes, also when a scientist's first call imports
half of torch (an optimizer's first use imports torch's compiler stack: ~900 modules, ~130,000
objects, which every full collection would walk again, ~45 ms each, between a step's kernels).

Each case runs in a process of its own: freezing is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys
    import torch
    import duet as sy

    owner, scientist = sy.duet_pair()  # an owner session: the process is tuned now
    frozen = gc.get_freeze_count()
    modules = len(sys.modules)
    model = torch.nn.Linear(3, 2).send(scientist)
    optimizer = scientist.torch.optim.Adadelta(model.parameters(), lr=1.0)  # imports, owner-side
    out = model(scientist.torch.ones(4, 3))
    out.sum().backward()
    optimizer.step()
    scientist.sync()
    young = len(gc.get_objects())  # what full collections walk (frozen objects excluded)
    print(json.dumps({
        "imported": len(sys.modules) - modules,
        "newly_frozen": gc.get_freeze_count() - frozen,
        "young": young,
        "weights_changed": bool(model.weight.get(request_block=True, timeout_secs=30).abs().sum() > 0),
    }))
    scientist.close()
    owner.close()
    """
)


def run(tuning: str) -> dict[str, object]:
    env = {**os.environ, "DUET_OWNER_TUNING": tuning}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_what_a_scientists_first_optimizer_imports_leaves_the_collectors_way():
    tuned = run("1")
    untuned = run("0")
    # the same program imports the same burst either way (the premise of this test)
    assert tuned["imported"] >= 100 and untuned["imported"] >= 100
    assert tuned["weights_changed"] and untuned["weights_changed"]
    # tuned: what the burst made is frozen; full collections walk a small remainder
    assert tuned["newly_frozen"] > 50_000
    assert tuned["young"] < untuned["young"] // 5
    # DUET_OWNER_TUNING=0 leaves the collector alone
    assert untuned["newly_frozen"] == 0
