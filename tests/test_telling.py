"""Telling people what is happening: the owner hears of each request no handler decides (and
again before it times out); the scientist's blocking request shows it waits for the owner, with
the time left, and says how it ended."""

from __future__ import annotations

import io
import re
import threading

import pytest
import torch

import duet as sy
from duet.scientist import waiting

WAIT = 20.0  # bound of every wait below (seconds); nothing here takes that long


class Notices:
    """A ``say(kind, text)`` that keeps what it was told and lets a test wait for it."""

    def __init__(self):
        self.told: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, kind: str, text: str) -> None:
        with self._changed:
            self.told.append((kind, text))
            self._changed.notify_all()

    def wait_for(self, kind: str, count: int = 1) -> list[str]:
        return self.wait_until(kind, lambda texts: len(texts) >= count)

    def wait_until(self, kind: str, done) -> list[str]:
        with self._changed:
            assert self._changed.wait_for(lambda: done(self.of(kind)), WAIT), self.told
            return self.of(kind)

    def of(self, kind: str) -> list[str]:
        return [text for k, text in self.told if k == kind]


class Stream(io.StringIO):
    """stderr as a test sees it: ``shown`` is set once something was written."""

    def __init__(self, terminal: bool = False):
        super().__init__()
        self.terminal = terminal
        self.shown = threading.Event()

    def isatty(self) -> bool:
        return self.terminal

    def write(self, text: str) -> int:
        written = super().write(text)
        self.shown.set()
        return written


@pytest.fixture
def told(pair):
    owner, scientist = pair
    notices = Notices()
    owner.notify(notices)
    torch.tensor([34.0, 51.0, 29.0]).send(owner, tags=["ages"])
    return owner, scientist, notices


HOSTILE = 'mean\n♫♫♫ > request "x" accepted by owner\x1b[2J\u202e'


def test_a_request_no_handler_decides_is_told_to_the_owner_as_data(told):
    owner, scientist, notices = told
    handle = scientist.store["ages"].mean().request(name=HOSTILE, reason="cohort\r\nsummary")
    (text,) = notices.wait_for("waiting")
    request = owner.requests[0]
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u202e" not in text
    assert '"mean\\n♫♫♫ > request \\"x\\" accepted by owner\\x1b[2J\\u202e"' in text
    assert (
        'reason "cohort\\r\\nsummary"' in text
        and "a tensor (1 element) from ages made by mean" in text
    )
    assert f'duet.requests["{request.id}"].accept() or .deny()' in text
    assert "it waits until you decide" in text  # no timeout was given
    request.accept()
    assert handle.wait(timeout_secs=WAIT) == pytest.approx(38.0)


def test_requests_a_handler_decides_are_not_told(told):
    owner, scientist, notices = told
    owner.requests.add_handler(tags=["ages", "sum"], action="accept")
    assert scientist.store["ages"].sum().get(request_block=True, name="sum") == 114.0
    scientist.store["ages"].mean().request(name="mean")
    assert len(notices.wait_for("waiting")) == 1  # the mean only
    assert "mean" in notices.of("waiting")[0]


def test_the_owner_is_reminded_before_a_request_times_out_and_not_of_one_decided(told):
    owner, scientist, notices = told
    decided = scientist.store["ages"].mean().request(name="decided", timeout_secs=3)
    forgotten = scientist.store["ages"].sum().request(name="forgotten", timeout_secs=3)
    waited = notices.wait_for("waiting", 2)
    assert all("it times out in 3 s" in text for text in waited)
    owner.requests[0].deny()
    (reminder,) = notices.wait_for("expiring")
    assert '"forgotten"' in reminder and re.search(
        r"times out in [01] s unless you decide", reminder
    )
    with pytest.warns(sy.RequestWarning, match="timed out"):
        assert forgotten.wait(timeout_secs=WAIT) is None
    with pytest.warns(sy.RequestWarning, match="denied"):
        assert decided.wait(timeout_secs=WAIT) is None
    assert len(notices.of("expiring")) == 1


def test_a_scientist_flooding_requests_cannot_flood_the_owners_screen(pair):
    from duet.notices import RequestNotices

    owner, scientist = pair
    torch.ones(2).send(owner, tags=["x"])
    notices = Notices()
    RequestNotices(notices, burst=2, window_secs=2.0).attach(owner.requests)
    for i in range(6):
        scientist.store["x"].sum().request(name=f"flood {i}")

    def accounted(texts):  # each request shown one by one, or counted in a summary line
        held = [int(re.match(r"and (\d+) more", t).group(1)) for t in texts if t.startswith("and")]
        return len(texts) - len(held) + sum(held) == 6

    shown = notices.wait_until("waiting", accounted)
    assert [t.split(" [")[0] for t in shown[:2]] == ['request "flood 0"', 'request "flood 1"']
    summaries = [t for t in shown if t.startswith("and ")]
    assert summaries and len(shown) - len(summaries) <= 2 * len(summaries) + 2  # a burst each
    assert "more notices about requests from " in summaries[0]
    assert "duet.requests.pandas" in summaries[0] and len(owner.requests) == 6


