"""Authenticated ranged reads: decrypt only the segments that cover a plaintext byte range.

A ranged read costs the 112-byte header (``Range: bytes=0-111``, or a cached copy) plus the
ciphertext range from :func:`client.format.plaintext_range_to_ciphertext_range`: at most the
two partially covered end segments beyond the range itself. Every byte returned is
authenticated: the header is checked exactly as for a full read (structure, binding,
commitment), and each segment is opened under its own index and final flag, so a server that
returns other segments, other objects' segments, or a short body is caught.

What a ranged read cannot tell: whether segments outside the range are intact (they are not
read), which is inherent and harmless to the bytes returned.
"""

from __future__ import annotations

from client.errors import Tampered, Truncated
from client.format import TAG_LEN, ObjectBinding, plaintext_range_to_ciphertext_range
from client.segments import Buffer, DekSource, SegmentCipher

__all__ = ["decrypt_range"]


def decrypt_range(
    header: Buffer,
    ciphertext: Buffer,
    first: int,
    last: int,
    *,
    dek: DekSource,
    expected: ObjectBinding,
) -> bytes:
    """Return plaintext bytes ``first..last`` (inclusive, ``last`` clamped to the object).

    ``header`` is the object's 112-byte header; ``ciphertext`` is exactly the byte range that
    :func:`~client.format.plaintext_range_to_ciphertext_range` names for ``first..last``.
    Raises :class:`RangeNotSatisfiable` for a range outside the object and a
    :class:`DecryptionFailed` subclass for anything that does not authenticate.
    """
    cipher = SegmentCipher.for_reading(header, dek, expected)
    h = cipher.header
    span = plaintext_range_to_ciphertext_range(first, last, h)
    data = memoryview(ciphertext).cast("B")
    if len(data) < span.length:
        raise Truncated(f"expected {span.length} ciphertext bytes for the range, got {len(data)}")
    if len(data) > span.length:
        raise Tampered(f"expected {span.length} ciphertext bytes for the range, got {len(data)}")
    last = min(last, h.plaintext_length - 1)
    base = h.segment_offset(span.first_segment)
    pieces = []
    for index in range(span.first_segment, (last >> h.seg_log2) + 1):
        start = h.segment_offset(index) - base
        stop = start + h.segment_plaintext_length(index) + TAG_LEN
        plaintext = cipher.open(index, data[start:stop])
        seg_first = index << h.seg_log2
        lo = max(first - seg_first, 0)
        hi = min(last - seg_first + 1, len(plaintext))
        pieces.append(plaintext[lo:hi])
    return b"".join(pieces)
