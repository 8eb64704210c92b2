"""Secrets at rest (backend credentials, SigV4 secret keys) sealed under the master key.

This is the gateway's own key, unrelated to object encryption: the gateway needs these
secrets back (to sign backend requests and to verify SigV4), so they are sealed, not hashed.
It uses Fernet, the audited recipe (AES-128-CBC + HMAC-SHA256, versioned tokens), and
``MultiFernet`` so the master key can be rotated: the first key seals, all keys open.
Object data never passes through here; the gateway has no object decryption code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import BulletproofError

__all__ = [
    "MasterKey",
    "SealBroken",
    "generate_master_key",
    "hash_token",
    "new_secret",
    "token_matches",
]


class SealBroken(BulletproofError):
    """A sealed value could not be opened: wrong master key, or the value was altered."""


def generate_master_key() -> bytes:
    """A fresh master key in Fernet's url-safe base64 form (what the key file holds)."""
    return Fernet.generate_key()


class MasterKey:
    """Seals and opens short secrets. ``keys[0]`` seals; every key in ``keys`` can open."""

    def __init__(self, *keys: bytes) -> None:
        if not keys:
            raise ValueError("at least one master key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._raw = [base64.urlsafe_b64decode(k) for k in keys]

    @classmethod
    def from_file_text(cls, text: str) -> MasterKey:
        """One key per non-empty line, newest first."""
        return cls(*(line.strip().encode() for line in text.splitlines() if line.strip()))

    def derive(self, purpose: str) -> list[bytes]:
        """32-byte subkeys for ``purpose`` (HKDF-SHA256), one per master key, newest first.

        Why derived rather than stored: every node that can open sealed secrets can then sign
        (deployment key) or MAC (cache entries) without another file to distribute, and a
        purpose string keeps the uses independent (a MAC key never equals a signing seed)."""
        return [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(raw)
            for raw in self._raw
        ]

    def seal(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def open(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise SealBroken(
                "sealed secret cannot be opened with the configured master key"
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-seal ``token`` under the newest key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SealBroken(
                "sealed secret cannot be opened with the configured master key"
            ) from exc


def hash_token(token: str) -> str:
    """Bearer tokens are stored hashed: a leaked state file or row does not grant access."""
    return base64.b16encode(hashlib.sha256(token.encode()).digest()).decode().lower()


def token_matches(presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(presented), stored_hash)


def new_secret(nbytes: int = 30) -> str:
    return (
        base64.b64encode(_secrets.token_bytes(nbytes)).decode().replace("+", "A").replace("/", "B")
    )
