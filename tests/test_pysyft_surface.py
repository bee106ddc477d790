"""PySyft 0.5 Duet code runs as written: ``sy.duet``, ``sy.lib.python``, ``sy.logger``,
``duet.util.get_root_data_path``, PySyft's argument names, lengths as pointers, iterating
remote lists, waiting for an owner that has not launched yet, and a clear refusal of gym."""

from __future__ import annotations

import io
import logging
import re
import socket
import threading
import time

import pytest
import torch

import duet as sy
from duet.pairing.signaling import websocket_url
from duet.util import get_root_data_path

from .processes import UNIT, Process, start_signaling_server

# ---------------------------------------------------------------- sy.lib.python


def test_lib_python_values_are_local_and_send_like_duet_python(pair):
    owner, scientist = pair
    values = sy.lib.python.List([1, 2, sy.lib.python.Int(3)])
    assert isinstance(values, list) and [*values, 4] == [1, 2, 3, 4]  # a list, here
    ptr = values.send(scientist)
    assert isinstance(ptr, sy.Pointer) and ptr.kind == "List"
    fetched = ptr.get()
    assert fetched == [1, 2, 3] and type(fetched) is list and type(fetched[2]) is int
    flag = sy.lib.python.Dict({"ok": sy.lib.python.Bool(True)}).send(scientist).get()
    assert flag == {"ok": True} and flag["ok"] is True
    total = sy.lib.python.Float(1.5).send(scientist) + scientist.python.Float(2.0)
    assert total.get() == 3.5
    assert sy.lib.python.String("ab").send(scientist).upper().get() == "AB"
    assert sy.lib.python.Tuple((1, 2)).send(scientist).get() == (1, 2)
    # the owner publishes one the same way, and it is the owner's: a get is a request
    sy.lib.python.List([5, 6]).send(owner, tags=["owner-list"])
    with pytest.raises(sy.PermissionDenied):
        scientist.store["owner-list"].get()


def test_lib_python_import_paths_and_what_duet_does_not_have():
    from duet.lib.python import Float, List

    assert List([1]).upcast() == [1] and type(List([1]).upcast()) is list
    assert Float(2.5) == 2.5
    with pytest.raises(sy.NotAllowed, match="Bool, Dict, Float, Int, List, String and Tuple"):
        sy.lib.python.Set  # noqa: B018
    with pytest.raises(sy.UsageError, match="takes a duet session"):
        sy.lib.python.List([1]).send("not a session")


# ---------------------------------------------------------------- sy.logger


def test_logger_add_sends_duet_records_to_a_file_until_removed(tmp_path):
    duet_logger = logging.getLogger("duet")
    level_before = duet_logger.level
    handler_id = sy.logger.add(sink=str(tmp_path / "duet_{time}.log"), level="INFO")
    (path,) = tmp_path.glob("duet_*.log")  # {time} became the date and time
    sy.logger.info("epoch", 3, "done")
    logging.getLogger("duet.owner.requests").info("a record of duet's own")
    sy.logger.debug("below the level")
    sy.logger.remove(handler_id)
    sy.logger.info("after remove")
    text = path.read_text()
    assert "[INFO][duet.user]" in text and "epoch 3 done" in text
    assert "a record of duet's own" in text
    assert "below the level" not in text and "after remove" not in text
    assert duet_logger.level == level_before  # the loggers are as they were


def test_logger_stream_sink_print_and_clear_errors(capsys):
    stream = io.StringIO()
    handler_id = sy.logger.add(stream, level="trace")
    try:
        sy.logger.trace("fine detail", print=True)
    finally:
        sy.logger.remove()
    assert "[TRACE][duet.user]" in stream.getvalue() and "fine detail" in stream.getvalue()
    assert capsys.readouterr().out == "fine detail\n"
    with pytest.raises(sy.UsageError, match="unknown log level 'LOUD'"):
        sy.logger.add(stream, level="LOUD")
    with pytest.raises(sy.UsageError, match=f"no log handler {handler_id}"):
        sy.logger.remove(handler_id)


# ---------------------------------------------------------------- duet.util


