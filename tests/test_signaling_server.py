"""End-to-end tests of the signaling server (run as a real subprocess) and its async client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package is used from the working tree, not installed
    sys.path.insert(0, str(ROOT))

from duet.errors import DuetTimeout, SignalingError  # noqa: E402
from duet.pairing.signaling import SignalingClient, SignalingServerError  # noqa: E402
from signaling_server.protocol import Join  # noqa: E402

STARTUP_TIMEOUT_SECS = 30.0
TEST_TIMEOUT_SECS = 30.0
LISTENING = re.compile(r"signaling server listening on (ws://127\.0\.0\.1:(\d+))")
SDP_OFFER = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=offer é ✓\r\n" + "a=x\r\n" * 500
SDP_ANSWER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=answer\r\na=setup:active\r\n"

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run one test's async body on a fresh loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, TEST_TIMEOUT_SECS)

    return asyncio.run(bounded())


# --------------------------------------------------------------------------- server process


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    def stop(self) -> tuple[bytes, str]:
        """Stop gracefully (SIGTERM), return what remained on stdout and the whole stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        assert self.proc.stdout is not None
        rest = b"" if self.proc.stdout.closed else self.proc.stdout.read()
        self.proc.stdout.close()
        return rest, self.stderr_path.read_text(errors="replace")


def _read_first_line(proc: subprocess.Popen[bytes], timeout_secs: float) -> str:
    """Read stdout up to the first newline, giving up after ``timeout_secs``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    loop_deadline = time.monotonic() + timeout_secs
    data = b""
    while b"\n" not in data:
        remaining = loop_deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"server printed no listening line within {timeout_secs} s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"server exited before listening (exit code {proc.wait(10)})")
        data += chunk
    line, _, extra = data.partition(b"\n")
    assert not extra, f"server printed more than one line: {data!r}"
    return line.decode()


def _start_server(log_dir: Path, *args: str) -> ServerProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"server-{len(list(log_dir.iterdir()))}.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling_server", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    server = ServerProcess(proc, "", stderr_path)
    try:
        line = _read_first_line(proc, STARTUP_TIMEOUT_SECS)
    except BaseException:
        _, log = server.stop()
        print(log, file=sys.stderr)
        raise
    match = LISTENING.fullmatch(line)
    assert match, f"unexpected listening line {line!r}"
    server.url = match.group(1)
    return server


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with default limits, shared by the tests that don't need special ones."""
    server = _start_server(tmp_path_factory.mktemp("signaling"))
    yield server.url
    server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server with extra command line options; every one is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = _start_server(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --------------------------------------------------------------------------- helpers


async def _complete_session(url: str) -> tuple[str, str, str]:
    """Run a whole owner/scientist exchange; return the session ID and what each side got."""
    owner = await SignalingClient.connect(url)
    scientist = await SignalingClient.connect(url)
    try:
        session_id = await owner.register()
        await scientist.join(session_id)
        await owner.wait_peer_joined(10)
        await scientist.send_offer(SDP_OFFER)
        offer = await owner.wait_offer(10)
        await owner.send_answer(SDP_ANSWER)
        answer = await scientist.wait_answer(10)
        return session_id, offer, answer
    finally:
        await owner.close()
        await scientist.close()


async def _send_raw(url: str, payload: str | bytes) -> tuple[dict[str, Any], int | None]:
    """Send one raw message on a new connection; return the reply and the close code after it."""
    async with connect(url, compression=None, max_size=None) as ws:
        await ws.send(payload)
        reply = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        rcvd = closed.value.rcvd
        return reply, (rcvd.code if rcvd else None)


async def _registered_owner(url: str) -> tuple[SignalingClient, str]:
    owner = await SignalingClient.connect(url)
    return owner, await owner.register()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- tests


def test_register_gives_a_32_hex_session_id(server_url: str) -> None:
    async def body() -> None:
        owner, session_id = await _registered_owner(server_url)
        other, other_id = await _registered_owner(server_url)
        assert re.fullmatch(r"[0-9a-f]{32}", session_id)
        assert other_id != session_id
        assert owner.ttl_secs == 600
        await owner.close()
        await other.close()

    run(body())


def test_join_then_offer_and_answer_are_relayed_exactly(server_url: str) -> None:
    _, offer, answer = run(_complete_session(server_url))
    assert offer == SDP_OFFER
    assert answer == SDP_ANSWER


def test_server_closes_both_connections_normally_after_the_answer(server_url: str) -> None:
    async def body() -> None:
        owner, session_id = await _registered_owner(server_url)
        async with connect(server_url, compression=None) as scientist:
            await scientist.send(json.dumps({"type": "join", "session_id": session_id}))
            assert json.loads(await scientist.recv()) == {"type": "joined"}
            await scientist.send(json.dumps({"type": "offer", "sdp": "o"}))
            assert await owner.wait_offer(10) == "o"
            await owner.send_answer("a")
            assert json.loads(await scientist.recv()) == {"type": "answer", "sdp": "a"}
            with pytest.raises(ConnectionClosed) as closed:
                await scientist.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        await owner.close()

    run(body())


def test_joining_an_unknown_id_names_the_id_and_the_fix(server_url: str) -> None:
    async def body() -> None:
        async with await SignalingClient.connect(server_url) as scientist:
            with pytest.raises(SignalingServerError) as refused:
                await scientist.join("3fa2" + "0" * 28)
        assert refused.value.server_code == "unknown_session"
        assert "session 3fa20000… is unknown or expired; ask the owner for a new ID" in str(
            refused.value
        )

    run(body())


def test_second_joiner_is_refused_and_first_session_still_works(server_url: str) -> None:
    async def body() -> None:
        owner, session_id = await _registered_owner(server_url)
        first = await SignalingClient.connect(server_url)
        second = await SignalingClient.connect(server_url)
        await first.join(session_id)
        with pytest.raises(SignalingServerError) as refused:
            await second.join(session_id)
        assert refused.value.server_code == "session_taken"
        await first.send_offer(SDP_OFFER)
        assert await owner.wait_offer(10) == SDP_OFFER
        await owner.send_answer(SDP_ANSWER)
        assert await first.wait_answer(10) == SDP_ANSWER
        for client in (owner, first, second):
            await client.close()

    run(body())


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        pytest.param("{not json", "not valid JSON", id="not-json"),
        pytest.param("[1, 2, 3]", "JSON array", id="not-an-object"),
        pytest.param('{"type": "dance"}', "'dance'", id="unknown-type"),
        pytest.param('{"type": "join"}', '"session_id"', id="join-without-session-id"),
        pytest.param('{"type": "join", "session_id": 7}', "got 7", id="session-id-not-a-string"),
        pytest.param('{"type": "offer", "sdp": "v=0"}', '"offer"', id="offer-before-join"),
        pytest.param(b"\x00\x01", "binary", id="binary-message"),
        pytest.param("[" * 100_000, "not valid JSON", id="deeply-nested"),
    ],
)
def test_malformed_message_gets_an_error_and_server_still_serves(
    server_url: str, payload: str | bytes, mentions: str
) -> None:
    async def body() -> None:
        reply, close_code = await _send_raw(server_url, payload)
        assert reply["type"] == "error"
        assert reply["code"] == "malformed"
        assert mentions in reply["message"]
        assert close_code == 1008
        _, offer, answer = await _complete_session(server_url)
        assert (offer, answer) == (SDP_OFFER, SDP_ANSWER)

    run(body())


