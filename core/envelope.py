"""What the gateway checks of a client-side encryption envelope, without any key.

Invariant 1 (the gateway never sees plaintext) is enforced by refusing object writes that do
not look like BP1 ciphertext: the envelope metadata must be complete and well-formed, and the
body must start with a BP1 header (docs/envelope.md) whose plaintext length implies exactly the
body's length. The gateway cannot tell ciphertext from random bytes and does not try; it makes
sure a cooperating client cannot forget to encrypt. Nothing here decrypts.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from core.errors import InvalidEnvelope

__all__ = [
    "BP1_HEADER_SIZE",
    "BP1_TAG_SIZE",
    "Bp1Header",
    "ENVELOPE_METADATA",
    "KEY_VERSION_MAX",
    "Envelope",
    "EnvelopeColumns",
    "WRAP_ALGORITHMS",
    "ciphertext_length",
    "envelope_columns",
    "envelope_from_metadata",
    "parse_bp1_header",
    "public_key_wrap_alg",
]

BP1_MAGIC = b"BPE1"
BP1_VERSION = 1
BP1_SUITES = frozenset({1})
BP1_HEADER_SIZE = 112
BP1_TAG_SIZE = 16
SEG_LOG2_MIN, SEG_LOG2_MAX = 16, 20
WRAP_ALGORITHMS = frozenset({"rsa-oaep-256", "x25519-hkdf-aes256gcm", "p256-ecdh-hkdf-aes256gcm"})
MAX_WRAPPED_KEY_BYTES = 1024
MAX_KEY_ID_CHARS = 64
# docs/envelope.md 7.1: algorithm ids and the payload lengths each algorithm can produce.
_WRAP_ALG_IDS = {
    1: ("rsa-oaep-256", range(384, 513)),
    2: ("x25519-hkdf-aes256gcm", range(80, 81)),
    3: ("p256-ecdh-hkdf-aes256gcm", range(113, 114)),
}
_WRAPPED_KEY_VERSION = 1

# magic(4) version(1) suite(1) seg_log2(1) reserved(1) salt(32) commit(32) pt_length(8) binding(32)
_HEADER = struct.Struct(">4sBBBB32s32sQ32s")
assert _HEADER.size == BP1_HEADER_SIZE


@dataclass(frozen=True)
class Bp1Header:
    version: int
    suite: int
    seg_log2: int
    plaintext_length: int

    @property
    def segment_size(self) -> int:
        return 1 << self.seg_log2

    @property
    def ciphertext_length(self) -> int:
        return ciphertext_length(self.plaintext_length, self.seg_log2)


def ciphertext_length(plaintext_length: int, seg_log2: int) -> int:
    """Header + every segment with its tag; an empty plaintext is one empty final segment."""
    seg = 1 << seg_log2
    segments = max(1, -(-plaintext_length // seg))
    return BP1_HEADER_SIZE + plaintext_length + segments * BP1_TAG_SIZE


def parse_bp1_header(head: bytes, body_length: int) -> Bp1Header:
    """Check the 112-byte header and that ``body_length`` is the length it implies."""
    if len(head) < BP1_HEADER_SIZE:
        raise InvalidEnvelope(
            f"body is not BP1 ciphertext: {len(head)} bytes, shorter than the "
            f"{BP1_HEADER_SIZE}-byte BP1 header"
        )
    magic, version, suite, seg_log2, reserved, _salt, _commit, pt_len, _binding = _HEADER.unpack(
        head[:BP1_HEADER_SIZE]
    )
    if magic != BP1_MAGIC:
        raise InvalidEnvelope("body is not BP1 ciphertext: bad magic (expected BPE1)")
    if version != BP1_VERSION:
        raise InvalidEnvelope(f"BP1 header: unsupported version {version}")
    if suite not in BP1_SUITES:
        raise InvalidEnvelope(f"BP1 header: unsupported suite {suite}")
    if not SEG_LOG2_MIN <= seg_log2 <= SEG_LOG2_MAX:
        raise InvalidEnvelope(
            f"BP1 header: seg_log2 {seg_log2} outside {SEG_LOG2_MIN}..{SEG_LOG2_MAX}"
        )
    if reserved != 0:
        raise InvalidEnvelope("BP1 header: reserved byte must be 0")
    header = Bp1Header(version=version, suite=suite, seg_log2=seg_log2, plaintext_length=pt_len)
    expected = header.ciphertext_length
    if body_length != expected:
        raise InvalidEnvelope(
            f"BP1 body length {body_length} does not match the {expected} bytes implied by "
            f"the header's plaintext length {pt_len}"
        )
    return header


@dataclass(frozen=True)
class Envelope:
    """The wrapped data key and its description, stored in metadata, never on a backend alone."""

    wrapped_key: bytes
    key_id: str
    key_version: int
    wrap_alg: str
    content_id: str | None = None

    def as_metadata(self) -> dict[str, str]:
        out = {
            "bp-wrapped-key": base64.b64encode(self.wrapped_key).decode(),
            "bp-key-id": self.key_id,
            "bp-key-version": str(self.key_version),
            "bp-wrap-alg": self.wrap_alg,
        }
        if self.content_id:
            out["bp-content-id"] = self.content_id
        return out


class EnvelopeColumns(TypedDict):
    """The metadata columns an envelope fills (object versions, multipart uploads)."""

    encrypted: bool
    wrapped_key: bytes | None
    key_id: str | None
    key_version: int | None
    wrap_alg: str | None
    content_id: str | None


def envelope_columns(envelope: Envelope | None) -> EnvelopeColumns:
    """The envelope as record fields; all None (and ``encrypted`` False) for plaintext."""
    if envelope is None:
        return EnvelopeColumns(
            encrypted=False,
            wrapped_key=None,
            key_id=None,
            key_version=None,
            wrap_alg=None,
            content_id=None,
        )
    return EnvelopeColumns(
        encrypted=True,
        wrapped_key=envelope.wrapped_key,
        key_id=envelope.key_id,
        key_version=envelope.key_version,
        wrap_alg=envelope.wrap_alg,
        content_id=envelope.content_id,
    )


def _check_wrapped_key(wrapped: bytes, *, alg: str, key_id: str, key_version: int) -> None:
    """Parse the public part of a wrapped key (docs/envelope.md 7.1) and check it against the
    metadata fields: they must name the same algorithm, key id and version, or a reader
    would be told one key and need another. The encrypted payload is opaque here."""
    if len(wrapped) < 3 or wrapped[0] != _WRAPPED_KEY_VERSION:
        raise InvalidEnvelope("x-amz-meta-bp-wrapped-key: unsupported wrapped-key format")
    alg_id, kid_len = wrapped[1], wrapped[2]
    if alg_id not in _WRAP_ALG_IDS:
        raise InvalidEnvelope("x-amz-meta-bp-wrapped-key: unknown algorithm id")
    end_of_kid = 3 + kid_len
    if len(wrapped) < end_of_kid + 6:
        raise InvalidEnvelope("x-amz-meta-bp-wrapped-key is truncated")
    kid = wrapped[3:end_of_kid]
    version, payload_len = struct.unpack_from(">IH", wrapped, end_of_kid)
    if len(wrapped) != end_of_kid + 6 + payload_len:
        raise InvalidEnvelope("x-amz-meta-bp-wrapped-key length does not match its payload")
    wrapped_alg, payload_lengths = _WRAP_ALG_IDS[alg_id]
    if payload_len not in payload_lengths:
        raise InvalidEnvelope(f"x-amz-meta-bp-wrapped-key: payload impossible for {wrapped_alg}")
    if (wrapped_alg, kid, version) != (alg, key_id.encode(), key_version):
        raise InvalidEnvelope(
            "x-amz-meta-bp-wrapped-key names another algorithm, key id or version than"
            " x-amz-meta-bp-wrap-alg / -key-id / -key-version"
        )


#: The largest key version the metadata can hold (a PostgreSQL INTEGER).
KEY_VERSION_MAX = 2**31 - 1

ENVELOPE_FIELDS = ("bp-wrapped-key", "bp-key-id", "bp-key-version", "bp-wrap-alg")
#: Every x-amz-meta-bp-* name a PUT may carry; the prefix is reserved for the envelope.
ENVELOPE_METADATA = frozenset({*ENVELOPE_FIELDS, "bp-content-id"})


def envelope_from_metadata(meta: Mapping[str, str]) -> Envelope | None:
    """Parse the envelope from user metadata (names without ``x-amz-meta-``, lower case).

    Returns None when no envelope field is present at all (the caller decides whether plaintext
    is allowed); raises InvalidEnvelope naming the first missing or malformed field otherwise.
    """
    present = [f for f in ENVELOPE_FIELDS if f in meta]
    if not present:
        return None
    for field in ENVELOPE_FIELDS:
        if not meta.get(field):
            raise InvalidEnvelope(f"encryption envelope incomplete: x-amz-meta-{field} is missing")
    try:
        wrapped = base64.b64decode(meta["bp-wrapped-key"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEnvelope("x-amz-meta-bp-wrapped-key is not valid base64") from exc
    if not 16 <= len(wrapped) <= MAX_WRAPPED_KEY_BYTES:
        raise InvalidEnvelope(
            f"x-amz-meta-bp-wrapped-key must decode to 16..{MAX_WRAPPED_KEY_BYTES} bytes"
        )
    key_id = meta["bp-key-id"]
    if not 1 <= len(key_id) <= MAX_KEY_ID_CHARS or not all(0x21 <= ord(c) <= 0x7E for c in key_id):
        raise InvalidEnvelope(
            f"x-amz-meta-bp-key-id must be 1..{MAX_KEY_ID_CHARS} printable ASCII characters"
        )
    raw_version = meta["bp-key-version"]
    if (
        not (raw_version.isascii() and raw_version.isdigit())
        or raw_version.startswith("0")
        or len(raw_version) > 10
    ):
        raise InvalidEnvelope(
            "x-amz-meta-bp-key-version must be a positive decimal integer without leading zeros"
        )
    key_version = int(raw_version)
    # The wrapped-key format carries an unsigned 32-bit version, but the metadata column is a
    # signed INTEGER: 2^31..2^32-1 would pass here and fail at the commit, after the body is
    # on the backends. Refused here, before any byte is written.
    if key_version > KEY_VERSION_MAX:
        raise InvalidEnvelope(f"x-amz-meta-bp-key-version must be at most {KEY_VERSION_MAX}")
    alg = meta["bp-wrap-alg"]
    if alg not in WRAP_ALGORITHMS:
        raise InvalidEnvelope(
            f"x-amz-meta-bp-wrap-alg {alg!r} is not allowed"
            f" (allowed: {', '.join(sorted(WRAP_ALGORITHMS))})"
        )
    _check_wrapped_key(wrapped, alg=alg, key_id=key_id, key_version=key_version)
    content_id = meta.get("bp-content-id") or None
    if content_id is not None:
        try:
            if len(bytes.fromhex(content_id)) != 16:
                raise ValueError
        except ValueError as exc:
            raise InvalidEnvelope("x-amz-meta-bp-content-id must be 32 hex characters") from exc
        content_id = content_id.lower()
    return Envelope(
        wrapped_key=wrapped,
        key_id=key_id,
        key_version=key_version,
        wrap_alg=alg,
        content_id=content_id,
    )


def public_key_wrap_alg(pem: str) -> tuple[str, str]:
    """The wrap algorithm and key id of a published public key, or InvalidEnvelope.

    Only what clients wrap to is accepted: RSA of 3072..4096 bits, X25519, P-256. The key id is
    the fingerprint of docs/envelope.md 7.4 ("bp:" + 32 characters of lower-case base32 of the
    SHA-256 of the DER SubjectPublicKeyInfo), so a key cannot be published under another's id.
    """
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    if len(pem) > 16 * 1024:
        raise InvalidEnvelope("public key PEM too large")
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidEnvelope("public_key_pem is not a PEM public key") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if not 3072 <= key.key_size <= 4096:
            raise InvalidEnvelope("RSA public keys must have 3072..4096 bits")
        alg = "rsa-oaep-256"
    elif isinstance(key, x25519.X25519PublicKey):
        alg = "x25519-hkdf-aes256gcm"
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        alg = "p256-ecdh-hkdf-aes256gcm"
    else:
        raise InvalidEnvelope("unsupported public key type (use RSA 3072..4096, X25519 or P-256)")
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = base64.b32encode(hashlib.sha256(spki).digest()).decode().lower().rstrip("=")
    return alg, "bp:" + digest[:32]
