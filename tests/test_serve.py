"""``duet serve config.toml``: an owner node from a config file, as a real process."""

from __future__ import annotations

import signal
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

import duet as sy
from duet.owner.audit import AuditLog
from duet.serve import build_owner, parse_config
from duet.serve.config import Locator

from .processes import UNIT, Process, identity_in, start_signaling_server

TRAINER = str(Path(__file__).parent / "peers" / "trainer.py")


BUDGET = """[[publish]]
path = 'ages.pt'
tags = ['ages']

[[budget]]
scientist = '*'
epsilon = {epsilon}
delta = {delta}
data = 'ages'
"""


def config_error(text: str) -> str:
    with pytest.raises(sy.UsageError) as caught:
        config, locator = parse_config(textwrap.dedent(text), "node.toml")
        build_owner(config, locator, Path.cwd()).close()
    assert isinstance(caught.value, sy.ConfigError)
    return str(caught.value)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("[owner]\nmax_scientists = 3\nunknown = 'maybe'\n", 3, "unknown"),
        ("[owner]\nmax_scientists = 'three'\n", 2, "max_scientists"),
        ("[owner]\nmax_scientist = 3\n", 2, "Extra inputs are not permitted"),
        ("[limits]\nmax_bytes = '12 parsecs'\n", 2, "a size is a number of bytes"),
        ("[[publish]]\npath = 'a.csv'\n\n[[publish]]\ntags = 'x'\npath = 'b.csv'\n", 5, "tags"),
        (
            "[[handler]]\ntags = ['x']\naction = 'accept'\n[[handler]]\nkind = 'float'\n",
            4,
            "action",
        ),
        ("[[handler]]\naction = 'accept'\nkind = 'banana'\n", 1, "banana"),
        ("[[publish]]\ntags = ['x']\npath = 'missing.csv'\n", 3, "no such file"),
        ("[owner\nmax_scientists = 3\n", 1, "line 1"),
        ("[[access]]\nscientist = 'someone'\nrequests = false\n", 1, "ID"),
        ("[owner]\nmax_scientists = 3\nsignaling_url = 'ftp://h:5000'\n", 3, "ws://host:port"),
        (
            BUDGET.format(epsilon="0.0", delta="1e-5"),
            7,
            "budget.0.epsilon: Input should be greater",
        ),
        (
            BUDGET.format(epsilon="inf", delta="1e-5"),
            7,
            "budget.0.epsilon: Input should be a finite",
        ),
        (BUDGET.format(epsilon="-1.0", delta="1e-5"), 7, "budget.0.epsilon"),
        (
            BUDGET.format(epsilon="1.0", delta="1.0"),
            8,
            "budget.0.delta: Input should be less than 1",
        ),
        (BUDGET.format(epsilon="1.0", delta="0.0"), 8, "budget.0.delta: Input should be greater"),
        (BUDGET.format(epsilon="'1'", delta="1e-5"), 7, "budget.0.epsilon"),
        (BUDGET.format(epsilon="1.0", delta="1e-5\nreview = 'yes'"), 9, "budget.0.review"),
        (BUDGET.format(epsilon="1.0", delta="1e-5\nrate = 2"), 9, "budget.0.rate: Extra inputs"),
        (BUDGET.replace("delta = {delta}\n", "").format(epsilon="1.0"), 5, "budget.0.delta: Field"),
        (
            BUDGET.format(epsilon="1.0", delta="1e-5")
            + BUDGET.split("\n\n")[1]
            .format(epsilon="1.0", delta="1e-5")
            .replace("'ages'", "'agez'"),
            14,
            "budget.1.data: no [[publish]] table has the tag 'agez'; a budget is on a published"
            " dataset's tag (published tags: 'ages')",
        ),
        (
            BUDGET.format(epsilon="1.0", delta="1e-5")
            + BUDGET.split("\n\n")[1].format(epsilon="2.0", delta="1e-5"),
            10,
            "budget.1: a second budget for scientist '*' on 'ages' (the first is budget.0)",
        ),
    ],
)
def test_a_bad_config_is_refused_with_the_line_at_fault(text, line, words):
    message = config_error(text)
    assert f"node.toml:{line}" in message or f"line {line}" in message, message
    assert words in message, message


