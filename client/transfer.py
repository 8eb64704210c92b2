"""Moving BP1 objects between local files and the gateway, encrypted end to end.

This is the I/O half of ``bp``: it moves bytes through :class:`~client.remote.RemoteStore`
and hands every one of them through the SDK (:class:`~client.stream.Encryptor`,
:func:`~client.stream.decrypt_stream`, :class:`~client.segments.SegmentCipher`). It keeps
four promises:

- **Bounded memory both ways.** Uploads encrypt a window of :data:`WINDOW` plaintext bytes at
  a time straight into the request body; downloads decrypt segment by segment into the sink.
  No file is ever read whole.
- **Nothing unauthenticated is published.** :func:`atomic_output` writes into a temporary file
  beside the destination and renames it only after the final tag verified; on any error the
  temporary file is removed and an existing destination is left untouched. ``-`` (stdout) is
  spooled to an anonymous temporary file for the same reason.
- **The names asked for are the names checked.** The binding is recomputed from the tenant,
  bucket and key the caller asked for, never from anything in a response.

Remote errors arrive as :class:`~client.remote.TransferError` (see :mod:`client.remote`).

Uploads are one PutObject today (the gateway has no multipart upload yet), so the ciphertext is
capped at :data:`SINGLE_PUT_LIMIT` (5 GiB). :func:`_send` is the one place that chooses the
strategy: once multipart lands it will send large files as parts of a multiple of the segment
size, sealed concurrently with :func:`client.parts.encrypt_parts`, with the envelope on
CreateMultipartUpload.

Why the body is rewindable: over plain ``http://`` botocore signs the SHA-256 of the payload,
which it computes by reading the body once and seeking back before sending it. The body
re-encrypts the same windows on a rewind; the encryptor's ledger releases a repeated window
only if it comes out byte-identical (same plaintext), so a file that changes between the two
passes aborts the upload (:class:`~client.errors.SegmentReuse`) instead of reusing a nonce.
Over ``https://`` botocore sends an unsigned payload with a CRC32 trailer instead and the body
is read once.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from client.envelope import (
    META_PREFIX,
)
from client.errors import PlaintextLengthMismatch
from client.format import TAG_LEN
from client.progress import Progress
from client.remote import RemoteStore, RequestRefused
from client.s3url import S3Url
from client.stream import Encryptor

__all__ = [
    "SINGLE_PUT_LIMIT",
    "WINDOW",
    "GetResult",
    "PlaintextRange",
    "PutResult",
    "atomic_output",
    "parse_range",
]

#: S3's cap on one PutObject; above it an upload must be multipart.
SINGLE_PUT_LIMIT = 5 * 1024**3
#: Plaintext bytes encrypted per step of an upload (a multiple of every allowed segment size).
WINDOW = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024

# -- upload -------------------------------------------------------------------------------


class _EncryptingBody(io.RawIOBase):
    """The ciphertext of a local file as a read-only file object, produced window by window.

    Seekable only to its start (a rewind re-encrypts, see the module docstring), to its current
    position, or to its end (how botocore measures a body). Memory: one plaintext window and
    one ciphertext window.
    """

    def __init__(
        self, source: io.RawIOBase, encryptor: Encryptor, progress: Progress | None = None
    ) -> None:
        self._source = source
        self._enc = encryptor
        header = encryptor.header
        self._total = header.ciphertext_length
        # Whole segments per window (WINDOW is a multiple of every allowed segment size), so
        # each window is sealed on its own and a rewind repeats exactly the same ranges.
        self._window = min(WINDOW, header.segment_count * header.segment_size)
        self._plain = bytearray(self._window)
        self._sealed = bytearray(self._window + TAG_LEN * (self._window // header.segment_size))
        self._progress = progress
        self._start_pass()

    def _start_pass(self) -> None:
        self._pos = 0
        self._pending = memoryview(b"")
        self._windows = self._generate()

    def __len__(self) -> int:
        return self._total - self._pos

    def __bool__(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        target = base + offset
        if target == self._pos:
            return target
        if target == 0:
            self._start_pass()
            if self._progress is not None:
                self._progress.restart()
        elif target == self._total:
            self._pos, self._pending = target, memoryview(b"")
            self._windows = iter(())
        else:
            raise io.UnsupportedOperation("an encrypting body can only rewind to its start")
        return target

    def _read_plain(self, n: int) -> memoryview:
        view = memoryview(self._plain)[:n]
        got = 0
        while got < n:
            count = self._source.readinto(view[got:])
            if not count:
                raise PlaintextLengthMismatch(
                    "the file shrank while it was being uploaded; nothing was stored"
                )
            got += count
        return view

    def _generate(self) -> Iterator[memoryview]:
        enc = self._enc
        header = enc.header
        yield memoryview(enc.header_bytes)
        self._source.seek(0)
        if header.plaintext_length == 0:
            yield memoryview(enc.encrypt_segments(0, b""))
        offset = 0
        while offset < header.plaintext_length:
            n = min(self._window, header.plaintext_length - offset)
            plain = self._read_plain(n)
            if offset + n == header.plaintext_length and self._source.read(1):
                raise PlaintextLengthMismatch(
                    "the file grew while it was being uploaded; nothing was stored"
                )
            first = offset >> header.seg_log2
            out = memoryview(self._sealed)
            written = enc.encrypt_segments_into(first, plain, out)
            yield out[:written]
            offset += n

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        while not self._pending:
            nxt = next(self._windows, None)
            if nxt is None:
                return 0
            self._pending = nxt
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        if self._progress is not None:
            self._progress.update(n)
        return n


@dataclass(frozen=True, slots=True)
class PutResult:
    """What was stored: sizes, the new version's content id and the recipients' key ids."""

    plaintext_length: int
    ciphertext_length: int
    content_id: str
    key_ids: tuple[str, ...]
    etag: str
    seconds: float


def _send(
    store: RemoteStore,
    url: S3Url,
    source: io.RawIOBase,
    encryptor: Encryptor,
    metadata: Mapping[str, str],
    redundancy_class: str | None,
    progress: Progress | None,
) -> dict[str, Any]:
    """The upload strategy, the one function to change when the gateway offers multipart.

    Today: one streaming PutObject, so the ciphertext is capped at :data:`SINGLE_PUT_LIMIT`.
    With multipart: CreateMultipartUpload with ``metadata`` (the envelope), then parts cut by
    :func:`client.parts.plan_parts` at a multiple of the segment size, sealed concurrently by
    :func:`client.parts.encrypt_parts` from the same ``encryptor``, uploaded, and completed
    (aborted on any error), with memory bounded by the parts in flight.
    """
    total = encryptor.header.ciphertext_length
    if total > SINGLE_PUT_LIMIT:
        raise RequestRefused(
            f"{url}: {total} bytes of ciphertext exceed the 5 GiB single-PUT limit, and the "
            "gateway does not support multipart uploads yet"
        )
    body = _EncryptingBody(source, encryptor, progress)
    return store.put(url, body, total, metadata, redundancy_class=redundancy_class)


@dataclass(frozen=True, slots=True)
class PlaintextRange:
    """A requested plaintext byte range: ``first-last``, ``first-`` or the last ``suffix`` bytes."""

    first: int | None
    last: int | None = None
    suffix: int | None = None

    def resolve(self, length: int) -> tuple[int, int]:
        """Inclusive ``(first, last)`` for an object of ``length`` bytes (``last`` clamped)."""
        if self.suffix is not None:
            return max(0, length - self.suffix), length - 1
        assert self.first is not None
        return self.first, length - 1 if self.last is None else self.last


def parse_range(text: str) -> PlaintextRange:
    """Parse ``a-b`` (inclusive, like HTTP), ``a-`` (to the end) or ``-n`` (the last n bytes)."""
    first_text, dash, last_text = text.strip().partition("-")
    if not dash or not (first_text or last_text):
        raise ValueError(f"range {text!r} must look like FIRST-LAST, FIRST- or -COUNT")
    if not (first_text.isdigit() or not first_text) or not (last_text.isdigit() or not last_text):
        raise ValueError(f"range {text!r} must use non-negative decimal byte offsets")
    if not first_text:
        count = int(last_text)
        if count == 0:
            raise ValueError("a suffix range must ask for at least one byte")
        return PlaintextRange(None, None, count)
    first = int(first_text)
    last = int(last_text) if last_text else None
    if last is not None and last < first:
        raise ValueError(f"range {text!r} ends before it starts")
    return PlaintextRange(first, last)


@dataclass(frozen=True, slots=True)
class GetResult:
    """What a verified read produced."""

    plaintext_length: int
    bytes_written: int
    segments: int
    key_id: str
    content_id: str
    seconds: float


def _metadata_headers(response: Mapping[str, Any]) -> dict[str, str]:
    return {META_PREFIX + k.lower(): v for k, v in response.get("Metadata", {}).items()}


def _read_exact(body: io.RawIOBase, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = body.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


@contextlib.contextmanager
def atomic_output(destination: str) -> Iterator[BinaryIO]:
    """A file to write plaintext into, published at ``destination`` only on success.

    ``"-"`` means stdout: the plaintext is spooled to an anonymous temporary file and copied to
    stdout once the whole object authenticated. For a path, the temporary file lives beside it
    (same filesystem, so the final rename is atomic), is created mode 0600, fsynced, given the
    mode a new file would get under the current umask, and renamed over the destination. On any
    exception it is deleted and the destination is untouched.
    """
    if destination == "-":
        with tempfile.TemporaryFile(prefix="bp-get-") as spool:
            yield spool
            spool.seek(0)
            out = sys.stdout.buffer
            while chunk := spool.read(_READ_CHUNK):
                out.write(chunk)
            out.flush()
        return
    target = Path(destination)
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".bp-partial", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
