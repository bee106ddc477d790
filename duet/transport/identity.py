"""Who is at the other end of a WebRTC connection: certificates, fingerprints and short IDs.

Each side is known by the DTLS certificate of its peer connection. Its sha-256 fingerprint is
shortened to an ID of 16 hex digits (``3fa2-91bc-0d4e-77a1``) that people compare: the
scientist's client ID, which the owner confirms, and the owner's ID, printed in the line the
scientist runs.

The SDP carries fingerprints too, but an SDP passes through the signaling server and is read by
two parsers (ours and aiortc's) that an altered SDP can make disagree. So authentication never
rests on the SDP: once DTLS is up, ``presented_fingerprint`` reads the certificate the peer
actually presented in the handshake, and ``check_presented`` compares it with the ID that was
confirmed. These two functions are the seam a later identity scheme (long-lived keys that sign
the connection's fingerprint) replaces.

aiortc 1.16 has no option for giving a peer connection a certificate made in advance, nor a
public accessor for the peer's certificate; ``peer_connection`` and ``presented_fingerprint``
use its internals in exactly one place each, and fail closed if those change.
"""

from __future__ import annotations

import hashlib
import logging

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..errors import HandshakeError, NetworkError, UsageError

logger = logging.getLogger(__name__)

#: Hex digits in a short ID.
ID_DIGITS = 16


def new_certificate() -> RTCCertificate:
    """A fresh DTLS certificate and key (ECDSA P-256, valid 30 days), as aiortc makes them."""
    return RTCCertificate.generateCertificate()


def _sha256_fingerprint(cert: x509.Certificate) -> str:
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def certificate_fingerprint(certificate: RTCCertificate) -> str:
    """The sha-256 fingerprint of one of our own certificates (upper-case hex with colons)."""
    return _sha256_fingerprint(certificate._cert)


def client_id_from_fingerprint(fp: str) -> str:
    """Short ID for a DTLS fingerprint: 16 hex digits of its sha256 (``3fa2-91bc-0d4e-77a1``).

    The scientist's client ID and the owner's ID are both made this way.
    """
    digest = hashlib.sha256(fp.strip().upper().encode("ascii")).hexdigest()[:ID_DIGITS]
    return "-".join(digest[i : i + 4] for i in range(0, ID_DIGITS, 4))


def normalize_id(text: str) -> str:
    """An ID as typed (any case, any separators) reduced to its letters and digits."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def parse_id(text: str, what: str) -> str:
    """A user-given ID in canonical form (``xxxx-xxxx-xxxx-xxxx``); UsageError if malformed."""
    if not isinstance(text, str):
        raise UsageError(
            f"{what} must be a str like '3fa2-91bc-0d4e-77a1', not {type(text).__name__}"
        )
    digits = normalize_id(text)
    if len(digits) != ID_DIGITS or any(ch not in "0123456789abcdef" for ch in digits):
        raise UsageError(
            f"{what} {text!r} is not an ID of {ID_DIGITS} hex digits like '3fa2-91bc-0d4e-77a1'; "
            "copy it from the line the owner's launch_duet printed"
        )
    return "-".join(digits[i : i + 4] for i in range(0, ID_DIGITS, 4))


def peer_connection(
    configuration: RTCConfiguration, certificate: RTCCertificate
) -> RTCPeerConnection:
    """A peer connection whose DTLS transports will all use ``certificate``.

    aiortc creates its transports later from the certificate list it made in ``__init__``, so
    replacing that list's content right away is enough; callers still check the fingerprint of
    the local description (``webrtc._set_local``), so a change inside aiortc fails loudly.
    """
    pc = RTCPeerConnection(configuration)
    certificates = getattr(pc, "_RTCPeerConnection__certificates", None)
    if not isinstance(certificates, list) or len(certificates) != 1:
        raise NetworkError(
            "this aiortc version does not let duet choose the DTLS certificate; "
            "install aiortc 1.16 (pip install 'aiortc==1.16.*')"
        )
    certificates[0] = certificate
    return pc


def presented_fingerprint(pc: RTCPeerConnection) -> str:
    """The sha-256 fingerprint of the certificate the peer presented in the DTLS handshake.

    Read from the DTLS session itself, never from SDP. Raises HandshakeError if DTLS has not
    completed or the certificate cannot be read.
    """
    sctp = pc.sctp
    dtls = sctp.transport if sctp is not None else None
    if dtls is None or dtls.state != "connected":
        state = dtls.state if dtls is not None else "absent"
        raise HandshakeError(
            f"the DTLS handshake has not completed (state {state}); cannot tell who the peer is"
        )
    ssl = getattr(dtls, "_ssl", None)
    cert = ssl.get_peer_certificate(as_cryptography=True) if ssl is not None else None
    if cert is None:
        raise HandshakeError(
            "cannot read the certificate the peer presented (has aiortc changed?); refusing "
            "the connection rather than trusting the SDP"
        )
    return _sha256_fingerprint(cert)


def check_presented(presented: str, expected_id: str, *, peer: str, expected_from: str) -> None:
    """Raise HandshakeError unless the ``presented`` fingerprint has the ID ``expected_id``.

    ``peer`` names the other side ("scientist", "owner"); ``expected_from`` says where the
    expected ID came from, for the message.
    """
    actual = client_id_from_fingerprint(presented)
    if normalize_id(actual) == normalize_id(expected_id):
        return
    logger.warning("the %s presented %s, expected %s", peer, actual, expected_id)
    raise HandshakeError(
        f"the {peer}'s connection presented the certificate of {actual}, not of {expected_id} "
        f"({expected_from}): someone else is on the other end, most likely placed there by the "
        "signaling server; refusing the connection before anything was sent. Start a new "
        "session, and use a signaling server you trust"
    )