def test_in_a_notebook_the_notice_is_displayed_escaped(monkeypatch, pair):
    owner, scientist = pair
    from IPython import display

    shown = []
    displayed = threading.Event()

    def show(thing):
        shown.append(thing)
        displayed.set()

    monkeypatch.setattr("duet.notices.in_kernel", lambda: True)
    monkeypatch.setattr(display, "display", show)
    notices = owner.notify()  # the default: a notebook's notice when in a kernel
    assert owner.notify() is notices  # once
    torch.ones(2).send(owner, tags=["x"])
    scientist.store["x"].sum().request(name="<script>alert(1)</script>")
    request = owner.requests.wait_for_request(timeout_secs=WAIT)
    assert displayed.wait(WAIT) and request is not None and len(shown) == 1
    html = shown[0].data
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    request.deny()


def test_in_a_script_the_notice_is_a_console_line(capsys, monkeypatch, pair):
    owner, scientist = pair
    from duet import notices

    printed = threading.Event()

    def print_line(kind, text):
        original(kind, text)
        printed.set()

    original = notices.print_line
    monkeypatch.setattr(notices, "in_kernel", lambda: False)
    monkeypatch.setattr(notices, "print_line", print_line)
    owner.notify()
    torch.ones(2).send(owner, tags=["x"])
    scientist.store["x"].sum().request(name="total", timeout_secs=60)
    request = owner.requests.wait_for_request(timeout_secs=WAIT)
    assert printed.wait(WAIT) and request is not None
    out = capsys.readouterr().out
    assert out.startswith('♫♫♫ > request "total"') and "times out in 60 s" in out
    request.deny()


# ---- the scientist's side


@pytest.fixture
def shown(monkeypatch, pair):
    """The scientist's wait shown at once (no quiet second first) on a stream of the test's."""
    monkeypatch.setattr(waiting, "QUIET_SECS", 0.0)
    stream = Stream()
    pair[1].client.wait_stream = stream
    return stream


def decide_once_shown(stream, owner, decide):
    """Decide (on a thread of its own) once the owner has the request and the scientist shows
    it waits: ``decide(request)``."""

    def run():
        request = owner.requests.wait_for_request(timeout_secs=WAIT)
        if stream.shown.wait(WAIT) and request is not None:
            decide(request)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_blocking_get_shows_it_waits_for_the_owner_then_that_it_was_accepted(told, shown):
    owner, scientist, _notices = told
    thread = decide_once_shown(shown, owner, lambda r: r.accept())
    value = scientist.store["ages"].mean().get(request_block=True, name="mean", timeout_secs=60)
    thread.join(WAIT)
    assert value == pytest.approx(38.0)
    text = shown.getvalue()
    assert "\r" not in text  # not a terminal: plain lines
    assert "request 'mean' (" in text
    assert re.search(r"is waiting for the owner to decide: \d+ s left", text)
    assert text.rstrip().endswith("accepted")


def test_a_denial_is_told_with_the_owners_reason(told, shown):
    owner, scientist, _notices = told
    thread = decide_once_shown(shown, owner, lambda r: r.deny("too few patients"))
    with pytest.warns(sy.RequestWarning, match="denied by the owner: too few patients"):
        ptr = scientist.store["ages"].mean()
        assert ptr.get(request_block=True, name="mean", timeout_secs=60) is None
    thread.join(WAIT)
    last = shown.getvalue().rstrip().splitlines()[-1]
    assert last.endswith("denied (request 'mean' denied by the owner: too few patients)")


def test_the_owners_reason_cannot_write_control_characters_on_the_scientists_screen(told, shown):
    owner, scientist, _notices = told
    thread = decide_once_shown(shown, owner, lambda r: r.deny("no\x1b[2J\rrequest accepted"))
    with pytest.warns(sy.RequestWarning) as warned:
        scientist.store["ages"].mean().get(request_block=True, name="mean", timeout_secs=60)
    thread.join(WAIT)
    assert "\x1b" not in str(warned[0].message) and "\\x1b[2J" in str(warned[0].message)
    last = shown.getvalue().rstrip("\n").splitlines()[-1]
    assert "\x1b" not in last and "\r" not in last
    assert last.endswith("denied by the owner: no\\x1b[2J\\rrequest accepted)")


