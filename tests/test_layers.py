"""The layout tells the architecture: imports point downward only, and no module imports itself
back through others. Read from the source (imports that run, not those for type checkers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "duet"

# what each layer may import from duet (besides itself and the leaves: errors, _version,
# identity, runtime)
ALLOWED = {
    "protocol": set(),
    "transport": {"protocol"},
    # presentation (text shown as data, tables from rows, the prompt, the countdown, progress):
    # shown by the layers above, it knows none of them (and of the leaves only errors, below)
    "display": set(),
    # the owner's layers call differential privacy's core (owner.privacy, DP releases) and
    # secure aggregation's (owner.secure_rounds runs an OwnerRound per round); owner.smpc_desk
    # runs smpc.remote's party core (imported at first use: smpc's package imports the workers)
    "owner": {"protocol", "display", "privacy", "secure", "smpc"},
    # differential privacy's owner core: prices, the ledger, the mechanisms run (Opacus, OpenDP);
    # it knows no session, no wire: the owner's layers call it
    "privacy": set(),
    # secure aggregation's protocol core: the owners' and the scientist's state machines, the
    # quantiser, the masks; no session, no wire (the owner's node and the federated rounds call it)
    "secure": set(),
    "scientist": {"protocol", "display"},
    # secret-shared tensors: shares live on workers (VirtualWorkers) as the scientist's pointers;
    # nothing below imports it (duet/__init__ installs its tensor methods); smpc.remote speaks
    # the wire's messages and seals with secure's crypto
    "smpc": {"workers", "scientist", "protocol", "secure"},
    # how owner and scientist find each other (the signaling server an owner starts)
    "pairing": {"protocol", "transport"},
    # the owner's review page: a view of the owner's objects, never the other way round
    "review": {"owner", "protocol", "display"},
    # the two sessions side by side, each on a role-neutral connection; nothing below them
    # imports them (the layers above: network, local, workers, federated, serve, review)
    "sessions": {
        "owner",
        "scientist",
        "transport",
        "protocol",
        "display",
        "pairing",
        "connection",
        "notices",
        # the owner's session starts its review page when asked (review knows the session
        # only for type checkers)
        "review",
    },
    # a network of owners: records signed with the identity, the registry's client (on the
    # signaling client), sy.join on join_duet; the sessions know it only for type checkers
    "registry": {"pairing", "protocol", "join"},
}
LEAVES = {"duet.errors", "duet._version", "duet.identity", "duet.runtime"}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("duet", *path.relative_to(ROOT).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def runtime_imports(name: str, path: Path, known: set[str], *, for_types: bool = False) -> set[str]:
    """The duet modules ``name`` imports when it runs (anywhere but under TYPE_CHECKING; with
    ``for_types``, those too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not for_types and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                target = candidate if candidate in known else base
                if target in known and target != name:
                    out.add(target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known and a.name != name)
    return out


def test_no_module_imports_itself_back():
    found = modules()
    graph = {name: runtime_imports(name, path, set(found)) for name, path in found.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_layers_import_downward_only():
    found = modules()
    wrong = []
    for name, path in found.items():
        parts = name.split(".")
        layer = parts[1] if len(parts) > 2 else None
        if layer not in ALLOWED:
            continue
        for target in runtime_imports(name, path, set(found)):
            if target in LEAVES:
                continue
            target_layer = target.split(".")[1] if target.count(".") >= 1 else ""
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_display_imports_nothing_of_duet_but_errors_not_even_for_types():
    found = modules()
    wrong = []
    for name, path in found.items():
        if name == "duet.display" or name.startswith("duet.display."):
            for target in runtime_imports(name, path, set(found), for_types=True):
                if target != "duet.errors" and not target.startswith("duet.display"):
                    wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_the_connection_knows_no_role_it_imports_no_side():
    found = modules()
    sides = ("duet.owner", "duet.scientist", "duet.sessions", "duet.network", "duet.launch",
             "duet.join")  # fmt: skip
    imported = runtime_imports("duet.connection", found["duet.connection"], set(found),
                               for_types=True)  # fmt: skip
    assert sorted(t for t in imported if t.startswith(sides)) == []


def test_pairing_asks_a_webrtc_implementation_only_through_the_peer_seam():
    # another WebRTC implementation replaces aiortc by providing transport/peer.py's Peers
    pairing = ROOT / "pairing"
    for path in pairing.rglob("*.py"):
        text = path.read_text()
        assert "aiortc" not in text, f"{path.name} names aiortc"
        for name in ("answer_offer", "create_offer", "new_certificate", "certificate_fingerprint"):
            # (its Peers' methods of the same names are what it calls: peers.new_certificate())
            called = re.search(rf"(?<![.\w]){name}\b", text)
            assert called is None, f"{path.name} calls {name} instead of its Peers"
