"""One object's segment cipher: the only place BP1 calls AES-GCM.

Invariants kept here:

- nonce = 11-byte big-endian segment index || 1 byte last-flag (0x01 only on the final
  segment, which the header's plaintext length determines, so the flag is never taken from
  the data); one payload key per object version, so (key, nonce) pairs never repeat as long
  as each index is sealed once (:class:`client.stream.Encryptor` enforces that);
- AAD = the whole 112-byte header for every segment, so any header change fails every tag;
- a segment must have exactly the plaintext length its index implies: a short, long or
  misplaced segment is refused before AES-GCM sees it.

A reader is only ever built through :meth:`SegmentCipher.for_reading`, which checks the
header's structure, the expected binding and the key commitment first.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.errors import BindingMismatch, Tampered
from client.format import TAG_LEN, Header, ObjectBinding
from client.keyschedule import verify_commitment

__all__ = ["Buffer", "DekSource", "SegmentCipher", "segment_nonce"]

Buffer = bytes | bytearray | memoryview
#: A data key, or a function that receives the raw 112-byte header and returns the data key
#: (typically ``lambda header: unwrap(wrapped, private_key, header)``), called only after the
#: header's structure and binding have been checked.
DekSource = bytes | Callable[[bytes], bytes]

_MAX_INDEX = 1 << 88


def segment_nonce(index: int, last: bool) -> bytes:
    """The 12-byte GCM nonce of segment ``index``."""
    if not 0 <= index < _MAX_INDEX:
        raise ValueError("segment index out of range")
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SegmentCipher:
    """Seals or opens individual segments of one object version.

    Thread-safe: AES-GCM calls in ``cryptography`` keep no state between calls and release the
    GIL, so one instance may serve a thread pool.
    """

    __slots__ = ("_aad", "_aead", "_last_index", "header")

    def __init__(self, payload_key: bytes, header: Header) -> None:
        self.header = header
        self._aad = header.to_bytes()
        self._aead = AESGCM(payload_key)
        self._last_index = header.segment_count - 1

    @classmethod
    def for_reading(
        cls, header_bytes: Buffer, dek: DekSource, expected: ObjectBinding
    ) -> SegmentCipher:
        """Parse and check a header, then derive the payload key; the only way to read.

        Order: structure (:class:`MalformedHeader`), binding (:class:`BindingMismatch`, no key
        needed), data key (resolved only now), commitment (:class:`WrongKey`).
        """
        raw = bytes(header_bytes)
        header = Header.parse(raw)
        if not hmac.compare_digest(header.binding, expected.digest()):
            raise BindingMismatch(
                "the object is bound to another tenant, bucket, key or content id"
            )
        key = dek(raw) if callable(dek) else dek
        keys = verify_commitment(key, header)
        return cls(keys.payload_key, header)

    def _check(self, index: int, plaintext_length: int) -> None:
        expected = self.header.segment_plaintext_length(index)  # IndexError outside the object
        if plaintext_length != expected:
            raise ValueError(
                f"segment {index} holds {expected} plaintext bytes, got {plaintext_length}"
            )

    def seal(self, index: int, plaintext: Buffer) -> bytes:
        """Encrypt segment ``index``; ``plaintext`` must be exactly that segment's length."""
        self._check(index, len(plaintext))
        nonce = segment_nonce(index, index == self._last_index)
        return self._aead.encrypt(nonce, plaintext, self._aad)

    def seal_into(self, index: int, plaintext: Buffer, out: memoryview) -> None:
        """Like :meth:`seal`, writing into ``out`` (exactly ``len(plaintext) + 16`` bytes)."""
        self._check(index, len(plaintext))
        nonce = segment_nonce(index, index == self._last_index)
        self._aead.encrypt_into(nonce, plaintext, self._aad, out)

    def open(self, index: int, ciphertext: Buffer) -> bytes:
        """Authenticate and decrypt segment ``index``; raises :class:`Tampered` on any fault."""
        if not 0 <= index <= self._last_index:
            raise Tampered(f"segment {index} lies outside the object")
        expected = self.header.segment_plaintext_length(index) + TAG_LEN
        if len(ciphertext) != expected:
            raise Tampered(f"segment {index} has the wrong length")
        nonce = segment_nonce(index, index == self._last_index)
        try:
            return self._aead.decrypt(nonce, ciphertext, self._aad)
        except InvalidTag:
            raise Tampered(f"segment {index} failed authentication") from None
