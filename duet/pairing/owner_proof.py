"""The owner's signature on its answer: a scientist that knows the owner's ID refuses an impostor
before it connects at all.

The owner's identity key signs the session ID and the DTLS certificate fingerprint its answer
names; the answer carries the public key and the signature in one ``a=x-duet-owner`` line. A
scientist given ``owner_id`` checks that the key is the owner's (its ID) and the signature good,
then accepts only that certificate in the DTLS handshake. A signaling server that answers in the
owner's place cannot sign, so the scientist sends nothing to it, not even its handshake.
(The protocol handshake checks the owner's identity again, bound to the connection.)
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import HandshakeError
from ..identity import Identity, id_of, normalize
from ..transport.sdp import sdp_lines

_ATTRIBUTE = "a=x-duet-owner:"
_CONTEXT = "duet-answer/1"


def _message(session_id: str, fingerprint: str) -> bytes:
    return f"{_CONTEXT}|{session_id}|{fingerprint.upper()}".encode()


def sign_answer(sdp: str, identity: Identity, session_id: str, fingerprint: str) -> str:
    """``sdp`` with the owner's key and signature added as a session-level attribute."""
    signature = identity.sign(_message(session_id, fingerprint)).hex()
    line = f"{_ATTRIBUTE}{identity.public_key.hex()} {signature}"
    head, sep, media = sdp.partition("\r\nm=")
    return f"{head}\r\n{line}{sep}{media}" if sep else sdp


def check_answer(sdp: str, owner_id: str, session_id: str, fingerprint: str) -> None:
    """Raise HandshakeError unless the answer is signed by the owner ``owner_id`` for this
    session and this certificate."""
    found = [
        line[len(_ATTRIBUTE) :]
        for line in sdp_lines(sdp, "the owner's answer")
        if line.startswith(_ATTRIBUTE)
    ]
    problem = None
    if len(found) != 1:
        problem = "it is not signed by any owner"
    else:
        key_hex, _, signature_hex = found[0].partition(" ")
        try:
            key, signature = bytes.fromhex(key_hex), bytes.fromhex(signature_hex)
            if len(key) != 32:
                raise ValueError("not an Ed25519 key")
            Ed25519PublicKey.from_public_bytes(key).verify(
                signature, _message(session_id, fingerprint)
            )
        except (ValueError, InvalidSignature):
            problem = "its signature does not hold"
        else:
            signer = id_of(key)
            if normalize(signer) != normalize(owner_id):
                problem = f"it was signed by {signer}"
    if problem is not None:
        raise HandshakeError(
            f"the answer is not from the owner {owner_id} (the owner_id you gave join_duet): "
            f"{problem}. Someone else answered, most likely the signaling server; refusing it "
            "before connecting. Check the owner_id, start a new session, and use a signaling "
            "server you trust"
        )
