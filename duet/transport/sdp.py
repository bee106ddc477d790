"""Reading the peer's SDP strictly: one way to split it into lines, one media section.

An SDP arrives through the signaling server, so it is untrusted text. aiortc splits it with
``str.splitlines`` (which also breaks at ``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``,
``\\x85``, ``\\u2028`` and ``\\u2029``) and, given several application sections, takes the DTLS
and ICE parameters from the last one. An SDP written to be read one way by us and another way
by aiortc could show us one fingerprint and have aiortc accept another. duet's peers write SDP
with CRLF line breaks and exactly one media section (the data channel), so anything else is
refused here, before a socket is opened.

This is a first line of defence only: who the peer is, is decided by the certificate it
presents in the DTLS handshake (``duet.transport.identity``), however the SDP was written.
"""

from __future__ import annotations

from ..errors import NetworkError, ProtocolError
from ..protocol.chunking import MIN_CHUNK_SIZE

_REMOTE_DEFAULT_MAX_MESSAGE = 65536
_FINGERPRINT = "a=fingerprint:"
_SHA256_HEX_DIGITS = 64


def sdp_lines(sdp: str, what: str = "the SDP") -> list[str]:
    """The lines of ``sdp``, which must be separated (and ended) by CRLF and nothing else.

    Raises ProtocolError naming the first line that another parser could split differently.
    """
    if not isinstance(sdp, str) or not sdp.endswith("\r\n"):
        raise ProtocolError(f"{what} does not end with CRLF; refusing it")
    lines = sdp[:-2].split("\r\n")
    for number, line in enumerate(lines, start=1):
        if line.splitlines() != [line]:
            odd = next((ch for ch in line if (ch + "x").splitlines() != [ch + "x"]), "")
            kind = f"a {odd!r} line break" if odd else "an empty line"
            raise ProtocolError(
                f"line {number} of {what} has {kind}: duet's peers separate lines with CRLF "
                "only, and such a line would be read differently by WebRTC than by duet. "
                "Refusing it (the signaling server may have altered it)"
            )
    return lines


def dtls_fingerprint(sdp: str, what: str = "the SDP") -> str:
    """The ``a=fingerprint:sha-256`` value of ``sdp`` (upper-case hex with colons).

    Every ``a=fingerprint`` line counts, at session or media level, as aiortc reads them; all
    sha-256 ones must agree. Raises ProtocolError.
    """
    values = set()
    for line in sdp_lines(sdp, what):
        if not line.startswith(_FINGERPRINT):
            continue
        fields = line[len(_FINGERPRINT) :].split()
        if len(fields) != 2:
            raise ProtocolError(f"malformed fingerprint line in {what}: {line[:120]!r}")
        algorithm, value = fields
        if algorithm.lower() == "sha-256":
            values.add(value.upper())
    if not values:
        raise ProtocolError(f"{what} has no a=fingerprint:sha-256 line")
    if len(values) > 1:
        raise ProtocolError(
            f"{what} has several different sha-256 DTLS fingerprints; refusing it (the "
            "signaling server may have altered it)"
        )
    (value,) = values
    digits = value.replace(":", "")
    if len(digits) != _SHA256_HEX_DIGITS or any(ch not in "0123456789ABCDEF" for ch in digits):
        raise ProtocolError(f"malformed sha-256 DTLS fingerprint {value[:120]!r} in {what}")
    return value


def check_peer_sdp(sdp: str, what: str) -> str:
    """Check that the peer's ``sdp`` has the shape duet's peers write; return its fingerprint.

    CRLF line breaks only, at most one media section and that one a data channel
    (``m=application``); none at all is left to aiortc, which refuses it. Raises ProtocolError.
    """
    lines = sdp_lines(sdp, what)
    sections = [line for line in lines if line.startswith("m=")]
    if len(sections) > 1:
        raise ProtocolError(
            f"{what} has {len(sections)} media sections; duet's peers send exactly one (the data "
            "channel). Refusing it (the signaling server may have altered it)"
        )
    if sections and not sections[0].startswith("m=application "):
        raise ProtocolError(
            f"{what} has a {sections[0].split()[0][2:]!r} media section; duet's peers send "
            "only a data channel (m=application)"
        )
    return dtls_fingerprint(sdp, what)


def sdp_max_message_size(sdp: str) -> int:
    """The peer's ``a=max-message-size`` (0: no limit; 65536 when absent, RFC 8841 s. 6)."""
    for line in sdp.split("\r\n"):
        if line.startswith("a=max-message-size:"):
            value = line.split(":", 1)[1].strip()
            if not (value.isascii() and value.isdigit()):
                raise ProtocolError(f"malformed max-message-size line in the SDP: {line[:80]!r}")
            return int(value)
    return _REMOTE_DEFAULT_MAX_MESSAGE


def chunk_size_for_peer(remote_sdp: str, wanted: int) -> int:
    """``wanted`` lowered to the peer's advertised maximum message size, if it has one."""
    limit = sdp_max_message_size(remote_sdp)
    size = wanted if limit == 0 else min(wanted, limit)  # 0 means "any size"
    if size < MIN_CHUNK_SIZE:
        raise NetworkError(f"the peer accepts data channel messages of only {limit} bytes")
    return size