def test_get_root_data_path_is_where_an_owner_here_reads_datasets(duet_home, monkeypatch):
    monkeypatch.delenv("DUET_DATA_ROOT", raising=False)
    path = get_root_data_path()
    assert path == (duet_home / "data").resolve() and path.is_dir()
    owner, scientist = sy.duet_pair()
    try:
        assert owner.settings.data_root == path
    finally:
        scientist.close()
        owner.close()
    monkeypatch.setenv("DUET_DATA_ROOT", str(duet_home / "elsewhere"))
    assert sy.util.get_root_data_path() == (duet_home / "elsewhere").resolve()


# ---------------------------------------------------------------- sy.duet, PySyft's arguments


def test_sy_duet_launches_without_an_id_and_joins_with_one_over_webrtc():
    ready = threading.Event()
    found: dict = {}

    def launch():
        try:
            found["owner"] = sy.duet(
                confirm=False,
                on_ready=lambda sid, url: (found.update(sid=sid, url=url), ready.set()),
            )
        except BaseException as exc:
            found["error"] = exc
            ready.set()

    thread = threading.Thread(target=launch)
    thread.start()
    assert ready.wait(UNIT * 2) and "error" not in found, found.get("error")
    http_url = found["url"].replace("ws://", "http://", 1)  # PySyft's network_url had http://
    scientist = sy.duet(found["sid"], network_url=http_url)
    thread.join(UNIT * 2)
    owner = found["owner"]
    try:
        assert isinstance(owner, sy.OwnerSession) and isinstance(scientist, sy.ScientistSession)
        assert (torch.ones(2).send(scientist) * 3).get().tolist() == [3.0, 3.0]
    finally:
        scientist.close()
        owner.close()


@pytest.mark.parametrize(
    "given, read",
    [
        ("http://localhost:5000", "ws://localhost:5000"),
        ("https://signal.example.org", "wss://signal.example.org"),
        ("HTTP://127.0.0.1:5000/duet", "ws://127.0.0.1:5000/duet"),
        (" ws://127.0.0.1:5000 ", "ws://127.0.0.1:5000"),
        ("wss://signal.example.org:443", "wss://signal.example.org:443"),
    ],
)
def test_pysyft_http_network_urls_are_read_as_websocket_urls(given, read):
    assert websocket_url(given) == read


@pytest.mark.parametrize("url", ["localhost:5000", "ftp://h:5000", "http://", "5000"])
def test_a_signaling_url_that_is_no_web_url_is_refused_before_connecting(url):
    words = "is not a signaling server URL; use ws://host:port or wss://host:port"
    with pytest.raises(sy.UsageError, match=re.escape(f"{url!r} {words}")):
        sy.join_duet("ab" * 16, network_url=url, wait_secs=0)
    with pytest.raises(sy.UsageError, match=re.escape(words)):
        sy.launch_duet(url, confirm=False, timeout_secs=1)
    with pytest.raises(sy.UsageError, match="http:// and https://, PySyft's form"):
        websocket_url(url)


def test_network_url_in_http_form_agrees_with_the_same_signaling_url():
    with pytest.raises(sy.UsageError, match="network_url is PySyft's name"):  # another server
        sy.join_duet("ab" * 16, "ws://127.0.0.1:1", network_url="http://127.0.0.1:2")
    with pytest.raises(sy.SignalingError, match="cannot connect to the signaling server at ws://"):
        sy.join_duet("ab" * 16, "ws://127.0.0.1:1", network_url="http://127.0.0.1:1", wait_secs=0)


def test_pysyft_argument_names_that_disagree_or_do_not_apply_are_usage_errors():
    sid = "ab" * 16
    with pytest.raises(sy.UsageError, match="network_url is PySyft's name for signaling_url"):
        sy.join_duet(sid, "ws://127.0.0.1:1", network_url="ws://127.0.0.1:2")
    with pytest.raises(sy.UsageError, match="target_id is PySyft's name for session_id"):
        sy.join_duet(sid, target_id="cd" * 16)
    with pytest.raises(sy.UsageError, match="network_url is PySyft's name"):
        sy.launch_duet("ws://127.0.0.1:1", network_url="ws://127.0.0.1:2")
    with pytest.raises(sy.UsageError, match="first argument is the signaling server's URL"):
        sy.launch_duet(True)  # PySyft's first argument was logging
    with pytest.raises(sy.UsageError, match="never in a database"):
        sy.duet(db_path="store.db")
    with pytest.raises(sy.UsageError, match="db_path is for launching"):
        sy.duet(sid, db_path="store.db")


