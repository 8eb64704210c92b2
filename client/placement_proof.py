"""Verifying a placement proof (``docs/placement-proof.md``) without any server code.

The gateway answers ``GET /{bucket}/{key}?placement-proof`` with
``{"statement": {...}, "key_id": "...", "signature": "<base64>"}``: an Ed25519 signature over
the canonical JSON of ``statement`` (keys sorted, separators ``,`` and ``:``, no spaces,
non-ASCII as UTF-8, no floats), by the deployment key whose public half is published at
``GET /.well-known/bulletproof/deployment-key`` as ``{"algorithm": "Ed25519", "keys":
{key_id: base64 raw 32 bytes}}`` (``key_id`` = first 16 hex digits of the SHA-256 of the raw
key). This module is the client's own implementation of that format (the ``client`` package
imports nothing of the server); ``tests/unit/test_placement_proof.py`` checks it against the
server's signer.

Trust: a key fetched from the same gateway that served the proof only shows the proof was not
altered in transit or storage; a gateway that lies can publish its own key. The trust anchor is
a key the user pinned (``bp verify --placement --deployment-key FILE``), obtained once out of
band from the operator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from client.errors import ProofInvalid

__all__ = [
    "PROOF_FORMAT",
    "PROOF_TYPE",
    "VerifiedProof",
    "canonical_json",
    "parse_published_keys",
    "verify_placement_proof",
]

PROOF_TYPE = "bulletproof.placement-proof"
PROOF_FORMAT = 1


def canonical_json(value: Any) -> bytes:
    """The bytes the signature covers: sorted keys, compact separators, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_published_keys(document: Any) -> dict[str, bytes]:
    """Key id -> raw Ed25519 public key, from the well-known document (or a pinned copy of
    it). Each key id must be the one its key implies, so a pinned file cannot mislabel a key."""
    if not isinstance(document, Mapping) or document.get("algorithm") != "Ed25519":
        raise ProofInvalid("the deployment key document is not an Ed25519 key set")
    keys = document.get("keys")
    if not isinstance(keys, Mapping) or not keys:
        raise ProofInvalid("the deployment key document lists no keys")
    out: dict[str, bytes] = {}
    for key_id, encoded in keys.items():
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise ProofInvalid(f"deployment key {key_id!r} is not base64") from None
        if len(raw) != 32 or hashlib.sha256(raw).hexdigest()[:16] != key_id:
            raise ProofInvalid(f"deployment key {key_id!r} does not match its id")
        out[str(key_id)] = raw
    return out


@dataclass(frozen=True)
class VerifiedProof:
    """A proof whose signature verified and which is about the object asked for."""

    key_id: str
    statement: dict[str, Any]

    @property
    def fully_placed(self) -> bool:
        return self.statement.get("fully_placed") is True

    @property
    def jurisdictions(self) -> list[str]:
        return [str(j) for j in self.statement.get("jurisdictions", [])]


def verify_placement_proof(
    signed: Any,
    keys: Mapping[str, bytes],
    *,
    bucket: str,
    key: str,
    version_id: str | None = None,
    tenant: str | None = None,
) -> VerifiedProof:
    """The proof's statement if its signature verifies under one of ``keys`` and it names
    this bucket and key (and version and tenant, when given); ``ProofInvalid`` otherwise."""
    if not isinstance(signed, Mapping):
        raise ProofInvalid("the answer is not a signed statement")
    statement = signed.get("statement")
    key_id = str(signed.get("key_id", ""))
    if not isinstance(statement, dict):
        raise ProofInvalid("the answer has no statement")
    raw = keys.get(key_id)
    if raw is None:
        raise ProofInvalid(f"signed with key {key_id!r}, which is not a trusted deployment key")
    try:
        signature = base64.b64decode(str(signed.get("signature", "")), validate=True)
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, canonical_json(statement))
    except (binascii.Error, ValueError, InvalidSignature):
        raise ProofInvalid("the signature does not verify: the proof was altered") from None
    if statement.get("type") != PROOF_TYPE or statement.get("format") != PROOF_FORMAT:
        raise ProofInvalid("the signed statement is not a placement proof of a known format")
    expected = {"bucket": bucket, "key": key}
    if version_id is not None:
        expected["version_id"] = version_id
    if tenant is not None:
        expected["tenant"] = tenant
    for name, value in expected.items():
        if statement.get(name) != value:
            raise ProofInvalid(f"the proof is about {name} {statement.get(name)!r}, not {value!r}")
    return VerifiedProof(key_id=key_id, statement=statement)
