"""A wrapped data key in a JSON document (``?rewrap`` items and ``?share`` recipients),
validated like the envelope of a write (``core.envelope.envelope_from_metadata``)."""

from __future__ import annotations

from typing import Any

from core.envelope import Envelope, envelope_from_metadata
from gateway.s3 import errors as s3e

__all__ = ["wrapped_key_fields"]


def wrapped_key_fields(raw: dict[str, Any]) -> Envelope:
    """The new wrapped key of a rewrap or share item, validated like a PUT's envelope."""
    version = raw.get("key_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise s3e.InvalidRequest("'key_version' must be a JSON integer")
    fields = {
        "bp-wrapped-key": raw.get("wrapped_key"),
        "bp-key-id": raw.get("key_id"),
        "bp-key-version": str(version),
        "bp-wrap-alg": raw.get("wrap_alg"),
    }
    if not all(isinstance(v, str) and v for v in fields.values()):
        raise s3e.InvalidRequest(
            "'wrapped_key', 'key_id', 'key_version' and 'wrap_alg' are required"
        )
    envelope = envelope_from_metadata(fields)  # type: ignore[arg-type]
    assert envelope is not None
    return envelope
