"""The BP1 wire format: header layout, object binding, and segment arithmetic.

Everything here is public information: it needs no key, imports no AEAD, and is exactly what
a gateway may check on an upload (magic, version, suite, seg_log2, reserved byte, and that the
body length equals :func:`ciphertext_length` of the announced plaintext length). The keyed
parts of the format live in :mod:`client.keyschedule` and :mod:`client.segments`.

Layout of a BP1 object (``docs/envelope.md`` is the normative text)::

    header (112 bytes, all of it AAD of every segment) || seg_0 || ... || seg_{n-1}

    offset size field
         0    4 magic      b"BPE1"
         4    1 version    0x01
         5    1 suite      0x01 = AES-256-GCM / HKDF-SHA-256 / 256-bit commitment
         6    1 seg_log2   16..20; segment plaintext size S = 2**seg_log2
         7    1 reserved   0x00
         8   32 salt       random per object version
        40   32 commitment HKDF-Expand(PRK, "BP1 commit" || suite, 32)
        72    8 pt_length  plaintext length, u64 big-endian
        80   32 binding    SHA-256 of the length-prefixed tenant, bucket, key and content id

Segment ``i`` holds plaintext bytes ``[i*S, min((i+1)*S, L))`` plus a 16-byte tag; there are
``max(1, ceil(L / S))`` segments, so an empty object is one empty final segment.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass
from typing import NamedTuple

from client.errors import MalformedHeader, RangeNotSatisfiable

__all__ = [
    "CONTENT_ID_LEN",
    "DEFAULT_SEG_LOG2",
    "HEADER_LEN",
    "MAGIC",
    "MAX_PLAINTEXT_LENGTH",
    "MAX_SEG_LOG2",
    "MIN_SEG_LOG2",
    "SUITE_AES256GCM_HKDFSHA256",
    "TAG_LEN",
    "VERSION",
    "CiphertextRange",
    "Header",
    "ObjectBinding",
    "ciphertext_length",
    "plaintext_range_to_ciphertext_range",
    "segment_count",
]

MAGIC = b"BPE1"
VERSION = 1
SUITE_AES256GCM_HKDFSHA256 = 1
HEADER_LEN = 112
TAG_LEN = 16
SALT_LEN = 32
COMMIT_LEN = 32
BINDING_LEN = 32
CONTENT_ID_LEN = 16
MIN_SEG_LOG2 = 16
MAX_SEG_LOG2 = 20
DEFAULT_SEG_LOG2 = 16
# The header field is a u64; refusing the top bit keeps every derived length a safe signed int
# for implementations with 64-bit signed integers (Java, JavaScript BigInt conversions, SQL).
MAX_PLAINTEXT_LENGTH = 2**63 - 1

_HEADER = struct.Struct(">4sBBBB32s32sQ32s")
assert _HEADER.size == HEADER_LEN


def _check_seg_log2(seg_log2: int) -> None:
    if not MIN_SEG_LOG2 <= seg_log2 <= MAX_SEG_LOG2:
        raise ValueError(f"seg_log2 must be in {MIN_SEG_LOG2}..{MAX_SEG_LOG2}, got {seg_log2}")


def _check_length(plaintext_length: int) -> None:
    if not 0 <= plaintext_length <= MAX_PLAINTEXT_LENGTH:
        raise ValueError(f"plaintext length out of range: {plaintext_length}")


def segment_count(plaintext_length: int, seg_log2: int) -> int:
    """Number of segments of an object: ``max(1, ceil(L / S))`` (empty = one empty segment)."""
    _check_seg_log2(seg_log2)
    _check_length(plaintext_length)
    size = 1 << seg_log2
    return max(1, -(-plaintext_length // size))


def ciphertext_length(plaintext_length: int, seg_log2: int = DEFAULT_SEG_LOG2) -> int:
    """Exact byte length of the BP1 object for a plaintext of ``plaintext_length`` bytes.

    This is the check a gateway performs without any key: body length == this value.
    """
    return HEADER_LEN + plaintext_length + TAG_LEN * segment_count(plaintext_length, seg_log2)


def _encode_field(value: str, name: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot name an S3 object
        raise ValueError(f"{name} is not encodable as UTF-8") from exc
    return struct.pack(">I", len(raw)) + raw


@dataclass(frozen=True, slots=True)
class ObjectBinding:
    """Where an object version lives: tenant, bucket, key, and its random 16-byte content id.

    ``digest()`` is the header's binding field. It is compared (not used as a key) on every
    read so that a server cannot answer a GET for one name with an authentic object stored
    under another name, another tenant, or (if the reader knows the content id) another
    version. Names are hashed as the exact UTF-8 of the strings given, without Unicode
    normalisation, so the client must use the key as it sends it to S3.
    """

    tenant: str
    bucket: str
    key: str
    content_id: bytes

    def __post_init__(self) -> None:
        if len(self.content_id) != CONTENT_ID_LEN:
            raise ValueError(f"content_id must be {CONTENT_ID_LEN} bytes")

    @classmethod
    def new(cls, tenant: str, bucket: str, key: str) -> ObjectBinding:
        """A binding for a new object version, with a fresh random content id."""
        return cls(tenant, bucket, key, secrets.token_bytes(CONTENT_ID_LEN))

    def encode(self) -> bytes:
        """``u32be(len) || utf8`` for tenant, bucket and key, then ``u32be(16) || content_id``."""
        return b"".join(
            (
                _encode_field(self.tenant, "tenant"),
                _encode_field(self.bucket, "bucket"),
                _encode_field(self.key, "key"),
                struct.pack(">I", CONTENT_ID_LEN) + bytes(self.content_id),
            )
        )

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: the 32-byte binding field of the header."""
        return hashlib.sha256(self.encode()).digest()


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed BP1 header. Construct with :meth:`parse` (untrusted bytes) or directly.

    A parsed header is structurally valid but not yet authenticated: the commitment is checked
    against a data key, the binding against the expected name, and the whole header as AAD
    by every segment tag.
    """

    seg_log2: int
    salt: bytes
    commitment: bytes
    plaintext_length: int
    binding: bytes
    version: int = VERSION
    suite: int = SUITE_AES256GCM_HKDFSHA256

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise MalformedHeader(f"unsupported BP1 version {self.version}")
        if self.suite != SUITE_AES256GCM_HKDFSHA256:
            raise MalformedHeader(f"unsupported BP1 suite {self.suite}")
        if not MIN_SEG_LOG2 <= self.seg_log2 <= MAX_SEG_LOG2:
            raise MalformedHeader(f"seg_log2 {self.seg_log2} outside the allowed range")
        if len(self.salt) != SALT_LEN or len(self.commitment) != COMMIT_LEN:
            raise MalformedHeader("salt and commitment must be 32 bytes")
        if len(self.binding) != BINDING_LEN:
            raise MalformedHeader("binding must be 32 bytes")
        if not 0 <= self.plaintext_length <= MAX_PLAINTEXT_LENGTH:
            raise MalformedHeader("plaintext length out of range")

    @classmethod
    def parse(cls, data: bytes) -> Header:
        """Parse exactly 112 bytes; raises :class:`MalformedHeader` on any structural fault."""
        if len(data) != HEADER_LEN:
            raise MalformedHeader(f"a BP1 header is {HEADER_LEN} bytes, got {len(data)}")
        magic, version, suite, seg_log2, reserved, salt, commit, length, binding = _HEADER.unpack(
            bytes(data)
        )
        if magic != MAGIC:
            raise MalformedHeader("not a BP1 object (bad magic)")
        if reserved != 0:
            raise MalformedHeader("reserved header byte is not zero")
        return cls(
            seg_log2=seg_log2,
            salt=salt,
            commitment=commit,
            plaintext_length=length,
            binding=binding,
            version=version,
            suite=suite,
        )

    def to_bytes(self) -> bytes:
        """The 112-byte encoding; ``Header.parse(h.to_bytes()) == h``."""
        return _HEADER.pack(
            MAGIC,
            self.version,
            self.suite,
            self.seg_log2,
            0,
            self.salt,
            self.commitment,
            self.plaintext_length,
            self.binding,
        )

    @property
    def segment_size(self) -> int:
        """Plaintext bytes per segment, ``S = 2**seg_log2`` (the last one may be shorter)."""
        return 1 << self.seg_log2

    @property
    def segment_count(self) -> int:
        return segment_count(self.plaintext_length, self.seg_log2)

    @property
    def ciphertext_length(self) -> int:
        """Length of the whole object, header included."""
        return ciphertext_length(self.plaintext_length, self.seg_log2)

    def segment_plaintext_length(self, index: int) -> int:
        """Plaintext bytes in segment ``index`` (``S`` except for the final segment)."""
        if not 0 <= index < self.segment_count:
            raise IndexError(f"segment {index} outside 0..{self.segment_count - 1}")
        return min(self.segment_size, self.plaintext_length - index * self.segment_size)

    def segment_offset(self, index: int) -> int:
        """Ciphertext offset of segment ``index`` within the object (header included)."""
        return HEADER_LEN + index * (self.segment_size + TAG_LEN)


class CiphertextRange(NamedTuple):
    """Which ciphertext bytes hold a plaintext range: ``(offset, length, first_segment)``.

    The HTTP range to request is :attr:`http_range`.
    """

    offset: int
    length: int
    first_segment: int

    @property
    def http_range(self) -> str:
        return f"bytes={self.offset}-{self.offset + self.length - 1}"


def plaintext_range_to_ciphertext_range(first: int, last: int, header: Header) -> CiphertextRange:
    """Map the inclusive plaintext range ``first..last`` to the segments that cover it.

    Inclusive like HTTP ``Range: bytes=first-last``; ``last`` past the end is clamped to the
    last byte (as HTTP does), a ``first`` outside the object raises
    :class:`RangeNotSatisfiable` (an empty object has no satisfiable range). At most the two
    partially covered end segments are read beyond the range itself.
    """
    size = header.plaintext_length
    if first < 0 or last < first or first >= size:
        raise RangeNotSatisfiable(f"range {first}-{last} of a {size}-byte object")
    last = min(last, size - 1)
    first_segment = first >> header.seg_log2
    last_segment = last >> header.seg_log2
    offset = header.segment_offset(first_segment)
    end = min(header.segment_offset(last_segment + 1), header.ciphertext_length)
    return CiphertextRange(offset=offset, length=end - offset, first_segment=first_segment)