# ---------------------------------------------------------------- pointers


def test_mnist_tutorial_lengths_and_gets_run_as_written(pair, capsys):
    owner, scientist = pair
    torch.arange(10.0).view(10, 1).send(owner, tags=["x"])
    torch.arange(10).send(owner, tags=["y"])
    owner.requests.add_handler(name="train_size", kind="int", max_elements=1, action="accept")
    rt = scientist.torch
    train_data_ptr = rt.utils.data.TensorDataset(scientist.store["x"], scientist.store["y"])
    train_loader_ptr = rt.utils.data.DataLoader(train_data_ptr, batch_size=4)
    length_ptr = train_data_ptr.__len__()
    assert isinstance(length_ptr, sy.Pointer) and length_ptr.kind == "Number"
    with pytest.raises(sy.PermissionDenied):  # the owner's to release
        length_ptr.get()
    train_data_length = length_ptr.get(
        request_block=True, name="train_size", reason="to write the loop", timeout_secs=5
    )
    assert train_data_length == 10
    assert train_loader_ptr.len().get(request_block=True, name="train_size") == 3
    assert len(train_loader_ptr) == 3 and len(train_data_ptr) == 10  # len() as before
    loss_item = (scientist.store["x"].sum() * 0.1).item()
    assert loss_item.resolve_pointer_type() is loss_item  # PySyft needed it; here a no-op
    capsys.readouterr()
    own = scientist.python.Float(2.5)
    assert own.get(request_block=True, name="mine", reason="check", verbose=True) == 2.5
    out = capsys.readouterr().out
    assert "asked the owner for 'mine'" in out and ": check" in out
    assert f"request 'mine' ({own.id}): accepted" in out


def test_len_of_a_pointer_still_raises_when_the_owner_denies_the_length(pair):
    owner, scientist = pair
    torch.arange(6.0).send(owner, tags=["data"])
    owner.requests.add_handler(name="train_size", action="deny")
    dataset = scientist.torch.utils.data.TensorDataset(scientist.store["data"])
    with pytest.warns(sy.RequestWarning), pytest.raises(sy.RequestDenied, match="train_size"):
        len(dataset)
    with pytest.warns(sy.RequestWarning):
        assert dataset.__len__().get(request_block=True, name="train_size") is None


def test_pysyfts_positional_timeout_is_a_clear_error_not_a_request_named_20(pair):
    owner, scientist = pair
    torch.arange(3.0).send(owner, tags=["data"])
    owner.requests.add_handler(tags=["data"], action="accept")  # after: it names published data
    total = scientist.store["data"].sum()
    with pytest.raises(sy.UsageError, match="timeout_secs="):
        total.get(True, 20)  # PySyft's get(request_block, timeout_secs)
    assert len(owner.requests.history) == 0  # nothing was asked
    assert total.get(request_block=True, timeout_secs=20) == 3.0


def test_iterating_a_remote_list_yields_element_pointers_when_its_length_is_yours(pair):
    _owner, scientist = pair
    numbers = scientist.python.List([1.0, 2.0])
    numbers.append(3.0)
    elements = list(iter(numbers))
    assert all(isinstance(e, sy.Pointer) for e in elements)
    assert [e.get() for e in elements] == [1.0, 2.0, 3.0]
    assert sorted(k.get() for k in scientist.python.Dict({"a": 1, "b": 2})) == ["a", "b"]


