"""Trust belongs to an owner identity: two owners sharing one duet home (and so one audit
database), as real processes. A scientist one of them confirmed is a stranger to the other."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from .processes import UNIT, Process, identity_in, start_signaling_server

PEERS = Path(__file__).parent / "peers"
GATE = str(PEERS / "gate_owner.py")
VISITOR = str(PEERS / "visitor.py")


def test_a_scientist_confirmed_by_one_owner_identity_is_refused_by_anothers_refusing_node(
    tmp_path,
):
    home = str(tmp_path / "lab")  # one machine, one duet home, two owner identities
    sam_home, ada_home = str(tmp_path / "sam"), str(tmp_path / "ada")
    sam, ada = identity_in(sam_home), identity_in(ada_home)
    server, url = start_signaling_server()
    started = [server]
    try:
        # owner identity A (the home's default) confirms sam: it was told his ID
        owner_a = Process(GATE, url, "2", "--expect", sam, home=home)
        started.append(owner_a)
        session_a = owner_a.event("event", "ready", 2 * UNIT)["session_id"]
        id_a = owner_a.event("event", "published")["owner_id"]
        visit = Process(VISITOR, session_a, url, id_a, "--name", "sam", home=sam_home)
        started.append(visit)
        visit.event("event", "connected", 2 * UNIT)
        visit.send("leave")
        owner_a.event("event", "leave")
        owner_a.send("known")
        assert owner_a.event("event", "known")["ids"] == [sam]
        owner_a.send("quit")
        assert owner_a.exit_code() == 0

        # owner identity B: `duet serve`, unknown scientists refused, ada named in [[access]]
        torch.save(torch.tensor([1.0, 2.0, 3.0]), tmp_path / "ages.pt")
        (tmp_path / "node.toml").write_text(
            textwrap.dedent(f"""
            [owner]
            identity = "lab-b"
            signaling_url = "{url}"
            unknown = "refuse"

            [[publish]]
            path = "ages.pt"
            tags = ["ages"]

            [[handler]]
            tags = ["ages", "sum"]
            action = "accept"

            [[access]]
            scientist = "{ada}"
            name = "Ada"
            """)
        )
        node = Process("-m", "duet", "serve", str(tmp_path / "node.toml"), stdin=False, home=home)
        started.append(node)
        session_b = node.line(r"duet session ID: ([0-9a-f]+)", 2 * UNIT).group(1)
        id_b = node.line(r'owner_id="([0-9a-f-]+)"').group(1)
        assert id_b != id_a

        sam_at_b = Process(VISITOR, session_b, url, id_b, "--name", "sam", home=sam_home)
        started.append(sam_at_b)
        error = sam_at_b.event("event", "refused", 2 * UNIT)["error"]
        assert "refused to serve you" in error and "not a scientist this owner knows" in error

        # ada claims another name; the owner's name for her is the one shown
        ada_at_b = Process(
            VISITOR, session_b, url, id_b, "--name", "Mallory", "--ask", "ages", home=ada_home
        )
        started.append(ada_at_b)
        assert ada_at_b.event("event", "connected", 2 * UNIT)["client_id"] == ada
        assert ada_at_b.event("event", "answer")["value"] == 6.0
        node.line(rf"connected to scientist {ada}: Ada$")
        node.line(rf"accepted ['\"]total['\"] for Ada \({ada}\) by handler")
        assert not any("Mallory" in line for line in node.output)
        shown = "\n".join(node.output)
        assert f'refused "sam" (claimed) ({sam}): it is not a scientist this owner knows' in shown
    finally:
        for process in reversed(started):
            process.stop()
