"""What :class:`~client.api.GatewayApi` takes and returns, and a wrapped key's JSON form.

Frozen records, one per thing the gateway's extensions speak about: a published public key,
an object's recipient list, an object's header read, one item of a ``?rewrap`` batch and its
verdict. A wrapped key travels as JSON in one form only (:func:`wrapped_document` writes it,
:func:`parse_wrapped` reads it), and is read back only if its ``key_id``, ``key_version`` and
``wrap_alg`` fields agree with its own binary encoding, so a gateway cannot relabel a wrap
and have it offered to a key it does not belong to. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from client.errors import InvalidEnvelope
from client.wrap import WrappedKey

__all__ = [
    "EnvelopeResult",
    "ObjectHead",
    "PublishedKey",
    "Recipients",
    "RewrapItem",
    "RewrapResult",
    "parse_wrapped",
    "wrapped_document",
]


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A public key the tenant registered with the gateway (``GET /?keys``)."""

    key_id: str
    key_version: int
    wrap_alg: str
    public_key_pem: str


@dataclass(frozen=True, slots=True)
class Recipients:
    """Every wrapped data key of an object's current version (``GET ?recipients``).

    Each entry's JSON fields were checked against its own encoding (like the envelope's), so a
    relabelled wrap is refused here rather than offered to a key it does not belong to.
    """

    content_id: bytes
    primary: WrappedKey
    others: tuple[WrappedKey, ...]


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """The first 112 bytes of an object (its BP1 header, if it is one) and its metadata.

    ``metadata`` holds the ``x-amz-meta-*`` response headers, names in lower case with the
    prefix, i.e. what :func:`client.envelope.parse_envelope_headers` reads.
    """

    header: bytes
    metadata: dict[str, str]
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class EnvelopeResult:
    """One version's answer of ``POST /{bucket}?envelopes``: ``status`` ``ok`` or an S3 error
    code (``NoSuchKey``, ``NoSuchVersion``); ``metadata`` as :class:`ObjectHead` holds it;
    ``header`` the stored BP1 header, None when the gateway has none (a version written
    before it stored headers: read it from the object). Nothing here is verified: the
    caller checks the header before relying on it."""

    key: str
    version_id: str | None
    status: str
    message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    header: bytes | None = None


@dataclass(frozen=True, slots=True)
class RewrapItem:
    """One object version of a ``?rewrap`` batch: the new wrapped key, valid only if the
    version still holds the content whose header it was made for (``expect_content_id``) and
    is still wrapped under ``expect_key_id`` v``expect_key_version`` (the gateway checks both).
    ``version_id`` names the version (``"null"``: the null version); None re-wraps whatever is
    the key's current version."""

    key: str
    expect_key_id: str
    expect_key_version: int
    wrapped: WrappedKey
    expect_content_id: str
    version_id: str | None = None

    def document(self) -> dict[str, Any]:
        named = {} if self.version_id is None else {"version_id": self.version_id}
        return {
            "key": self.key,
            **named,
            "expect_key_id": self.expect_key_id,
            "expect_key_version": self.expect_key_version,
            "expect_content_id": self.expect_content_id,
            **wrapped_document(self.wrapped),
        }


@dataclass(frozen=True, slots=True)
class RewrapResult:
    """The gateway's verdict on one item: ``status`` is ``ok`` or an S3 error code
    (``NoSuchVersion`` for a version that is gone). ``version_id`` is the item's."""

    key: str
    status: str
    message: str = ""
    version_id: str | None = None


def wrapped_document(wrapped: WrappedKey) -> dict[str, Any]:
    return {
        "wrapped_key": base64.b64encode(wrapped.to_bytes()).decode("ascii"),
        "key_id": wrapped.key_id,
        "key_version": wrapped.key_version,
        "wrap_alg": wrapped.alg,
    }


def parse_wrapped(entry: Any, where: str) -> WrappedKey:
    """A wrapped key from a JSON entry, refused unless its fields match its own encoding."""
    if not isinstance(entry, dict):
        raise InvalidEnvelope(f"{where}: each recipient must be a JSON object")
    try:
        raw = base64.b64decode(str(entry.get("wrapped_key", "")), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEnvelope(f"{where}: a wrapped key is not valid base64") from None
    wrapped = WrappedKey.from_bytes(raw)
    fields = (entry.get("key_id"), entry.get("key_version"), entry.get("wrap_alg"))
    if fields != (wrapped.key_id, wrapped.key_version, wrapped.alg):
        raise InvalidEnvelope(f"{where}: a recipient's fields disagree with its wrapped key")
    return wrapped