def test_files_of_every_format_are_published_as_the_config_says(tmp_path):
    torch.save(torch.arange(6.0).reshape(2, 3), tmp_path / "t.pt")
    torch.save((torch.ones(4, 2), torch.arange(4)), tmp_path / "pair.pt")
    np.save(tmp_path / "a.npy", np.arange(5, dtype=np.int16))
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    pd.DataFrame({"f1": [1.0, 2.0], "f2": [3, 4], "label": [0, 1]}).to_csv(
        tmp_path / "d.csv", index=False
    )
    pd.DataFrame({"f1": [1.0], "who": ["alice"]}).to_csv(tmp_path / "text.csv", index=False)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((6, 5, 3), 40 * i + (100 if label == "dog" else 0), dtype=np.uint8)
            from PIL import Image

            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    text = """
        [[publish]]
        path = "t.pt"
        tags = ["t"]
        [[publish]]
        path = "pair.pt"
        tags = ["pair"]
        [[publish]]
        path = "a.npy"
        tags = ["a"]
        [[publish]]
        path = "d.csv"
        target = "label"
        tags = ["d"]
        description = "two rows"
        [[publish]]
        path = "images"
        tags = ["images"]
        grayscale = true
        image_size = [4, 4]
        [[handler]]
        tags = ["images", "__len__"]
        kind = "int"
        action = "accept"
    """
    config, locator = parse_config(textwrap.dedent(text), str(tmp_path / "node.toml"))
    owner = build_owner(config, locator, tmp_path)
    try:
        values = {e.tags[0]: e.value for e in owner.objects.published()}
        assert torch.equal(values["t"], torch.arange(6.0).reshape(2, 3))
        assert [len(values["pair"]), values["pair"][3][1].item()] == [4, 3]
        assert values["a"].dtype == torch.int16 and values["a"].tolist() == [0, 1, 2, 3, 4]
        features, label = values["d"][1]
        assert features.tolist() == [2.0, 4.0] and label.dtype == torch.int64 and label == 1
        # a scientist computes on the image folder; only its length was let out
        _, scientist = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("sam"))
        loader = scientist.torch.utils.data.DataLoader(scientist.store["images"], batch_size=4)
        shapes = []
        for images, _labels in loader:  # its length: accepted by the handler
            shapes.append(images.shape)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sy.RequestWarning)
                with pytest.raises(sy.PermissionDenied):
                    images.mean().get(timeout_secs=10)
        assert len(shapes) == 2
        scientist.close()
    finally:
        owner.close()
    for bad, words in (("objects.npy", "numeric array"), ("text.csv", "column 'who'")):
        text = f'[[publish]]\ntags = ["x"]\npath = "{bad}"\n'
        config, locator = parse_config(text, "node.toml")
        with pytest.raises(sy.ConfigError, match=f"node.toml:3: .*{words}"):
            build_owner(config, locator, tmp_path)


AGES = torch.tensor([23.0, 35.0, 41.0, 52.0, 67.0, 29.0, 44.0, 38.0, 71.0, 19.0] * 20)


