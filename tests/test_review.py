"""The owner's review page in-process: its app with Starlette's TestClient (who may see and
decide what), and its real server (live updates, stopping with the session). The browser test
against a real ``duet serve`` process is tests/test_review_browser.py."""

from __future__ import annotations

import socket
import warnings

import httpx2 as httpx
import pytest
import torch
from starlette.testclient import TestClient

import duet as sy
from duet.owner.audit import AuditLog
from duet.review.app import build_app
from duet.review.changes import Changes
from duet.serve.config import parse_config

from .conftest import webrtc_pair

UNIT = 30.0
PORT = 8123  # the app is called directly: the port only names the origin it expects
TOKEN = "t0ken-for-tests"
ORIGIN = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def review(pair):
    owner, scientist = pair
    owner.publish(torch.arange(4.0), tags=["ages"], description="ages of <i>patients</i>")
    app = build_app(owner, TOKEN, PORT, Changes())
    with TestClient(app, base_url=ORIGIN) as client:
        yield owner, scientist, client


def ask(owner, scientist, name="total", reason="a summary"):
    handle = (scientist.store["ages"] * 2).sum().request(name=name, reason=reason)
    request = owner.requests.wait_for_request(UNIT)
    assert request is not None
    return handle, request


def decide(client, request, action="accept", **headers):
    return client.post(f"/{TOKEN}/requests/{request.id}/{action}",
                       headers={"X-Duet-Review": "1", "Origin": ORIGIN, **headers})  # fmt: skip


def test_the_page_shows_a_waiting_request_with_what_it_would_release(review):
    owner, scientist, client = review
    _, request = ask(owner, scientist)
    page = client.get(f"/{TOKEN}/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    html = page.text
    assert "Waiting for you" in html and request.id in html
    assert "a <b>tensor</b> of shape []: 1 element, 4 B" in html  # kind, shape, size
    assert '<span class="tag">ages</span>' in html  # the data it depends on
    assert "<code>sum</code>" in html  # the op that made it
    assert request.snapshot.digest()[:16] in html
    assert "tensor(12.)" in html  # small values are shown as they would leave
    assert f'action="requests/{request.id}/accept"' in html
    assert f'action="requests/{request.id}/deny"' in html
    assert "ages of &lt;i&gt;patients&lt;/i&gt;" in html  # the store
    assert "No handler: every request waits for you." in html
    assert (
        client.get(f"/{TOKEN}/static/page.js").headers["content-type"].startswith("text/javascript")
    )


def test_accepting_on_the_page_releases_the_value_and_the_audit_log_says_so(review):
    owner, scientist, client = review
    handle, request = ask(owner, scientist)
    answer = decide(client, request)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "message": 'request "total" accepted: the value was sent'}
    assert handle.wait(UNIT).item() == 12.0
    (decision,) = owner.audit.events("decision")
    assert decision["status"] == "accepted" and decision["decided_by"] == "owner (review page)"
    assert request.grant is not None  # decided by hand, as request.accept() would have been
    assert "No request is waiting for you." in client.get(f"/{TOKEN}/state").text


def test_denying_on_the_page_returns_none_to_the_scientist(review):
    owner, scientist, client = review
    handle, request = ask(owner, scientist)
    assert decide(client, request, "deny").json()["message"] == 'request "total" denied'
    with pytest.warns(sy.RequestWarning, match="denied by the owner"):
        assert handle.wait(UNIT) is None


def test_answering_a_decided_or_timed_out_request_again_is_a_clear_error(review):
    owner, scientist, client = review
    handle, request = ask(owner, scientist)
    request.deny()
    again = decide(client, request)
    assert again.status_code == 409
    assert again.json()["message"] == (
        'request "total" was already denied by owner; nothing changed'
    )
    with pytest.warns(sy.RequestWarning):
        handle.wait(UNIT)
    handle, request = ask(owner, scientist, name="late")
    owner.requests.expire(request)
    late = decide(client, request, "deny")
    assert late.status_code == 409 and late.json()["message"] == (
        'request "late" had already timed out; nothing changed'
    )
    missing = client.post(f"/{TOKEN}/requests/nosuchrequest/accept", headers={"Origin": ORIGIN})
    assert missing.status_code == 404 and "no request" in missing.json()["message"]
    with pytest.warns(sy.RequestWarning):
        handle.wait(UNIT)