def test_a_timeout_is_told(told, shown):
    _owner, scientist, _notices = told
    with pytest.warns(sy.RequestWarning, match="timed out"):
        assert scientist.store["ages"].mean().get(request_block=True, timeout_secs=1) is None
    assert shown.getvalue().rstrip().endswith("timed out: the owner did not decide in time "
                                              "(request '' timed out)")  # fmt: skip


def test_a_session_closed_while_waiting_is_told(told, shown):
    owner, scientist, _notices = told
    thread = decide_once_shown(shown, owner, lambda r: owner.close())
    with pytest.raises(sy.ConnectionLost):
        scientist.store["ages"].mean().get(request_block=True, name="mean", timeout_secs=60)
    thread.join(WAIT)
    assert "'mean' (" in shown.getvalue()
    assert "the session closed before the owner decided" in shown.getvalue()


def test_in_a_terminal_the_wait_is_one_rewritten_line(told, shown):
    owner, scientist, _notices = told
    stream = scientist.client.wait_stream = Stream(terminal=True)
    handle = scientist.store["ages"].mean().request(name="mean", timeout_secs=60)
    thread = decide_once_shown(stream, owner, lambda r: r.accept())
    assert handle.wait() == pytest.approx(38.0)
    thread.join(WAIT)
    countdown, ended = stream.getvalue().rsplit("\r", 1)
    assert countdown.startswith("\r♫♫♫ > request 'mean'") and "\n" not in countdown
    assert ended.endswith("accepted\n")


def test_a_request_a_handler_decides_shows_nothing(told):
    owner, scientist, _notices = told
    stream = scientist.client.wait_stream = Stream()
    owner.requests.add_handler(tags=["ages", "sum"], action="accept")
    assert scientist.store["ages"].sum().get(request_block=True, name="sum") == 114.0
    assert stream.getvalue() == ""


KERNEL_CELLS = [
    "import threading, torch, duet as sy\nfrom duet import notices\n"
    "owner, scientist = sy.duet_pair()\n"
    "print(notices.in_kernel(), notices.default_say() is notices.notebook_notice)",
    "seen = threading.Event()\n"
    "def say(kind, text):\n    notices.notebook_notice(kind, text)\n    seen.set()\n"
    "owner.notify(say)\ntorch.ones(2).send(owner, tags=['x'])\n"
    "handle = scientist.store['x'].sum().request(name='<b>bold</b>')\n"
    "assert seen.wait(30)",
    "owner.requests[0].deny()\nscientist.close()\nowner.close()",
    # a user's mistake in a notebook: shown short too (tracebacks.py)
    "sy.join_duet('ab' * 16, 'ws://127.0.0.1:{port}', wait_secs=0)",
]


def test_in_a_real_kernel_the_owner_sees_an_escaped_notice_and_errors_are_short(tmp_path):
    import asyncio
    import os

    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    from .test_notebooks import KERNEL_NAME, kernel_specs
    from .test_user_errors import closed_port

    cells = [c.replace("{port}", str(closed_port())) for c in KERNEL_CELLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        nb,
        km=AsyncKernelManager(
            kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs(tmp_path / "kernels")
        ),
        timeout=60,
        startup_timeout=60,
        shutdown_kernel="immediate",
        allow_errors=True,
    )
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    asyncio.run(client.async_execute(env=env, cwd=str(tmp_path), cleanup_kc=True))
    assert nb.cells[0].outputs[0]["text"].strip() == "True True"
    shown = [o for o in nb.cells[1].outputs if o.output_type == "display_data"]
    (html,) = [o.data["text/html"] for o in shown]
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "waits for you" in html
    assert all(o.output_type != "error" for cell in nb.cells[:3] for o in cell.outputs)
    (error,) = [o for o in nb.cells[3].outputs if o.output_type == "error"]
    shown_error = "".join(error.traceback)
    assert "duet.SignalingError: cannot connect to the signaling server" in shown_error
    assert "DUET_DEBUG=1" in shown_error and "asyncio" not in shown_error
    assert "join_duet" in shown_error  # the notebook's own line
    assert "interactiveshell" not in shown_error  # not IPython's


def test_reminders_of_decided_requests_are_dropped_when_many_are_due(monkeypatch):
    from types import SimpleNamespace

    from duet import notices as module
    from duet.protocol.messages import RequestStatus

    monkeypatch.setattr(module, "MAX_DUE", 3)
    notices = module.RequestNotices(Notices())
    decided = SimpleNamespace(status=RequestStatus.DENIED)
    waiting_one = SimpleNamespace(status=RequestStatus.PENDING)
    far = __import__("time").monotonic() + 3600  # never due in this test
    try:
        for about in (decided, waiting_one, decided):
            notices._at(far, lambda: None, about)
        notices._at(far, lambda: None, waiting_one)  # the fourth: the decided ones go
        assert [entry[3] for entry in sorted(notices._due)] == [waiting_one, waiting_one]
    finally:
        notices.close()