def test_a_nodes_budgets_are_set_as_it_starts_enforced_and_kept_across_restarts(tmp_path):
    torch.save(AGES, tmp_path / "ages.pt")
    alice, bob = sy.Identity.ephemeral("alice"), sy.Identity.ephemeral("bob")
    text = f"""
        [owner]
        privacy_ledger = "ledger/privacy.sqlite3"
        [[publish]]
        path = "ages.pt"
        tags = ["ages"]
        [[budget]]
        scientist = "{alice.id}"
        data = "ages"
        epsilon = 1.0
        delta = 1e-5
        [[budget]]
        scientist = "*"
        data = "ages"
        epsilon = 0.5
        delta = 1e-5
    """
    config, locator = parse_config(textwrap.dedent(text), str(tmp_path / "node.toml"))
    assert [(b.scientist, b.epsilon) for b in config.budget] == [(alice.id, 1.0), ("*", 0.5)]
    owner = build_owner(config, locator, tmp_path)
    try:
        assert owner.privacy.path == tmp_path / "ledger" / "privacy.sqlite3"
        _, ada = sy.duet_pair(owner=owner, identity=alice)
        _, bea = sy.duet_pair(owner=owner, identity=bob)
        mean = ada.privacy.mean(ada.store["ages"], bounds=(0, 100), epsilon=0.6, timeout_secs=60)
        assert 0 <= mean <= 100 and len(owner.requests) == 0  # the budget decided
        with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 0\.6, 0\.4 left at delta 1e-05"):
            ada.privacy.mean(ada.store["ages"], bounds=(0, 100), epsilon=0.6, timeout_secs=60)
        # bob has the default "*": a budget of his own, alice's spend is not his
        with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 0\.6, 0\.5 left"):
            bea.privacy.count(bea.store["ages"], epsilon=0.6, timeout_secs=60)
        bea.privacy.count(bea.store["ages"], epsilon=0.5, timeout_secs=60)
        ada.close()
        bea.close()
    finally:
        owner.close()
    # a restart sets the budgets again: what was spent stays spent
    owner = build_owner(config, locator, tmp_path)
    try:
        assert owner.privacy.budget(alice.id, "ages")["remaining"] == pytest.approx(0.4)
        assert owner.privacy.budget(bob.id, "ages")["remaining"] == pytest.approx(0.0)
        assert owner.privacy.budget(bob.id, "ages")["budget_of"] == "*"
    finally:
        owner.close()
    # review = true: each release under that budget waits for the owner
    reviewed = text.replace("epsilon = 0.5\n", "epsilon = 0.5\n        review = true\n")
    config, locator = parse_config(textwrap.dedent(reviewed), str(tmp_path / "node.toml"))
    assert [b.review for b in config.budget] == [False, True]
    owner = build_owner(config, locator, tmp_path)
    try:
        assert owner.privacy.budget(bob.id, "ages")["review"] is True
        assert owner.privacy.budget(alice.id, "ages")["review"] is False
    finally:
        owner.close()


def test_a_budget_for_something_that_is_not_a_scientist_id_names_its_table(tmp_path):
    torch.save(AGES, tmp_path / "ages.pt")
    text = BUDGET.format(epsilon="1.0", delta="1e-5") + BUDGET.split("\n\n")[1].format(
        epsilon="1.0", delta="1e-5"
    ).replace("'*'", "'ada'")
    config, locator = parse_config(text, "node.toml")
    with pytest.raises(sy.ConfigError, match=r"node.toml:10: 'ada' is not a scientist ID"):
        build_owner(config, locator, tmp_path)


def test_an_http_signaling_url_is_read_as_ws():
    config, _ = parse_config("[owner]\nsignaling_url = 'http://signal.example.org:5000'\n", "n")
    assert config.owner.signaling_url == "ws://signal.example.org:5000"


def test_locator_points_at_the_key_or_its_table():
    locator = Locator("[owner]\nx = 1\n\n[[publish]]\npath = 'a'\n[[publish]]\n", "c.toml")
    assert locator.line(("owner", "x")) == "c.toml:2"
    assert locator.line(("publish", 1, "path")) == "c.toml:6"  # missing: its [[publish]]
    assert locator.line(("nothing",)) == "c.toml"