@pytest.mark.parametrize("token", ["", "wrong-token", TOKEN[:-1], TOKEN + "x", "ünïcode"])
def test_no_token_or_a_wrong_one_gets_nothing_and_decides_nothing(review, token):
    owner, scientist, client = review
    handle, request = ask(owner, scientist)
    prefix = f"/{token}" if token else ""
    for path in ("/", "/state", "/events", "/static/page.js"):
        assert client.get(prefix + path).status_code == 404
    refused = client.post(f"{prefix}/requests/{request.id}/accept", headers={"Origin": ORIGIN})
    assert refused.status_code in (404, 405)
    assert request.status.value == "pending" and handle.status == "pending"
    request.deny()
    with pytest.warns(sy.RequestWarning):
        handle.wait(UNIT)


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"},
     {"Origin": "http://127.0.0.1:9999"}, {"Sec-Fetch-Site": "cross-site"}],
)  # fmt: skip
def test_a_decision_from_another_site_is_refused_and_decides_nothing(review, headers):
    owner, scientist, client = review
    handle, request = ask(owner, scientist)
    refused = decide(client, request, **headers)
    assert refused.status_code == 403 and refused.json()["ok"] is False
    assert "refused: a decision from" in refused.json()["message"]
    assert request.status.value == "pending" and not owner.audit.events("decision")
    request.deny()
    with pytest.warns(sy.RequestWarning):
        handle.wait(UNIT)


def test_the_page_answers_only_at_its_own_host(review):
    # a name another site points at 127.0.0.1 (DNS rebinding) reaches nothing
    _, _, client = review
    page = client.get(f"/{TOKEN}/", headers={"Host": f"evil.example:{PORT}"})
    assert page.status_code == 403
    assert client.get(f"/{TOKEN}/", headers={"Host": f"localhost:{PORT}"}).status_code == 200


