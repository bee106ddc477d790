"""The cryptography secure aggregation uses, each piece from a library and none made here:
X25519 key agreement, HKDF-SHA-256, ChaCha20 as the mask generator, ChaCha20-Poly1305 for the
shares owners send each other through the scientist (``cryptography``), and Shamir's secret
sharing over GF(2^128) (``pycryptodome``, on 16-byte blocks: a 32-byte secret is two blocks,
each shared with the same x-coordinates).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .round import PROTOCOL
from .stream import mask

BLOCK = 16  # pycryptodome's Shamir shares 16-byte secrets
SECRET = 32  # the secrets shared: an X25519 private key, a self-mask seed
NONCE = 12


def new_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def agree(private: X25519PrivateKey | bytes, public: bytes) -> bytes:
    """The X25519 shared secret (raises ValueError for a malformed or low-order public key)."""
    if isinstance(private, bytes):
        private = X25519PrivateKey.from_private_bytes(private)
    return private.exchange(X25519PublicKey.from_public_bytes(public))


def derive(secret: bytes, *, purpose: str, context: bytes) -> bytes:
    """A 32-byte key for one purpose in one round: HKDF-SHA-256 over ``secret``, the purpose
    and the round's transcript digest (plus whom it is between) as info."""
    info = f"{PROTOCOL} {purpose}|".encode() + context
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def seed_commitment(seed: bytes) -> bytes:
    """What an owner publishes (signed) about its self-mask seed, so a seed rebuilt from shares
    can be told right from wrong; 32 random bytes hashed reveal nothing usable."""
    return hashlib.sha256(f"{PROTOCOL} seed|".encode() + seed).digest()


def seal(key: bytes, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(NONCE)
    return nonce, ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, associated: bytes) -> bytes | None:
    """The plaintext, or None when it was not sealed under ``key`` with ``associated``."""
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, associated)
    except (InvalidTag, ValueError):
        return None


def split(secret: bytes, threshold: int, count: int) -> list[bytes]:
    """Shamir shares of ``secret`` for x = 1..count, any ``threshold`` of which rebuild it: each
    share is one 16-byte share per 16-byte block of the secret."""
    blocks = [
        Shamir.split(threshold, count, secret[i : i + BLOCK]) for i in range(0, len(secret), BLOCK)
    ]
    for shares in blocks:
        assert [x for x, _ in shares] == list(range(1, count + 1))
    return [b"".join(shares[i][1] for shares in blocks) for i in range(count)]


def combine(shares: Mapping[int, bytes]) -> bytes:
    """The secret the shares (by x-coordinate) rebuild; garbage if they are not of one secret,
    so callers check it against a public key or a commitment."""
    length = len(next(iter(shares.values())))
    return b"".join(
        Shamir.combine([(x, share[i : i + BLOCK]) for x, share in shares.items()])
        for i in range(0, length, BLOCK)
    )


__all__ = [
    "SECRET",
    "agree",
    "combine",
    "derive",
    "mask",
    "new_key",
    "open_sealed",
    "private_bytes",
    "public_bytes",
    "seal",
    "seed_commitment",
    "split",
]