def test_iterating_the_owners_list_asks_for_its_length_as_len_does(pair):
    owner, scientist = pair
    sy.lib.python.List([1, 2, 3]).send(owner, tags=["secret-list"])
    with pytest.warns(sy.RequestWarning), pytest.raises(sy.RequestDenied, match="'len'"):
        owner.requests.add_handler(name="len", action="deny")
        for _ in scientist.store["secret-list"]:
            pass
    owner.requests.clear_handlers()
    owner.requests.add_handler(tags=["secret-list", "__len__"], action="accept")
    elements = [e for e in scientist.store["secret-list"]]  # the length released, not values
    assert len(elements) == 3
    with pytest.raises(sy.PermissionDenied):
        elements[0].get(timeout_secs=10)
    names = [r.name for r in owner.requests.history]
    assert names == ["len", "len"] and owner.requests.history[-1].op == "__len__"


def test_a_length_is_a_number_in_local_arithmetic_as_pysyfts_notebooks_use_it(pair):
    owner, scientist = pair
    owner.publish(torch.utils.data.TensorDataset(torch.zeros(130, 2)), tags=["data"])
    owner.requests.add_handler(tags=["data", "__len__"], action="accept")
    length = scientist.store["data"].__len__()
    assert repr(length).startswith("<Pointer") and len(owner.requests.history) == 0
    assert f"{length} samples" == "130 samples"  # the number, asked for as len(ptr) does
    assert round(length / 64 + 0.5) == 3 and f"{13.0 / length:.2f}" == "0.10"
    assert (length * 2, 2 * length, 200 - length, float(length)) == (260, 260, 70, 130.0)
    assert torch.equal(torch.tensor(26.0) / length, torch.tensor(0.2))  # a local tensor too
    assert [r.name for r in owner.requests.history] == ["train_size"]  # asked once, remembered
    owner.requests.add_handler(tags=["data"], action="accept")
    remote = length + scientist.python.Int(1)  # with a pointer it stays remote
    assert remote.get(request_block=True, name="n", timeout_secs=10) == 131


def test_result_pointers_carry_their_inputs_tags_and_the_op_as_pysyft_named_them(pair):
    owner, scientist = pair
    torch.ones(3).send(owner, tags=["a"])
    ptr = scientist.store["a"]
    assert ptr.requires_grad.tags == ["a", "requires_grad"]
    assert (ptr.mean() * 2).tags == ["a", "mean", "__mul__"]
    assert scientist.torch.zeros(2).tags == []  # nothing tagged went in


def test_pysyfts_older_names_searchable_and_handlers_handlers(pair):
    owner, scientist = pair
    hidden = torch.ones(2).send(owner, searchable=False, tags=["hidden"])
    listed = sy.lib.python.Int(3).tag("n").send(owner, searchable=True)
    assert not hidden.pointable and listed.pointable and listed.tags == ["n"]
    with pytest.raises(sy.UsageError, match="disagree"):
        torch.ones(2).send(owner, pointable=True, searchable=False)
    owner.requests.add_handler(tags=["n"], action="accept")
    assert [h["tags"] for h in owner.requests.handlers.handlers] == [["n"]]
    scientist.store["n"].get(request_block=True, name="n", timeout_secs=10)
    assert [r.name for r in scientist.requests.requests] == ["n"]


# ---------------------------------------------------------------- gym


def test_gym_is_refused_with_the_reason_and_nothing_is_sent(pair):
    _, scientist = pair
    sent = scientist.client.actions_sent
    with pytest.raises(sy.NotAllowed, match="environments are not exposed by duet"):
        scientist.gym.make("CartPole-v0")
    with pytest.raises(sy.NotAllowed, match="arbitrary code and state on the owner's machine"):
        sy.gym.make("CartPole-v0")
    assert scientist.client.actions_sent == sent


def test_pysyfts_remote_dataloader_is_refused_naming_what_to_use(pair):
    _, scientist = pair
    meta_ptr = sy.lib.python.String("boston_ds.pt").send(scientist, pointable=True, tags=["meta"])
    scientist.sync(timeout_secs=10)
    sent = scientist.client.actions_sent
    with pytest.raises(sy.NotAllowed, match=r"unpickle.*duet.torch.utils.data.DataLoader\(duet"):
        scientist.syft.core.remote_dataloader.RemoteDataset(meta_ptr)
    assert scientist.client.actions_sent == sent  # nothing was sent