def test_a_form_posted_without_the_script_is_sent_back_to_the_page(review):
    owner, scientist, client = review
    handle, request = ask(owner, scientist)
    answer = client.post(f"/{TOKEN}/requests/{request.id}/accept", headers={"Origin": ORIGIN},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == f"/{TOKEN}/"
    assert handle.wait(UNIT).item() == 12.0


def test_what_a_scientist_chose_is_shown_as_text(pair):
    owner, scientist = pair
    owner.publish(torch.arange(4.0), tags=["ages"])
    app = build_app(owner, TOKEN, PORT, Changes())
    with TestClient(app, base_url=ORIGIN) as client:
        name = '<script>alert("x")</script><img src=x onerror=alert(1)>'
        reason = "fine\x1b[2J\nreally\u202e</span><b>bold</b>"
        handle, request = ask(owner, scientist, name=name, reason=reason)
        html = client.get(f"/{TOKEN}/").text
        assert "<script>alert" not in html and "<img" not in html and "<b>bold" not in html
        assert "&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;" in html
        assert "fine\\x1b[2J\\nreally\\u202e&lt;/span&gt;&lt;b&gt;bold&lt;/b&gt;" in html
        assert "\x1b" not in html and "\u202e" not in html
        request.deny()
        with pytest.warns(sy.RequestWarning):
            handle.wait(UNIT)


def test_the_page_is_told_of_each_change_as_it_happens_and_stops_with_the_session():
    owner, scientist = sy.duet_pair()
    owner.publish(torch.arange(4.0), tags=["ages"])
    page = owner.start_review()
    assert page.url.startswith("http://127.0.0.1:") and page.token in page.url
    with httpx.Client(timeout=UNIT) as client, client.stream("GET", page.url + "events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        assert next_event(lines) == ("changed", "open")
        handle, request = ask(owner, scientist)
        assert next_event(lines)[0] == "changed"  # no reload, no polling
        assert request.id in client.get(page.url + "state").text
        request.deny()
        assert next_event(lines)[0] == "changed"
        with pytest.warns(sy.RequestWarning):
            handle.wait(UNIT)
        scientist.close()  # its leaving is a change too
        owner.close()
        seen = [next_event(lines)]
        while seen[-1][0] == "changed":
            seen.append(next_event(lines))
        assert seen[-1] == ("closed", "the owner's session closed")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", page.port), timeout=UNIT).close()


def privacy_section(html: str) -> str:
    return html.split('<section id="privacy">', 1)[1].split("</section>", 1)[0]


def test_the_page_shows_each_budget_and_the_last_dp_charges(review):
    owner, scientist, client = review
    section = privacy_section(client.get(f"/{TOKEN}/").text)
    assert "No privacy budget: every DP release is refused." in section
    assert not owner.privacy.path.exists()  # the page opened no ledger of its own
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    owner.privacy.set_budget("*", "<b>x</b>\u202e", epsilon=2.0, delta=1e-6)
    count = scientist.privacy.count(scientist.store["ages"], epsilon=0.25, timeout_secs=UNIT)
    assert isinstance(count, int)
    (spender,) = [r["scientist"] for r in owner.privacy.rows() if r["scientist"] != "*"]
    html = client.get(f"/{TOKEN}/state").text
    section = privacy_section(html)
    row = section.split(f'<code class="id">{spender}</code>', 1)[1].split("</tr>", 1)[0]
    cells = [cell.split("</td>", 1)[0] for cell in row.split("<td>")[1:]]
    assert cells == [
        '<span class="tag">ages</span>',
        '1 <span class="dim">(the default "*")</span>',  # budget, and whose it is
        "1e-05",
        "0.25",  # spent
        "0.75",  # remaining
    ]
    assert "the default: each scientist without a budget" in section  # the "*" rows
    # the charge: its mechanism and state, newest first
    assert "Last DP charges" in section
    assert "Laplace <span class='dim'>epsilon 0.25</span>" in section and "committed" in section
    # text the page did not write is escaped, as everywhere on it
    assert "&lt;b&gt;x&lt;/b&gt;\\u202e" in section and "<b>x</b>" not in section
    # and the audit log says what was charged
    audit = html.split('<section id="audit">', 1)[1]
    assert 'charged epsilon 0.25 (0.75 left) on <span class="tag">ages</span>, committed' in audit


def test_a_dp_charge_updates_the_open_page(tmp_path):
    owner, scientist = sy.duet_pair()
    owner.publish(torch.arange(40.0), tags=["ages"])
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    page = owner.start_review()
    try:
        with (
            httpx.Client(timeout=UNIT) as client,
            client.stream("GET", page.url + "events") as events,
        ):
            lines = events.iter_lines()
            assert next_event(lines) == ("changed", "open")
            scientist.privacy.sum(scientist.store["ages"], bounds=(0, 40), epsilon=0.5)
            assert next_event(lines)[0] == "changed"  # the charge is an audit event
            section = privacy_section(client.get(page.url + "state").text)
            assert "Laplace" in section and "0.5" in section
    finally:
        scientist.close()
        owner.close()


def next_event(lines) -> tuple[str, str]:
    """The next server-sent event's name and data (the stream's read timeout bounds it)."""
    name = data = ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and name:
            return name, data
    raise AssertionError("the event stream ended")


def test_launch_duet_review_false_starts_no_page_and_review_starts_one(capsys):
    owner, scientist = sy.duet_pair()
    try:
        assert owner.review_url is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            url = owner.review()
        assert url == owner.review_url and f"the review page: {url}" in capsys.readouterr().out
        assert httpx.get(url, timeout=UNIT).status_code == 200
    finally:
        scientist.close()
        owner.close()
    assert owner.review_url is None


def test_a_nodes_config_turns_the_page_off_and_bounds_how_long_requests_wait():
    config, _ = parse_config("[review]\nenabled = false\n\n[limits]\nrequest_timeout_secs = 30\n")
    assert config.review.enabled is False and config.limits.request_timeout_secs == 30
    default, _ = parse_config("")
    assert default.review.enabled is True and default.limits.request_timeout_secs == 600


def test_the_owners_request_timeout_ends_a_request_that_gives_none(capsys):
    owner = sy.OwnerSession(request_timeout_secs=0.2, max_scientists=2)
    owner.publish(torch.arange(4.0), tags=["ages"])
    _, scientist = sy.duet_pair(owner=owner)
    try:
        ptr = (scientist.store["ages"] * 2).sum()
        with pytest.warns(sy.RequestWarning, match="timed out"):
            assert ptr.get(request_block=True, name="slow") is None
        (decision,) = owner.audit.events("decision")
        assert decision["status"] == "timeout"
    finally:
        scientist.close()
        owner.close()


def test_launch_duet_prints_the_page_and_stops_it_with_the_session(capsys):
    owner, scientist = webrtc_pair(audit=False)
    try:
        url = owner.review_url
        assert (
            url is not None
            and f"review requests on this page (keep its address to yourself): {url}"
            in capsys.readouterr().out
        )
        assert httpx.get(url, timeout=UNIT).status_code == 200
        assert (
            httpx.get(url.replace(owner._review.token, "x" * 43), timeout=UNIT).status_code == 404
        )
    finally:
        scientist.close()
        owner.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=UNIT)
    quiet, scientist = webrtc_pair(audit=False, review=False)
    try:
        assert quiet.review_url is None and "review" not in capsys.readouterr().out
    finally:
        scientist.close()
        quiet.close()


def test_in_a_notebook_review_shows_the_page_itself(monkeypatch):
    import IPython.display

    import duet.review

    shown = []
    monkeypatch.setattr(duet.review, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    owner, scientist = sy.duet_pair()
    try:
        url = owner.review(height=500)
        (frame,) = shown
        assert isinstance(frame, IPython.display.IFrame)
        assert frame.src == url and frame.height == 500 and url == owner.review_url
        assert owner.review() == url  # the same page, not a second one
    finally:
        scientist.close()
        owner.close()


def test_in_a_real_notebook_kernel_review_and_requests_show_the_page_in_the_cell(tmp_path):
    import asyncio
    import os

    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    from .test_notebooks import KERNEL_NAME, kernel_specs

    code = (
        "import duet as sy\n"
        "owner, scientist = sy.duet_pair()\n"
        "url = owner.review()\n"
        "print('address', url)"
    )
    cells = [code, "owner.requests", "owner.stop_review()\nowner.requests",
             "scientist.close(); owner.close()"]  # fmt: skip
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=kernel_specs(tmp_path / "kernels"))  # fmt: skip
    client = NotebookClient(notebook, km=manager, timeout=UNIT, startup_timeout=2 * UNIT,
                            shutdown_kernel="immediate")  # fmt: skip
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}

    async def run() -> None:
        async with client.async_setup_kernel(env=env, cleanup_kc=True):
            for index, cell in enumerate(notebook.cells):
                await client.async_execute_cell(cell, index)

    asyncio.run(run())
    outputs = notebook.cells[0].outputs
    (frame,) = [o for o in outputs if o["output_type"] == "display_data"]
    printed = "".join(
        o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout"
    )
    url = printed.split("address ", 1)[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    assert f'src="{url}"' in frame["data"]["text/html"] and "<iframe" in frame["data"]["text/html"]
    # duet.requests: the page too, at the requests waiting, its buttons working there
    (shown,) = [o for o in notebook.cells[1].outputs if o["output_type"] == "execute_result"]
    assert f'<iframe src="{url}#pending"' in shown["data"]["text/html"]
    # once the page is stopped: the text it always had, no page
    (shown,) = [o for o in notebook.cells[2].outputs if o["output_type"] == "execute_result"]
    assert "text/html" not in shown["data"]
    assert shown["data"]["text/plain"] == "<requests: 0 pending, 0 in all>"


def test_a_node_without_its_page_still_ends_a_request_nobody_decides(tmp_path):
    import signal
    import textwrap
    from pathlib import Path

    import numpy as np

    from .processes import Process, start_signaling_server

    np.save(tmp_path / "ages.npy", np.arange(4.0))
    server, url = start_signaling_server()
    (tmp_path / "node.toml").write_text(
        textwrap.dedent(f"""
        [owner]
        signaling_url = "{url}"
        unknown = "accept"
        audit = "audit.sqlite3"

        [limits]
        request_timeout_secs = 1

        [review]
        enabled = false

        [[publish]]
        path = "ages.npy"
        tags = ["ages"]
        """)
    )
    node = Process("-m", "duet", "serve", str(tmp_path / "node.toml"), stdin=False,
                   home=str(tmp_path / "home"))  # fmt: skip
    visitor = None
    try:
        session_id = node.line(r"duet session ID: ([0-9a-f]+)", 2 * UNIT).group(1)
        owner_id = node.line(r'owner_id="([0-9a-f-]+)"').group(1)
        peer = str(Path(__file__).parent / "peers" / "visitor.py")
        visitor = Process(peer, session_id, url, owner_id, "--ask", "ages")
        # it asks with timeout_secs=60; the node's limit ends it after 1 s, undecided
        assert visitor.event("event", "answer", 2 * UNIT)["value"] is None
        visitor.send("bye")
        visitor.event("event", "left")
        node.popen.send_signal(signal.SIGTERM)
        assert node.exit_code(UNIT) == 0
        output = "\n".join(node.output)
        assert "a request no handler decides times out after 1 s (the review page is off)" in output
        assert "http://127.0.0.1" not in output  # no page, no address
    finally:
        for process in (visitor, node, server):
            if process is not None:
                process.stop()
    (decision,) = AuditLog(tmp_path / "audit.sqlite3").events("decision")
    assert decision["status"] == "timeout"
