"""The envelope: the object-level metadata a client sends with a BP1 PUT and reads back.

The gateway-side contract (names fixed; values are ASCII)::

    x-amz-meta-bp-wrapped-key    base64 (standard alphabet, padded) of the primary recipient's
                                 wrapped key, encoded as in client.wrap
    x-amz-meta-bp-key-id         that recipient's key id, e.g. "bp:..."
    x-amz-meta-bp-key-version    that recipient's key version, decimal, >= 1
    x-amz-meta-bp-wrap-alg       rsa-oaep-256 | x25519-hkdf-aes256gcm | p256-ecdh-hkdf-aes256gcm
    x-amz-meta-bp-content-id     32 lowercase hex characters: the 16-byte content id

The key id, version and algorithm repeat what the wrapped key encodes so the gateway can index
and validate them without parsing it; :func:`parse_envelope_headers` refuses an envelope
whose fields disagree. Everything here is public: the gateway stores it, and a wrapped key is
useless without the recipient's private key and the object's header.

Only the primary recipient fits the contract. Further recipients (a list of wrapped keys) are
a client-side structure (:meth:`WrappedKey.encode_list`) until the gateway offers a place for
them; S3 caps user metadata at 2 KiB, so they cannot simply be added as more headers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from client.errors import InvalidEnvelope
from client.format import CONTENT_ID_LEN
from client.wrap import WrappedKey

__all__ = [
    "CONTENT_ID",
    "ENVELOPE_HEADERS",
    "KEY_ID",
    "KEY_VERSION",
    "MAX_USER_METADATA",
    "META_PREFIX",
    "WRAPPED_KEY",
    "WRAP_ALG",
    "Envelope",
    "envelope_headers",
    "metadata_size",
    "parse_envelope_headers",
]

META_PREFIX = "x-amz-meta-"
WRAPPED_KEY = "x-amz-meta-bp-wrapped-key"
KEY_ID = "x-amz-meta-bp-key-id"
KEY_VERSION = "x-amz-meta-bp-key-version"
WRAP_ALG = "x-amz-meta-bp-wrap-alg"
CONTENT_ID = "x-amz-meta-bp-content-id"
ENVELOPE_HEADERS = (WRAPPED_KEY, KEY_ID, KEY_VERSION, WRAP_ALG, CONTENT_ID)
#: S3's limit on user-defined metadata: UTF-8 bytes of every name (without the prefix) and value.
MAX_USER_METADATA = 2048

_HEX32 = re.compile(r"[0-9a-f]{32}")
_DECIMAL = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: the primary wrapped key and the object's content id."""

    wrapped_key: WrappedKey
    content_id: bytes

    def __post_init__(self) -> None:
        if len(self.content_id) != CONTENT_ID_LEN:
            raise InvalidEnvelope(f"content id must be {CONTENT_ID_LEN} bytes")

    @property
    def key_id(self) -> str:
        return self.wrapped_key.key_id

    @property
    def key_version(self) -> int:
        return self.wrapped_key.key_version

    @property
    def wrap_alg(self) -> str:
        return self.wrapped_key.alg


def metadata_size(headers: Mapping[str, str]) -> int:
    """Bytes S3 counts against :data:`MAX_USER_METADATA` for these ``x-amz-meta-*`` headers."""
    return sum(
        len(name.removeprefix(META_PREFIX).encode()) + len(value.encode())
        for name, value in headers.items()
    )


def envelope_headers(
    wrapped: WrappedKey, content_id: bytes, *, prefixed: bool = True
) -> dict[str, str]:
    """The five envelope headers for a PUT (or a multipart CreateMultipartUpload).

    With ``prefixed=False`` the names lose ``x-amz-meta-``, as boto3's ``Metadata=`` expects.
    """
    envelope = Envelope(wrapped, bytes(content_id))
    headers = {
        WRAPPED_KEY: base64.b64encode(wrapped.to_bytes()).decode("ascii"),
        KEY_ID: envelope.key_id,
        KEY_VERSION: str(envelope.key_version),
        WRAP_ALG: envelope.wrap_alg,
        CONTENT_ID: envelope.content_id.hex(),
    }
    if metadata_size(headers) > MAX_USER_METADATA:
        raise InvalidEnvelope("the envelope does not fit S3's 2 KiB user metadata")
    if not prefixed:
        return {name.removeprefix(META_PREFIX): value for name, value in headers.items()}
    return headers


def _field(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise InvalidEnvelope(f"missing envelope field {name}")
    return value.strip()


def parse_envelope_headers(headers: Mapping[str, str]) -> Envelope:
    """Parse and cross-check an envelope from response headers or boto3 ``Metadata``.

    Names are matched case-insensitively, with or without the ``x-amz-meta-`` prefix; other
    headers are ignored. Raises :class:`InvalidEnvelope` naming the first bad field.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if not key.startswith(META_PREFIX):
            key = META_PREFIX + key
        lowered[key] = value
    encoded = _field(lowered, WRAPPED_KEY)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEnvelope(f"{WRAPPED_KEY} is not valid base64") from None
    try:
        wrapped = WrappedKey.from_bytes(raw)
    except InvalidEnvelope as exc:
        raise InvalidEnvelope(f"{WRAPPED_KEY}: {exc}") from None
    content_id = _field(lowered, CONTENT_ID).lower()
    if not _HEX32.fullmatch(content_id):
        raise InvalidEnvelope(f"{CONTENT_ID} must be 32 hex characters")
    version = _field(lowered, KEY_VERSION)
    if not _DECIMAL.fullmatch(version):
        raise InvalidEnvelope(f"{KEY_VERSION} must be a positive decimal integer")
    if _field(lowered, KEY_ID) != wrapped.key_id:
        raise InvalidEnvelope(f"{KEY_ID} disagrees with the wrapped key")
    if int(version) != wrapped.key_version:
        raise InvalidEnvelope(f"{KEY_VERSION} disagrees with the wrapped key")
    if _field(lowered, WRAP_ALG) != wrapped.alg:
        raise InvalidEnvelope(f"{WRAP_ALG} disagrees with the wrapped key")
    return Envelope(wrapped, bytes.fromhex(content_id))