def test_answer_before_offer_and_owner_join_are_malformed(server_url: str) -> None:
    async def body() -> None:
        owner, session_id = await _registered_owner(server_url)
        await owner.send_answer(SDP_ANSWER)
        with pytest.raises(SignalingServerError) as refused:
            await owner.wait_offer(10)
        assert refused.value.server_code == "malformed"
        assert "before the scientist's offer" in str(refused.value)
        await owner.close()

        owner, session_id = await _registered_owner(server_url)
        await owner.send(Join(session_id=session_id))
        with pytest.raises(SignalingServerError) as refused:
            await owner.wait_peer_joined(10)
        assert refused.value.server_code == "malformed"
        await owner.close()

        _, offer, answer = await _complete_session(server_url)
        assert (offer, answer) == (SDP_OFFER, SDP_ANSWER)

    run(body())


def test_oversized_message_gets_too_big_and_server_still_serves(
    start_server: Callable[..., ServerProcess],
) -> None:
    url = start_server("--max-message-bytes", "4096").url

    async def body() -> None:
        big = json.dumps({"type": "register", "padding": "x" * 5000})
        reply, close_code = await _send_raw(url, big)
        assert reply["code"] == "too_big"
        assert "4096" in reply["message"]
        assert close_code == 1009

        async with connect(url, compression=None) as ws:  # far beyond the limit: cut off
            await ws.send("x" * 100_000)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        _, offer, answer = await _complete_session(url)
        assert (offer, answer) == (SDP_OFFER, SDP_ANSWER)

    run(body())


def test_scientist_leaving_before_the_answer_tells_the_owner(server_url: str) -> None:
    async def body() -> None:
        owner, session_id = await _registered_owner(server_url)
        scientist = await SignalingClient.connect(server_url)
        await scientist.join(session_id)
        await owner.wait_peer_joined(10)
        await scientist.close()
        with pytest.raises(SignalingServerError) as left:
            await owner.wait_offer(10)
        assert left.value.server_code == "peer_left"
        await owner.close()

    run(body())


def test_owner_leaving_before_pairing_removes_the_session(server_url: str) -> None:
    async def body() -> None:
        owner, session_id = await _registered_owner(server_url)
        await owner.close()
        for _ in range(10):  # the server may not have noticed the close yet: retry, bounded
            async with await SignalingClient.connect(server_url) as scientist:
                try:
                    await scientist.join(session_id)
                except SignalingServerError as refused:
                    assert refused.server_code == "unknown_session"
                    return
        pytest.fail("the session of an owner who left could still be joined")

    run(body())


