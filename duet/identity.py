"""Who an owner or a scientist is, across connections and restarts: a long-lived Ed25519 key.

An identity's ID is the short form people read to each other (``3fa2-91bc-0d4e-77a1``: 16 hex
digits of the sha-256 of the public key). In every connection's handshake each side signs what
makes *this* connection unique (both sides' DTLS certificate fingerprints and fresh nonces) with
its identity key, so the ID a peer proves is bound to the encrypted channel it speaks on: a
signaling server that swapped the offer or the answer cannot pass, and the ID stays the same
when the connection (and its certificates) are new.

Keys live in the duet home: ``$DUET_HOME`` or ``~/.duet``, ``identities/<name>.key``, readable by
their user only (0600). ``Identity.load_or_create()`` makes one on first use. Given no identity,
an owner uses ``owner.key`` and a scientist ``default.key`` (``Identity.for_role``), so the two
sides on one machine have different IDs; every key made before stays readable by its name.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# the one definition of an ID, shared with the signaling server's registry (which never imports
# duet): the registry checks that an owner's ID is its key's
from signaling_server.records import id_of

from .errors import HandshakeError, UsageError

ID_DIGITS = 16
HOME_ENV = "DUET_HOME"
#: the keys ``launch_duet`` and ``join_duet`` use when given no identity: an owner and a
#: scientist on one machine (one duet home) are two parties with two IDs. The scientist's is
#: the key every role used before (``default``), so a scientist's ID stays what it was; an owner
#: that wants the ID it had then passes ``identity="default"``.
DEFAULT_KEYS = {"owner": "owner", "scientist": "default"}


def duet_home() -> Path:
    """The user's duet folder (``$DUET_HOME`` or ``~/.duet``), made private on first use."""
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".duet")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def normalize(text: str) -> str:
    """An ID as typed (any case, any separators) reduced to its letters and digits."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def auth_message(role: str, own_fp: str, peer_fp: str, own_nonce: str, peer_nonce: str) -> bytes:
    """What a side signs in a handshake: its role and what makes this connection unique."""
    return "|".join(("duet-auth/1", role, own_fp, peer_fp, own_nonce, peer_nonce)).encode()


class Identity:
    """An Ed25519 key pair. ``id`` is the short form; ``name`` a display name, not proof."""

    def __init__(self, key: Ed25519PrivateKey, *, name: str = "", path: Path | None = None):
        self._key = key
        self.name = name
        self.path = path
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.id = id_of(self.public_key)

    @classmethod
    def ephemeral(cls, name: str = "") -> Identity:
        """A key kept in memory only (in-process duets, tests)."""
        return cls(Ed25519PrivateKey.generate(), name=name)

    @classmethod
    def load_or_create(cls, key_name: str = "default", *, name: str = "") -> Identity:
        """The identity stored as ``key_name`` in the duet home, made on first use."""
        if not key_name.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"an identity name is letters, digits, - and _, not {key_name!r}")
        folder = duet_home() / "identities"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{key_name}.key"
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise UsageError(
                    f"{path} can be read by other users (mode {mode:o}); an identity key must be "
                    f"yours alone: chmod 600 {path}"
                )
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except ValueError as exc:
                raise UsageError(f"{path} is not a duet identity key ({exc})") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise UsageError(f"{path} does not hold an Ed25519 key")
            return cls(key, name=name, path=path)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # created private (never world-readable, not even for a moment), then moved in place
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.replace(partial, path)
        return cls(key, name=name, path=path)

    @classmethod
    def for_role(cls, role: str, *, name: str = "") -> Identity:
        """The default identity of ``role`` ("owner" or "scientist") in the duet home, made on
        first use (``DEFAULT_KEYS``): an owner and a scientist on one machine differ."""
        if role not in DEFAULT_KEYS:
            raise UsageError(f"role is 'owner' or 'scientist', not {role!r}")
        return cls.load_or_create(DEFAULT_KEYS[role], name=name)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        shown = f" {self.name!r}" if self.name else ""
        return f"<duet identity {self.id}{shown}>"


def verify(public_key: bytes, signature: bytes, message: bytes, *, who: str) -> str:
    """Check that ``signature`` is ``public_key``'s over ``message``; returns the key's ID.
    Raises HandshakeError naming ``who`` otherwise."""
    if len(public_key) != 32:
        raise HandshakeError(f"{who} sent a malformed identity key ({len(public_key)} bytes)")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise HandshakeError(
            f"{who} could not prove its identity on this connection (the signature does not "
            "match); refusing it: someone may stand between you, or it is not who it says"
        ) from exc
    return id_of(public_key)


__all__ = ["DEFAULT_KEYS", "Identity", "auth_message", "duet_home", "id_of", "verify"]
