"""Streaming BP1 encryption and decryption with memory bounded by one segment.

:class:`Encryptor` turns plaintext chunks of any size into ``header || segments``; it needs
the plaintext length up front because the header carries it, and it refuses input that is
longer or shorter than declared before it releases the final segment. It can also seal any run
of segments on its own (:meth:`Encryptor.encrypt_segments`), which is what lets multipart parts
be encrypted concurrently (:mod:`client.parts`).

:func:`decrypt_stream` does the reverse and verifies, in this order: header structure, binding,
key commitment, then every segment tag with its index and final flag, and finally that nothing
follows the final segment. Plaintext of segment ``i`` is released once segment ``i`` is
authenticated; a consumer must not treat the output as the whole object until the iterator
finishes without raising (truncation is only detectable at the end). The final segment's
plaintext is withheld until the end of input has been seen, so a clean finish means the
object is exactly as written.
"""

from __future__ import annotations

import bisect
import hashlib
import secrets
import threading
from collections.abc import Iterable, Iterator

from client.errors import (
    PlaintextLengthMismatch,
    SegmentReuse,
    Tampered,
    Truncated,
)
from client.format import (
    DEFAULT_SEG_LOG2,
    HEADER_LEN,
    SALT_LEN,
    TAG_LEN,
    Header,
    ObjectBinding,
    segment_count,
)
from client.keyschedule import derive_keys, new_dek
from client.segments import Buffer, DekSource, SegmentCipher

__all__ = ["Encryptor", "decrypt", "decrypt_stream"]


class _ChunkReader:
    """Re-frames an iterator of arbitrary chunks into exact-size reads.

    A read that falls inside one chunk returns a zero-copy view of it; the view is only valid
    until the next call (producers may reuse their buffers), so callers consume it at once.
    """

    __slots__ = ("_cur", "_it", "_pos")

    def __init__(self, chunks: Iterable[Buffer]) -> None:
        self._it = iter(chunks)
        self._cur = memoryview(b"")
        self._pos = 0

    def read(self, n: int) -> Buffer:
        """Exactly ``n`` bytes, or fewer only if the input ends first."""
        if len(self._cur) - self._pos >= n:
            view = self._cur[self._pos : self._pos + n]
            self._pos += n
            return view
        out = bytearray(self._cur[self._pos :])
        self._cur, self._pos = memoryview(b""), 0
        while len(out) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            view = memoryview(chunk).cast("B")
            need = n - len(out)
            if len(view) > need:
                out += view[:need]
                self._cur, self._pos = view, need
                break
            out += view
        return out

    def at_eof(self) -> bool:
        """True if no byte is left (skips empty chunks)."""
        while len(self._cur) - self._pos == 0:
            chunk = next(self._it, None)
            if chunk is None:
                return True
            self._cur, self._pos = memoryview(chunk).cast("B"), 0
        return False


class _SealLedger:
    """The segment ranges an encryptor has sealed, so no index is ever sealed twice differently.

    A range may be sealed again only as exactly the same range (a retried multipart part, a
    request body read twice), and the new ciphertext is released only if its tags match the
    first sealing, i.e. the plaintext was identical, in which case the output is identical too
    and nothing leaks. The streaming pass claims every index and allows no repeat; a range
    closed by its caller (:meth:`close`: a part the gateway acknowledged) allows no repeat
    either.

    Ranges never overlap, so they are kept sorted by start: checking a new range needs only its
    predecessor (``O(log n)``), and closing merges neighbours, which keeps the ledger of a
    multi-terabyte upload as small as the ranges still in flight.
    """

    _STREAM = b"stream"
    _CLOSED = b"closed"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._ranges: dict[int, tuple[int, bytes | None]] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def _overlap(self, start: int, end: int) -> tuple[int, int] | None:
        """The recorded range overlapping ``[start, end)``, if any (ranges are disjoint)."""
        i = bisect.bisect_left(self._starts, end)
        if i:
            other = self._starts[i - 1]
            other_end = self._ranges[other][0]
            if start < other_end:
                return other, other_end
        return None

    def reserve(self, start: int, end: int, *, stream: bool = False) -> bytes | None:
        """Claim ``[start, end)``; return the earlier tag digest when this is a retry."""
        with self._lock:
            previous = self._ranges.get(start)
            if previous is not None and previous[0] == end and not stream:
                digest = previous[1]
                if digest is not None and digest not in (self._STREAM, self._CLOSED):
                    return digest
            clash = self._overlap(start, end)
            if clash is not None:
                other_start, other_end = clash
                raise SegmentReuse(
                    f"segments {start}..{end - 1} overlap segments "
                    f"{other_start}..{other_end - 1} sealed (or being sealed) before"
                )
            bisect.insort(self._starts, start)
            self._ranges[start] = (end, self._STREAM if stream else None)
            return None

    def record(self, start: int, digest: bytes) -> None:
        with self._lock:
            end, _ = self._ranges[start]
            self._ranges[start] = (end, digest)

    def release(self, start: int) -> None:
        """Forget a reservation whose sealing failed before anything was released."""
        with self._lock:
            if self._ranges.pop(start, None) is not None:
                del self._starts[bisect.bisect_left(self._starts, start)]

    def close(self, start: int, end: int) -> None:
        """Make ``[start, end)`` final: every range inside it is forgotten and the whole span
        refuses any further sealing, retries included. Adjacent closed spans are merged."""
        with self._lock:
            lo = bisect.bisect_left(self._starts, start)
            hi = bisect.bisect_left(self._starts, end)
            for s in self._starts[lo:hi]:
                if self._ranges[s][0] > end:
                    raise ValueError(f"segments {s}.. extend past the closed span ..{end - 1}")
                del self._ranges[s]
            del self._starts[lo:hi]
            if self._overlap(start, end) is not None:
                raise ValueError(f"segments {start}..{end - 1} overlap another sealed range")
            if lo and self._ranges[self._starts[lo - 1]] == (start, self._CLOSED):
                lo -= 1
                start = self._starts[lo]
            else:
                self._starts.insert(lo, start)
            following = self._ranges.get(end)
            if following is not None and following[1] == self._CLOSED:
                del self._ranges[end]
                del self._starts[lo + 1]
                end = following[0]
            self._ranges[start] = (end, self._CLOSED)


