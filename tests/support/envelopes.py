"""Envelopes that are well-formed for the gateway (docs/envelope.md 7.1 and 8) without real
cryptography: the gateway can check structure and consistency, never the wrapped payload."""

from __future__ import annotations

import base64
import os
import struct

__all__ = ["bp1_header", "fake_envelope", "fake_wrapped_key"]

_ALG_IDS = {
    "rsa-oaep-256": (1, 384),
    "x25519-hkdf-aes256gcm": (2, 80),
    "p256-ecdh-hkdf-aes256gcm": (3, 113),
}


def fake_wrapped_key(
    alg: str = "x25519-hkdf-aes256gcm", key_id: str = "bp:testkey", version: int = 1
) -> bytes:
    alg_id, payload_len = _ALG_IDS[alg]
    kid = key_id.encode()
    return (
        struct.pack(">BBB", 1, alg_id, len(kid))
        + kid
        + struct.pack(">IH", version, payload_len)
        + os.urandom(payload_len)
    )


def fake_envelope(
    alg: str = "x25519-hkdf-aes256gcm", key_id: str = "bp:testkey", version: int = 1
) -> dict[str, str]:
    """User metadata (names without x-amz-meta-) of a structurally valid envelope."""
    return {
        "bp-wrapped-key": base64.b64encode(fake_wrapped_key(alg, key_id, version)).decode(),
        "bp-key-id": key_id,
        "bp-key-version": str(version),
        "bp-wrap-alg": alg,
        "bp-content-id": os.urandom(16).hex(),
    }


def bp1_header(
    pt_len: int,
    *,
    magic: bytes = b"BPE1",
    version: int = 1,
    suite: int = 1,
    seg_log2: int = 16,
    reserved: int = 0,
) -> bytes:
    return struct.pack(
        ">4sBBBB32s32sQ32s",
        magic,
        version,
        suite,
        seg_log2,
        reserved,
        os.urandom(32),
        os.urandom(32),
        pt_len,
        os.urandom(32),
    )
