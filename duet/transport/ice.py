"""Which local addresses ICE may use, and reading ICE candidates out of an SDP.

aiortc gathers candidates with aioice: ``aioice.ice.Connection.gather_candidates`` asks the
module-level ``aioice.ice.get_host_addresses()`` for *every* address of every interface
(always skipping 127.0.0.1) and binds one UDP socket per address. Neither aiortc's
``RTCConfiguration`` nor ``RTCIceGatherer`` has an option to choose those addresses, and
``Connection`` is created inside aiortc's private transport code, so a subclass cannot be slid
in. The narrowest hook is that one function.

``restricted_host_addresses(hosts)`` therefore installs, once, a wrapper around
``aioice.ice.get_host_addresses`` that consults a ``ContextVar``: outside the context manager
(the var is unset) it is the original function and every other aioice user is unaffected;
inside, it returns exactly the configured addresses (127.0.0.1 included). aiortc runs the
gathering of ``setLocalDescription`` in tasks created from the awaiting task (``asyncio.gather``),
and tasks copy the current context when created, so the restriction follows our own gathering
and only it, even with other connections gathering concurrently on the same loop.

Because this relies on an aioice internal, callers also verify the result:
``check_host_candidates`` refuses a local description with a host candidate outside the
configured set (before it is handed to anyone, and before ICE checks start).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import os
from collections.abc import Callable, Iterator, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from ..errors import NetworkError, UsageError

logger = logging.getLogger(__name__)

ICE_HOSTS_ENV = "DUET_ICE_HOSTS"

_allowed_hosts: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "duet_ice_hosts", default=None
)
_WRAPPER_MARK = "__duet_ice_hosts_wrapper__"


def ice_configuration(ice_servers: Sequence[str | RTCIceServer] | None) -> RTCConfiguration:
    """The peer connection configuration: only the STUN/TURN servers given (URLs or servers).

    Always an explicit list, as with ``iceServers=None`` aiortc would use stun.l.google.com.
    """
    servers = [
        s if isinstance(s, RTCIceServer) else RTCIceServer(urls=s) for s in ice_servers or ()
    ]
    return RTCConfiguration(iceServers=servers)


def resolve_ice_hosts(ice_hosts: Sequence[str] | None) -> tuple[str, ...] | None:
    """The host addresses to gather on: ``ice_hosts``, else ``$DUET_ICE_HOSTS``, else None (all).

    Addresses are validated and normalised (``ipaddress``); an empty list is a usage error since
    it could never connect.
    """
    if ice_hosts is None:
        env = os.environ.get(ICE_HOSTS_ENV, "").strip()
        if not env:
            return None
        ice_hosts = [part.strip() for part in env.split(",") if part.strip()]
        source = f"${ICE_HOSTS_ENV}"
    else:
        if isinstance(ice_hosts, str):
            raise UsageError("ice_hosts must be a list of IP address strings, not one string")
        source = "ice_hosts"
    hosts: list[str] = []
    for host in ice_hosts:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError as exc:
            raise UsageError(f"{source}: {host!r} is not an IP address") from exc
        if address not in hosts:
            hosts.append(address)
    if not hosts:
        raise UsageError(f"{source} is empty: ICE would have no address to gather on")
    return tuple(hosts)


def _install_wrapper() -> None:
    current = aioice.ice.get_host_addresses
    if getattr(current, _WRAPPER_MARK, False):
        return
    original: Callable[[bool, bool], list[str]] = current

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        hosts = _allowed_hosts.get()
        if hosts is None:
            return original(use_ipv4, use_ipv6)
        chosen = [
            host
            for host in hosts
            if (use_ipv4 if ipaddress.ip_address(host).version == 4 else use_ipv6)
        ]
        logger.debug("ICE host addresses restricted to %s", chosen)
        return chosen

    setattr(get_host_addresses, _WRAPPER_MARK, True)
    aioice.ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def restricted_host_addresses(hosts: tuple[str, ...] | None) -> Iterator[None]:
    """While active (in this task and tasks it creates), ICE gathers host candidates only on
    ``hosts``; ``None`` leaves aioice's default (every interface) in place."""
    if hosts is None:
        yield
        return
    _install_wrapper()
    token = _allowed_hosts.set(hosts)
    try:
        yield
    finally:
        _allowed_hosts.reset(token)


def sdp_candidates(sdp: str) -> list[tuple[str, str]]:
    """``(connection address, candidate type)`` of every ``a=candidate`` line of ``sdp``."""
    found: list[tuple[str, str]] = []
    for line in sdp.splitlines():
        line = line.strip()
        if not line.startswith("a=candidate:"):
            continue
        # foundation component transport priority address port "typ" type ...
        fields = line[len("a=candidate:") :].split()
        if len(fields) < 8 or fields[6] != "typ":
            raise NetworkError(f"malformed ICE candidate line in SDP: {line!r}")
        found.append((fields[4], fields[7]))
    return found


def without_mdns_candidates(sdp: str) -> str:
    """``sdp`` without candidates named by an mDNS host name (``*.local``): resolving one would
    send multicast queries on every interface, outside any address restriction."""
    kept = []
    for line in sdp.splitlines(keepends=True):
        fields = line.split()
        if line.startswith("a=candidate:") and len(fields) > 4 and fields[4].endswith(".local"):
            logger.info("ignoring the peer's mDNS ICE candidate %s", fields[4])
            continue
        kept.append(line)
    return "".join(kept)


def sdp_candidate_addresses(sdp: str) -> list[str]:
    """The connection addresses of all ``a=candidate`` lines of ``sdp``."""
    return [address for address, _ in sdp_candidates(sdp)]


def check_host_candidates(sdp: str, hosts: tuple[str, ...] | None) -> None:
    """Raise NetworkError if ``sdp`` has a host candidate outside ``hosts`` (None: no check)."""
    if hosts is None:
        return
    allowed = {ipaddress.ip_address(h) for h in hosts}
    for address, kind in sdp_candidates(sdp):
        if kind != "host":
            continue  # server-reflexive / relayed: from the STUN/TURN servers configured
        try:
            ok = ipaddress.ip_address(address) in allowed
        except ValueError:
            ok = False  # e.g. an mDNS name: not an address we configured
        if not ok:
            raise NetworkError(
                f"ICE gathered a host candidate on {address}, outside the configured "
                f"addresses {list(hosts)}; refusing to use it"
            )
