"""The deployment's Ed25519 signing key: signs audit checkpoints and placement proofs.

Derived from the master key (``MasterKey.derive``), so every gateway replica and worker that
already holds the master key signs with the same key and nothing new has to reach each node.
The public half is published (``GET /.well-known/bulletproof/deployment-key``) so that a tenant,
an auditor or ``bp`` can check a statement without trusting the gateway that serves it.
After a master key rotation the newest key signs; ``public_keys`` lists every key still
configured, so statements signed before the rotation keep verifying.

A signed statement is a JSON object ``{"statement": {...}, "key_id": ..., "signature": ...}``;
the signature covers the canonical JSON of ``statement`` (sorted keys, no spaces, UTF-8).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.errors import BulletproofError
from core.sealing import MasterKey

__all__ = [
    "DeploymentKey",
    "SignatureInvalid",
    "canonical_json",
    "key_id_of",
    "verify_signed",
]

_PURPOSE = "bulletproof/deployment-signing/v1"


class SignatureInvalid(BulletproofError):
    """A signed statement does not verify under any published deployment key."""


def canonical_json(value: Any) -> bytes:
    """The bytes a signature covers: sorted keys, compact separators, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id_of(public_raw: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class DeploymentKey:
    """The signing key (newest master key) and every public key a verifier should accept."""

    signer: Ed25519PrivateKey
    public_keys: dict[str, bytes]  # key id -> raw 32-byte Ed25519 public key, newest first

    @classmethod
    def from_master(cls, master: MasterKey) -> DeploymentKey:
        seeds = master.derive(_PURPOSE)
        privates = [Ed25519PrivateKey.from_private_bytes(seed) for seed in seeds]
        publics = {}
        for private in privates:
            raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            publics[key_id_of(raw)] = raw
        return cls(signer=privates[0], public_keys=publics)

    @property
    def key_id(self) -> str:
        return next(iter(self.public_keys))

    def sign(self, statement: Mapping[str, Any]) -> dict[str, Any]:
        signature = self.signer.sign(canonical_json(dict(statement)))
        return {
            "statement": dict(statement),
            "key_id": self.key_id,
            "signature": base64.b64encode(signature).decode(),
        }

    def published(self) -> dict[str, Any]:
        """What the well-known endpoint serves: algorithm and base64 raw public keys by id."""
        return {
            "algorithm": "Ed25519",
            "signing_key_id": self.key_id,
            "keys": {kid: base64.b64encode(raw).decode() for kid, raw in self.public_keys.items()},
        }


def verify_signed(signed: Mapping[str, Any], public_keys: Mapping[str, bytes]) -> dict[str, Any]:
    """The statement of ``signed`` if its signature verifies under the named key, else
    ``SignatureInvalid`` (unknown key id, malformed signature, or any altered byte)."""
    try:
        raw = public_keys[str(signed["key_id"])]
        signature = base64.b64decode(str(signed["signature"]), validate=True)
        statement = signed["statement"]
        if not isinstance(statement, dict):
            raise TypeError("statement is not an object")
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, canonical_json(statement))
    except (KeyError, TypeError, ValueError, InvalidSignature) as exc:
        raise SignatureInvalid("signed statement does not verify under the deployment key") from exc
    return statement