# ---------------------------------------------------------------- waiting for the owner


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_join_waits_with_a_countdown_then_times_out_naming_session_and_server(capsys):
    url = f"ws://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(sy.DuetTimeout, match=rf"session abababab… through the signaling server at {url} within 1.5 s"):  # fmt: skip
        sy.join_duet("ab" * 16, url, wait_secs=1.5)
    assert 1.5 <= time.monotonic() - started < UNIT
    err = capsys.readouterr().err
    assert f"waiting to join session abababab… at the signaling server {url}: 2 s left" in err
    with pytest.raises(sy.SignalingError, match="cannot connect"):  # wait_secs=0: at once
        sy.join_duet("ab" * 16, url, wait_secs=0)


def test_an_unknown_session_is_refused_at_once_not_waited_for():
    from duet.runtime import run
    from signaling_server import start_embedded_server

    server, url = run(start_embedded_server("127.0.0.1", 0), timeout_secs=10, what="server")
    try:
        started = time.monotonic()
        with pytest.raises(sy.SignalingError, match="unknown or expired"):
            sy.join_duet("cd" * 16, url, wait_secs=60)
        assert time.monotonic() - started < 10
    finally:
        run(server.close(), timeout_secs=10, what="stopping the server")


def test_loopback_join_with_no_owner_times_out_naming_the_loopback_file(tmp_path, monkeypatch):
    path = tmp_path / "loopback.json"
    monkeypatch.setenv("DUET_LOOPBACK_FILE", str(path))
    with pytest.raises(sy.DuetTimeout, match=rf"within 1 s \(the loopback file {path} never"):
        sy.join_duet(loopback=True, wait_secs=1)


SCIENTIST_FIRST = """
import sys, json, torch, duet as sy
sys.stderr = sys.stdout  # the countdown, where the test reads
duet = sy.join_duet(loopback=True, wait_secs=120)
print(json.dumps({"event": "joined", "value": (torch.ones(2).send(duet) * 2).get().tolist()}), flush=True)
duet.close()
"""
OWNER_LATER = """
import sys, duet as sy
owner = sy.duet(loopback=True, network_url=sys.argv[1])
print("owner connected", flush=True)
owner.wait_closed(60)
"""


def test_a_scientist_started_before_the_owner_waits_with_a_countdown_and_joins(tmp_path):
    server, url = start_signaling_server()
    env = {"DUET_LOOPBACK_FILE": str(tmp_path / "loopback.json")}
    scientist = Process("-c", SCIENTIST_FIRST, stdin=False, env=env)
    owner = None
    try:
        scientist.line(r"waiting for an owner to run launch_duet\(loopback=True\) on this machine: \d+ s left", UNIT)  # fmt: skip
        owner = Process("-c", OWNER_LATER, url, stdin=False, env=env)
        owner.line("owner connected", 2 * UNIT)
        assert scientist.event("event", "joined", 2 * UNIT)["value"] == [2.0, 2.0]
        assert "connected to the data owner" in "\n".join(scientist.output)
        assert scientist.exit_code() == 0, "".join(scientist.errors)[-2000:]
        assert owner.exit_code() == 0, "".join(owner.errors)[-2000:]
    finally:
        for process in (scientist, owner, server):
            if process is not None:
                process.stop()


def test_countdown_rewrites_one_line_in_a_terminal():
    from duet.display.countdown import Countdown

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [100.0]
    out = Terminal()
    countdown = Countdown("waiting", 3, stream=out, clock=lambda: now[0])
    countdown.show()
    now[0] += 1.0
    countdown.show("not answering")
    countdown.show("not answering")  # the same second: nothing new
    countdown.done()
    text = out.getvalue()
    assert text.count("\r") == 4 and "\n" not in text  # two lines shown, then one cleared
    assert "waiting: 3 s left" in text and "waiting: 2 s left (not answering)" in text
    assert text.endswith(" \r")