def test_a_client_that_sends_nothing_is_dropped(
    start_server: Callable[..., ServerProcess],
) -> None:
    url = start_server("--first-message-timeout", "0.2").url

    async def body() -> None:
        async with connect(url, compression=None) as idle:
            reply = json.loads(await idle.recv())
            assert reply["code"] == "expired"
            assert "no register or join message within 0.2 s of connecting" in reply["message"]
            with pytest.raises(ConnectionClosed) as closed:
                await idle.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    run(body())


def test_idle_connections_do_not_lock_an_address_out(
    start_server: Callable[..., ServerProcess],
) -> None:
    url = start_server("--max-sessions-per-ip", "2").url

    async def body() -> None:
        idle = [await connect(url, compression=None) for _ in range(20)]
        try:
            _, offer, answer = await _complete_session(url)
            assert (offer, answer) == (SDP_OFFER, SDP_ANSWER)
        finally:
            for ws in idle:
                await ws.close()

    run(body())


def test_an_address_may_hold_a_limited_number_of_sessions(
    start_server: Callable[..., ServerProcess],
) -> None:
    url = start_server("--max-sessions-per-ip", "2").url

    async def body() -> None:
        first, _ = await _registered_owner(url)
        second, _ = await _registered_owner(url)
        async with await SignalingClient.connect(url) as third:
            with pytest.raises(SignalingServerError) as refused:
                await third.register()
        assert refused.value.server_code == "too_many_sessions"
        assert "127.0.0.1 already holds 2 open sessions" in str(refused.value)
        assert "--max-sessions-per-ip" in str(refused.value)
        await first.close()
        for _ in range(20):  # the server may not have ended the session yet: retry, bounded
            client = await SignalingClient.connect(url)
            try:
                assert re.fullmatch(r"[0-9a-f]{32}", await client.register())
                break
            except SignalingServerError as exc:
                assert exc.server_code == "too_many_sessions"
            finally:
                await client.close()
        else:
            pytest.fail("a session's place was not freed after its owner left")
        await second.close()

    run(body())


def test_unpaired_session_expires_and_the_owner_is_told(
    start_server: Callable[..., ServerProcess],
) -> None:
    url = start_server("--session-ttl", "1").url

    async def body() -> None:
        owner, session_id = await _registered_owner(url)
        assert owner.ttl_secs == 1
        with pytest.raises(SignalingServerError) as expired:
            await owner.wait_peer_joined(20)
        assert expired.value.server_code == "expired"
        assert "expired after 1 s" in str(expired.value)
        await owner.close()
        async with await SignalingClient.connect(url) as scientist:
            with pytest.raises(SignalingServerError) as refused:
                await scientist.join(session_id)
            assert refused.value.server_code == "unknown_session"

    run(body())


def test_registration_beyond_max_sessions_says_server_full(
    start_server: Callable[..., ServerProcess],
) -> None:
    url = start_server("--max-sessions", "1").url

    async def body() -> None:
        owner, _ = await _registered_owner(url)
        async with await SignalingClient.connect(url) as other:
            with pytest.raises(SignalingServerError) as refused:
                await other.register()
            assert refused.value.server_code == "server_full"
        await owner.close()

    run(body())


def test_each_session_is_logged_in_one_line_and_stdout_has_one_line(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    session_id, _, _ = run(_complete_session(server.url))
    rest_of_stdout, log = server.stop()
    assert rest_of_stdout == b""
    lines = [line for line in log.splitlines() if f"session {session_id[:8]}…" in line]
    assert len(lines) == 1, log
    assert re.search(
        r"registered -> joined -> relayed offer/answer, closed after [0-9.]+ s$", lines[0]
    )
    assert session_id not in log  # only a prefix of the secret ID is logged


def test_client_reports_an_unreachable_server_as_signaling_error() -> None:
    url = f"ws://127.0.0.1:{_free_port()}"

    async def body() -> None:
        with pytest.raises(SignalingError) as failed:
            await SignalingClient.connect(url, timeout_secs=10)
        assert url in str(failed.value)
        assert failed.value.__cause__ is not None

    run(body())


def test_client_wait_that_runs_out_raises_duet_timeout(server_url: str) -> None:
    async def body() -> None:
        owner, _ = await _registered_owner(server_url)
        with pytest.raises(DuetTimeout) as timed_out:
            await owner.wait_peer_joined(0.05)
        assert "a scientist to join" in str(timed_out.value)
        await owner.close()

    run(body())


def test_embedded_server_runs_on_the_current_loop() -> None:
    from signaling_server import start_embedded_server

    async def body() -> None:
        server, url = await start_embedded_server("127.0.0.1", 0, session_ttl=30)
        try:
            _, offer, answer = await _complete_session(url)
            assert (offer, answer) == (SDP_OFFER, SDP_ANSWER)
        finally:
            await server.close()

    run(body())


def test_help_exits_zero_and_mentions_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signaling_server", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in (
        "--host",
        "--port",
        "--session-ttl",
        "--max-message-bytes",
        "--max-sessions-per-ip",
        "--first-message-timeout",
        "--max-sessions",
        "--max-pending-joins",
        "--join-timeout",
        "--log-level",
    ):
        assert option in done.stdout
