"""Command line entry point: ``python -m signaling_server --host 127.0.0.1 --port 5000``.

With ``--redis-url`` several instances (behind one address) share their sessions through that
Redis; without it the server is one instance holding its sessions in memory.

Prints exactly one line to stdout once listening (``signaling server listening on ws://HOST:PORT``)
and logs to stderr. SIGINT and SIGTERM shut it down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading

from ._redis import RedisUnavailable
from ._server import SignalingServer
from ._sessions import (
    DEFAULT_CONNECTION_BURST,
    DEFAULT_CONNECTIONS_PER_SEC,
    DEFAULT_FIRST_MESSAGE_TIMEOUT,
    DEFAULT_JOIN_TIMEOUT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_PENDING_JOINS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SESSIONS_PER_IP,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SESSION_TTL,
    Limits,
)

logger = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m signaling_server",
        description=(
            "Websocket rendezvous server for duet: a data owner registers and gets a session ID, "
            "a data scientist joins with it, and the server relays the WebRTC offer and answer "
            "between them and nothing else. An owner may keep its session open for several "
            "scientists, each joining with the same ID."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all IPv4)"
    )
    parser.add_argument(
        "--port", type=int, default=5000, help="TCP port to listen on; 0 picks a free port"
    )
    parser.add_argument(
        "--session-ttl",
        type=_positive_float,
        default=DEFAULT_SESSION_TTL,
        metavar="SECS",
        help="seconds an unpaired session lives before it expires (and, once paired, the time "
        "allowed for the offer/answer exchange); an open session (register with max_peers) "
        "expires this long after its owner's last message (each scientist's exchange in it: "
        "see --join-timeout)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="BYTES",
        help="largest message accepted; larger ones get a too_big error (SDP is a few KB)",
    )
    parser.add_argument(
        "--max-sessions-per-ip",
        type=_positive_int,
        default=DEFAULT_MAX_SESSIONS_PER_IP,
        metavar="N",
        help="open sessions one source IP address may register; further registrations from it "
        "get a too_many_sessions error (connections that have not registered do not count)",
    )
    parser.add_argument(
        "--first-message-timeout",
        type=_positive_float,
        default=DEFAULT_FIRST_MESSAGE_TIMEOUT,
        metavar="SECS",
        help="a new connection that sends no register or join message within this time is dropped",
    )
    parser.add_argument(
        "--max-sessions",
        type=_positive_int,
        default=DEFAULT_MAX_SESSIONS,
        metavar="N",
        help="sessions held at once; further registrations get a server_full error",
    )
    parser.add_argument(
        "--max-pending-joins",
        type=_positive_int,
        default=DEFAULT_MAX_PENDING_JOINS,
        metavar="N",
        help="scientists one open session may have mid-exchange (joined, not yet answered) at "
        "once; further joins get a session_busy error (duet's join_duet tries again, within "
        "its wait_secs)",
    )
    parser.add_argument(
        "--join-timeout",
        type=_positive_float,
        default=DEFAULT_JOIN_TIMEOUT,
        metavar="SECS",
        help="a scientist in an open session must send its offer and have it answered or "
        "declined within this time of joining (or the session TTL, if shorter); otherwise its "
        "exchange expires and its place among --max-pending-joins is free again, so joins "
        "that never offer cannot keep real scientists out",
    )
    parser.add_argument(
        "--send-timeout",
        type=_positive_float,
        default=DEFAULT_SEND_TIMEOUT,
        metavar="SECS",
        help="a client that does not read what the server sends it within this time is dropped",
    )
    parser.add_argument(
        "--connections-per-sec",
        type=_positive_float,
        default=DEFAULT_CONNECTIONS_PER_SEC,
        metavar="N",
        help="new connections one source IP address may open a second (after --connection-burst "
        "at once); further ones get a rate_limited error, and count too: an address that goes "
        "on connecting faster stays refused (with a bare HTTP 429) until it slows down",
    )
    parser.add_argument(
        "--connection-burst",
        type=_positive_int,
        default=DEFAULT_CONNECTION_BURST,
        metavar="N",
        help="new connections one source IP address may open at once before "
        "--connections-per-sec applies",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="share sessions with the other instances started with this Redis URL "
        "(redis://host:6379/0 or unix:///path/to/redis.sock): a scientist connected to any of "
        "them joins a session whose owner is connected to another; default: this instance "
        "alone, sessions in memory",
    )
    parser.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="shut down when standard input closes: a process that starts this server as its "
        "child keeps the other end open, so the server never outlives it, however it ends",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (logs go to stderr, one line per session when it ends)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    limits = Limits(
        session_ttl=args.session_ttl,
        max_message_bytes=args.max_message_bytes,
        max_sessions_per_ip=args.max_sessions_per_ip,
        max_sessions=args.max_sessions,
        first_message_timeout=args.first_message_timeout,
        max_pending_joins=args.max_pending_joins,
        join_timeout=args.join_timeout,
        send_timeout=args.send_timeout,
        connections_per_sec=args.connections_per_sec,
        connection_burst=args.connection_burst,
    )
    server = SignalingServer(limits, redis_url=args.redis_url)
    url = await server.start(args.host, args.port)
    print(f"signaling server listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    if args.stop_on_stdin_eof:
        # a thread blocked on reading: its end of file is the parent's end (nothing is sent)
        threading.Thread(
            target=_stop_at_eof, args=(loop, stop), name="stdin-watch", daemon=True
        ).start()
    try:
        await stop.wait()
    finally:
        logger.info("shutting down (%d sessions open)", server.session_count)
        await server.close()


def _stop_at_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(1 << 16):
            pass  # whatever the parent writes is ignored
    with contextlib.suppress(RuntimeError):  # the loop has already stopped
        loop.call_soon_threadsafe(stop.set)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        # websockets logs every connection at INFO; keep the one-line-per-session log readable.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(args))
    except RedisUnavailable as exc:
        print(f"signaling server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"signaling server cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