class Encryptor:
    """Encrypts one object version: fresh DEK and salt, header fixed at construction.

    Typical use::

        enc = Encryptor(ObjectBinding.new(tenant, bucket, key), plaintext_length)
        wrapped = wrap(enc.dek, recipient, enc.header_bytes)
        body = enc.encrypt(chunks)          # iterator: header, then one item per segment

    The DEK is exposed only so it can be wrapped; it must not be reused for another object.
    """

    def __init__(
        self, binding: ObjectBinding, plaintext_length: int, *, seg_log2: int = DEFAULT_SEG_LOG2
    ) -> None:
        self._setup(binding, plaintext_length, seg_log2, new_dek(), secrets.token_bytes(SALT_LEN))

    @classmethod
    def _from_parts(
        cls,
        binding: ObjectBinding,
        plaintext_length: int,
        seg_log2: int,
        dek: bytes,
        salt: bytes,
    ) -> Encryptor:
        """Deterministic construction for test vectors only (like Fernet's private hook)."""
        self = cls.__new__(cls)
        self._setup(binding, plaintext_length, seg_log2, dek, salt)
        return self

    def _setup(
        self, binding: ObjectBinding, plaintext_length: int, seg_log2: int, dek: bytes, salt: bytes
    ) -> None:
        if len(salt) != SALT_LEN:
            raise ValueError(f"salt must be {SALT_LEN} bytes")
        segment_count(plaintext_length, seg_log2)  # ValueError for a bad length or seg_log2
        keys = derive_keys(dek, salt)
        header = Header(
            seg_log2=seg_log2,
            salt=salt,
            commitment=keys.commitment,
            plaintext_length=plaintext_length,
            binding=binding.digest(),
        )
        self.binding = binding
        self.header = header
        self.header_bytes = header.to_bytes()
        self._dek = dek
        self._cipher = SegmentCipher(keys.payload_key, header)
        self._ledger = _SealLedger()

    def __repr__(self) -> str:
        h = self.header
        return f"Encryptor(length={h.plaintext_length}, seg_log2={h.seg_log2})"

    @property
    def dek(self) -> bytes:
        """The 32-byte data key, to be wrapped for each recipient."""
        return self._dek

    def encrypt(self, chunks: Iterable[Buffer]) -> Iterator[bytes]:
        """Yield the header, then each sealed segment; one pass per encryptor.

        Raises :class:`PlaintextLengthMismatch` (before the final segment is yielded) if the
        chunks do not add up to the declared length; the partial output must then be discarded.
        """
        count = self.header.segment_count
        self._ledger.reserve(0, count, stream=True)
        return self._stream(chunks, count)

    def _stream(self, chunks: Iterable[Buffer], count: int) -> Iterator[bytes]:
        yield self.header_bytes
        reader = _ChunkReader(chunks)
        for index in range(count):
            want = self.header.segment_plaintext_length(index)
            data = reader.read(want)
            if len(data) != want:
                raise PlaintextLengthMismatch(
                    f"plaintext ended before the declared {self.header.plaintext_length} bytes"
                )
            sealed = self._cipher.seal(index, data)
            if index == count - 1 and not reader.at_eof():
                raise PlaintextLengthMismatch(
                    f"plaintext is longer than the declared {self.header.plaintext_length} bytes"
                )
            yield sealed

    def encrypt_segments(self, first_index: int, plaintext: Buffer) -> bytearray:
        """Seal the segments starting at ``first_index`` that ``plaintext`` covers, alone.

        ``plaintext`` must start on a segment boundary and hold whole segments, except that it
        may end with the object's final (short) segment. Safe to call from several threads;
        each call's output is ``seg_first || ... || seg_k`` (no header). Sealing the same
        range again is allowed only with the same plaintext (a retry); any other repeat or
        overlap raises :class:`SegmentReuse`.
        """
        out = bytearray(self.sealed_length(first_index, len(plaintext)))
        self.encrypt_segments_into(first_index, plaintext, memoryview(out))
        return out

    def sealed_length(self, first_index: int, plaintext_length: int) -> int:
        """Ciphertext bytes of the segments from ``first_index`` holding that much plaintext.

        Raises :class:`PlaintextLengthMismatch` unless the plaintext is whole segments, or
        ends exactly with the object's final segment.
        """
        header = self.header
        size, count = header.segment_size, header.segment_count
        if not 0 <= first_index < count:
            raise ValueError(f"segment {first_index} outside 0..{count - 1}")
        covered = max(1, -(-plaintext_length // size))
        end = first_index + covered
        if end > count:
            raise PlaintextLengthMismatch("plaintext runs past the end of the object")
        expected = min(end * size, header.plaintext_length) - first_index * size
        if plaintext_length != expected:
            raise PlaintextLengthMismatch(
                f"segments {first_index}..{end - 1} hold {expected} plaintext bytes, "
                f"got {plaintext_length}"
            )
        return plaintext_length + TAG_LEN * covered

    def close_segments(self, first_index: int, end_index: int) -> None:
        """Declare segments ``first_index .. end_index - 1`` final: no call may seal any of
        them again, not even an identical retry.

        For a caller that has delivered them for good (a multipart part the gateway
        acknowledged): it keeps the encryptor's record of sealed ranges small however many
        ranges an upload seals, and turns any later attempt into :class:`SegmentReuse`.
        """
        if not 0 <= first_index < end_index <= self.header.segment_count:
            raise ValueError(f"segments {first_index}..{end_index - 1} are not in the object")
        self._ledger.close(first_index, end_index)

    def encrypt_segments_into(self, first_index: int, plaintext: Buffer, out: memoryview) -> int:
        """:meth:`encrypt_segments` writing into ``out``; returns the bytes written.

        On :class:`SegmentReuse` detected after sealing (a retry with other plaintext), the
        written region is zeroed before raising, so the second ciphertext never escapes.
        """
        need = self.sealed_length(first_index, len(plaintext))
        if len(out) < need:
            raise ValueError(f"output buffer holds {len(out)} bytes, {need} needed")
        size, stride = self.header.segment_size, self.header.segment_size + TAG_LEN
        covered = -(-need // stride)
        earlier = self._ledger.reserve(first_index, first_index + covered)
        view = memoryview(plaintext).cast("B")
        try:
            for k in range(covered):
                chunk = view[k * size : (k + 1) * size]
                start = k * stride
                self._cipher.seal_into(
                    first_index + k, chunk, out[start : start + len(chunk) + TAG_LEN]
                )
        except BaseException:
            if earlier is None:
                self._ledger.release(first_index)
            raise
        tags = hashlib.sha256()
        for k in range(covered):
            end = min((k + 1) * stride, need)
            tags.update(out[end - TAG_LEN : end])
        digest = tags.digest()
        if earlier is None:
            self._ledger.record(first_index, digest)
        elif earlier != digest:
            out[:need] = bytes(need)
            raise SegmentReuse(
                f"segments {first_index}..{first_index + covered - 1} were sealed before "
                "with other plaintext"
            )
        return need


def decrypt_stream(
    chunks: Iterable[Buffer], *, dek: DekSource, expected: ObjectBinding
) -> Iterator[bytes]:
    """Decrypt a whole BP1 object streamed as chunks, yielding authenticated plaintext.

    ``expected`` is the tenant, bucket and key the caller asked for and the content id from the
    envelope. Every failure is a :class:`DecryptionFailed`.
    """
    reader = _ChunkReader(chunks)
    head = reader.read(HEADER_LEN)
    if len(head) < HEADER_LEN:
        raise Truncated("the object ends inside its header")
    cipher = SegmentCipher.for_reading(head, dek, expected)
    count = cipher.header.segment_count
    for index in range(count):
        want = cipher.header.segment_plaintext_length(index) + TAG_LEN
        data = reader.read(want)
        if len(data) < want:
            where = "at the start of" if not data else "inside"
            raise Truncated(f"the object ends {where} segment {index} of {count}")
        plaintext = cipher.open(index, data)
        if index == count - 1 and not reader.at_eof():
            raise Tampered("data follows the final segment")
        yield plaintext


def decrypt(ciphertext: Buffer, *, dek: DekSource, expected: ObjectBinding) -> bytes:
    """Decrypt a whole BP1 object held in memory."""
    return b"".join(decrypt_stream((ciphertext,), dek=dek, expected=expected))