def test_duet_serve_serves_two_scientists_logs_decisions_and_stops_cleanly(tmp_path):
    digits = load_digits()
    frame = pd.DataFrame(digits.data / 16.0, columns=[f"p{i}" for i in range(64)])
    frame["label"] = digits.target
    frame.to_csv(tmp_path / "digits.csv", index=False)
    observer_home = str(tmp_path / "observer")
    observer = identity_in(observer_home)
    server, url = start_signaling_server()
    (tmp_path / "node.toml").write_text(
        textwrap.dedent(f"""
        [owner]
        signaling_url = "{url}"
        max_scientists = 4
        unknown = "accept"
        audit = "audit.sqlite3"

        [limits]
        max_bytes = "256 MiB"

        [[publish]]
        path = "digits.csv"
        target = "label"
        tags = ["digits"]
        description = "scikit-learn's digits"

        [[handler]]
        tags = ["digits", "item"]
        kind = "float"
        derived_inputs = true
        action = "accept"

        [[handler]]
        tags = ["digits", "__len__"]
        kind = "int"
        action = "accept"

        [[access]]
        scientist = "{observer}"
        name = "observer"
        requests = false
        """)
    )
    node = Process("-m", "duet", "serve", str(tmp_path / "node.toml"), stdin=False,
                   home=str(tmp_path / "node-home"))  # fmt: skip
    started = [server, node]
    try:
        session_id = node.line(r"duet session ID: ([0-9a-f]+)", 2 * UNIT).group(1)
        owner_id = node.line(r'owner_id="([0-9a-f-]+)"').group(1)
        args = (TRAINER, session_id, url, owner_id, "--steps", "30")
        trainer = Process(*args, "--name", "trainer")
        watcher = Process(*args, "--name", "observer", home=observer_home)
        started += [trainer, watcher]
        assert (
            trainer.event("event", "done", 4 * UNIT)["loss"] < 1.5
        )  # trained (chance: ln 10 = 2.3)
        error = watcher.event("event", "error", 4 * UNIT)["error"]
        assert "compute but not ask for releases" in error
        # on the console; the name the trainer chose is shown as its claim
        node.line(r"accepted ['\"]loss['\"] for \"trainer\" \(claimed\) .* by handler", UNIT)
        node.popen.send_signal(signal.SIGTERM)
        code = node.exit_code(UNIT)
        assert code == 0, "".join(node.errors)[-6000:] + "\n".join(node.output[-8:])
        output = "\n".join(node.output)
        assert "stopping (SIGTERM)" in output and "stopped; the audit log is at" in output
    finally:
        for process in reversed(started):
            process.stop()
    log = AuditLog(tmp_path / "audit.sqlite3")
    states = [e["state"] for e in log.events("node")]
    assert states == ["serving", "stopped by SIGTERM"]
    decided = {(e["name"], e["request_name"], e["status"]) for e in log.events("decision")}
    assert ('"trainer" (claimed)', "loss", "accepted") in decided
    assert all(name != "observer" for name, _, _ in decided)  # refused before the queue
    assert any(e["scientist"] == observer for e in log.events("refused"))
    assert log.known(observer, owner_id=owner_id)["name"] == "observer"  # named in [[access]]
    trainer_id = next(e["scientist"] for e in log.events("connect") if e["scientist"] != observer)
    assert log.known(trainer_id, owner_id=owner_id) is None  # let in by "accept": not known


def test_the_readmes_example_config_is_valid_and_does_what_it_says(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    text = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    digits = load_digits()
    frame = pd.DataFrame(digits.data[:50]).add_prefix("p")
    frame["label"] = digits.target[:50]
    frame.to_csv(tmp_path / "digits_train.csv", index=False)
    config, locator = parse_config(text, str(tmp_path / "node.toml"))
    owner = build_owner(config, locator, tmp_path)
    try:
        assert owner.max_scientists == 4 and owner.settings.data_root == tmp_path / "data"
        (entry,) = owner.store
        assert entry.tags == ["digits-train"] and len(entry.value) == 50
        features, label = entry.value[0]
        assert features.shape == (64,) and int(label) == digits.target[0]
        (rule,) = [r for r in owner.access if r.scientist == "3fa2-91bc-0d4e-77a1"]
        assert rule.allows_data(["digits-train"]) and not rule.allows_data(["other"])
        assert [h.action for h in owner.requests.handlers] == ["accept"]
        ada = owner.privacy.budget("3fa2-91bc-0d4e-77a1", "digits-train")
        assert ada is not None and (ada["budget_of"], ada["epsilon"]) == ("*", 1.0)
    finally:
        owner.close()
