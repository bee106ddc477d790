"""One contract, every channel: what a user does works the same in memory and over WebRTC."""

from __future__ import annotations

import threading

import pytest
import torch

import duet as sy


def test_publish_and_list(any_pair):
    owner, scientist = any_pair
    torch.arange(4).send(owner, tags=["a"], description="first")
    torch.ones(2).send(owner, pointable=False, tags=["hidden"])
    assert len(scientist.store) == 1
    assert scientist.store.pandas["Description"].tolist() == ["first"]


def test_remote_ops_and_own_values(any_pair):
    _, scientist = any_pair
    x = scientist.torch.arange(6.0).view(2, 3)
    local = torch.arange(6.0).view(2, 3)
    assert torch.equal((x @ x.t()).get(), local @ local.t())


def test_get_accepted_by_a_handler(any_pair):
    owner, scientist = any_pair
    owner.requests.add_handler(name="ok", kind="tensor", max_elements=2, action="accept")
    ptr = scientist.store[torch.tensor([1.0, 2.0]).send(owner).id]
    assert torch.equal(
        ptr.get(request_block=True, name="ok", timeout_secs=30), torch.tensor([1.0, 2.0])
    )


def test_get_denied_by_the_owner(any_pair):
    owner, scientist = any_pair
    owner.requests.add_handler(name="loss", action="deny")
    ptr = scientist.store[torch.tensor([1.0]).send(owner).id]
    with pytest.warns(sy.RequestWarning, match="denied"):
        assert ptr.get(request_block=True, name="loss", timeout_secs=30) is None


def test_get_accepted_by_hand(any_pair):
    owner, scientist = any_pair
    ptr = scientist.store[torch.tensor([3.0]).send(owner).id]
    handle = ptr.request(name="please", reason="by hand")
    request = owner.requests.wait_for_request(timeout_secs=30)
    assert request.reason == "by hand"
    request.accept()
    assert torch.equal(handle.wait(30), torch.tensor([3.0]))


def test_remote_error_names_the_op(any_pair):
    _, scientist = any_pair
    with pytest.raises(sy.RemoteError, match=r"Tensor\.view"):
        scientist.torch.ones(5).view(2, 2).get()


def test_large_tensor_arrives_intact(any_pair):
    owner, scientist = any_pair
    big = torch.randn(50_000_000 // 4)
    ptr = scientist.store[big.send(owner, tags=["big"]).id]
    owner.requests.add_handler(tags=["big"], action="accept")
    assert torch.equal(ptr.get(request_block=True, name="big", timeout_secs=120), big)


def test_closing_one_side_is_seen_by_the_other(any_pair):
    owner, scientist = any_pair
    ptr = scientist.store[torch.ones(1).send(owner).id]
    handle = ptr.request(name="never decided")
    assert owner.requests.wait_for_request(timeout_secs=30) is not None
    closer = threading.Thread(target=owner.close)
    closer.start()
    with pytest.raises(sy.ConnectionLost):
        handle.wait(30)
    closer.join(30)
    scientist.wait_closed(timeout_secs=30)
    assert not scientist.connected and not owner.connected
    with pytest.raises(sy.ConnectionLost):
        scientist.torch.ones(1).get()


def test_loopback_owner_and_scientist_find_each_other_with_no_id_to_copy(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DUET_LOOPBACK_FILE", str(tmp_path / "loopback.json"))
    registered = threading.Event()
    found: dict = {}

    def launch():
        found["owner"] = sy.launch_duet(loopback=True, on_ready=lambda sid, url: registered.set())

    thread = threading.Thread(target=launch)
    thread.start()
    assert registered.wait(60)
    scientist = sy.join_duet(loopback=True)
    thread.join(60)
    owner = found["owner"]
    try:
        out = capsys.readouterr().out
        assert "started a signaling server for this session at ws://127.0.0.1:" in out
        assert "enter the client ID" not in out
        torch.ones(2).send(owner, tags=["x"])
        assert len(scientist.store) == 1
        assert not (tmp_path / "loopback.json").exists()  # consumed once the scientist joined
    finally:
        scientist.close()
        owner.close()


def test_joining_loopback_with_no_owner_waiting_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DUET_LOOPBACK_FILE", str(tmp_path / "nobody.json"))
    with pytest.raises(sy.UsageError, match="no owner is waiting on this machine"):
        sy.join_duet(loopback=True, wait_secs=0)  # by default it waits for one (90 s)


def test_unknown_session_id_is_a_signaling_error():
    from duet.runtime import run
    from signaling_server import start_embedded_server

    server, url = run(start_embedded_server("127.0.0.1", 0), timeout_secs=30, what="server")
    try:
        with pytest.raises(sy.SignalingError, match="unknown or expired"):
            sy.join_duet("0" * 32, url, timeout_secs=30)
    finally:
        run(server.close(), timeout_secs=30, what="stop")


def test_a_stale_or_broken_loopback_file_is_a_clear_error(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    path = tmp_path / "loopback.json"
    monkeypatch.setenv("DUET_LOOPBACK_FILE", str(path))
    path.write_text("{half a fi")
    with pytest.raises(sy.UsageError, match="unreadable"):
        sy.join_duet(loopback=True)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    path.write_text(
        json.dumps({"session_id": "0" * 32, "signaling_url": "ws://127.0.0.1:9", "pid": dead_pid})
    )
    with pytest.raises(sy.UsageError, match="has exited"):
        sy.join_duet(loopback=True, wait_secs=0)  # by default it waits for a new owner
    assert not path.exists()
