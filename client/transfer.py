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

import base64
import binascii
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from client.envelope import (
    CONTENT_ID,
    MAX_USER_METADATA,
    META_PREFIX,
    Envelope,
    envelope_headers,
    metadata_size,
)
from client.envelope import parse_envelope_headers as _parse_envelope
from client.errors import InvalidEnvelope, PlaintextLengthMismatch, Tampered, Truncated
from client.format import HEADER_LEN, TAG_LEN, Header, ObjectBinding
from client.format import plaintext_range_to_ciphertext_range as _pt_to_ct
from client.progress import Progress
from client.recipient import PrivateKey, PublicKeyRef, key_id
from client.remote import ObjectChanged, RemoteStore, RequestRefused
from client.s3url import S3Url
from client.segments import SegmentCipher
from client.stream import Encryptor, decrypt_stream
from client.wrap import WrappedKey, unwrap_any, wrap_for_all

__all__ = [
    "EXTRA_WRAPPED_KEYS",
    "SINGLE_PUT_LIMIT",
    "WINDOW",
    "GetResult",
    "KeySource",
    "PlaintextRange",
    "PutResult",
    "atomic_output",
    "download",
    "parse_range",
    "upload_file",
]

#: S3's cap on one PutObject; above it an upload must be multipart.
SINGLE_PUT_LIMIT = 5 * 1024**3
#: Plaintext bytes encrypted per step of an upload (a multiple of every allowed segment size).
WINDOW = 8 * 1024 * 1024
#: Non-primary recipients' wrapped keys (``WrappedKey.encode_list``, base64): a ``bp`` CLI
#: convention in ordinary user metadata until the gateway defines a home for them
#: (docs/envelope.md section 8). Not ``bp-*``: the gateway reserves that prefix and silently
#: drops names in it that it does not know.
EXTRA_WRAPPED_KEYS = "x-amz-meta-bpcli-extra-wrapped-keys"
_READ_CHUNK = 1024 * 1024

#: Given the wrapped keys of an object (primary first), return the private key to open it.
KeySource = Callable[[Sequence[WrappedKey]], PrivateKey]


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


def _envelope_metadata(wrapped: Sequence[WrappedKey], content_id: bytes) -> dict[str, str]:
    headers = envelope_headers(wrapped[0], content_id)
    if len(wrapped) > 1:
        extra = WrappedKey.encode_list(wrapped[1:])
        headers[EXTRA_WRAPPED_KEYS] = base64.b64encode(extra).decode("ascii")
        size = metadata_size(headers)
        if size > MAX_USER_METADATA:
            raise InvalidEnvelope(
                f"the wrapped keys of {len(wrapped)} recipients take {size} bytes of metadata, "
                "over S3's 2 KiB; use fewer (or X25519/P-256) recipients"
            )
    return {name.removeprefix(META_PREFIX): value for name, value in headers.items()}


def _check_extra_recipients_kept(store: RemoteStore, url: S3Url, sent: Mapping[str, str]) -> None:
    """Fail loudly if the gateway stored the object but not the other recipients' wraps.

    Only the primary recipient is part of the gateway contract; a gateway that drops the extra
    list would leave the other recipients unable to read what ``bp put`` said it shared.
    """
    name = EXTRA_WRAPPED_KEYS.removeprefix(META_PREFIX)
    kept = {k.lower(): v for k, v in store.head(url).get("Metadata", {}).items()}
    if kept.get(name) != sent[name]:
        raise RequestRefused(
            f"{url}: stored, but the gateway did not keep the other recipients' wrapped keys; "
            "only the first --key can read it"
        )


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


def upload_file(
    store: RemoteStore,
    path: str | os.PathLike[str],
    url: S3Url,
    recipients: Sequence[PublicKeyRef],
    *,
    tenant: str,
    redundancy_class: str | None = None,
    progress: Progress | None = None,
) -> PutResult:
    """Encrypt ``path`` for ``recipients`` (the first is primary) and store it at ``url``.

    A file that grows or shrinks during the upload aborts it (nothing is stored), as does one
    that changes between the hashing pass and the sending pass over plain HTTP.
    """
    started = time.monotonic()
    if os.path.exists(path) and not os.path.isfile(path):
        raise IsADirectoryError(f"{path} is not a regular file")
    with open(path, "rb", buffering=0) as source:
        size = os.fstat(source.fileno()).st_size
        binding = ObjectBinding.new(tenant, url.bucket, url.key)
        encryptor = Encryptor(binding, size)
        wrapped = wrap_for_all(encryptor.dek, recipients, encryptor.header_bytes)
        metadata = _envelope_metadata(wrapped, binding.content_id)
        response = _send(store, url, source, encryptor, metadata, redundancy_class, progress)
    if progress is not None:
        progress.close()
    if len(wrapped) > 1:
        _check_extra_recipients_kept(store, url, metadata)
    return PutResult(
        plaintext_length=size,
        ciphertext_length=encryptor.header.ciphertext_length,
        content_id=binding.content_id.hex(),
        key_ids=tuple(w.key_id for w in wrapped),
        etag=str(response.get("ETag", "")).strip('"'),
        seconds=time.monotonic() - started,
    )


# -- download -----------------------------------------------------------------------------


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


def _wrapped_keys(headers: Mapping[str, str]) -> tuple[Envelope, list[WrappedKey]]:
    envelope = _parse_envelope(headers)
    extra: list[WrappedKey] = []
    encoded = headers.get(EXTRA_WRAPPED_KEYS)
    if encoded:
        try:
            extra = WrappedKey.decode_list(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidEnvelope(f"{EXTRA_WRAPPED_KEYS} is malformed") from None
    return envelope, [envelope.wrapped_key, *extra]


def _read_exact(body: io.RawIOBase, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = body.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def download(
    store: RemoteStore,
    url: S3Url,
    sink: BinaryIO | None,
    keys: KeySource,
    *,
    tenant: str,
    byte_range: PlaintextRange | None = None,
    progress_factory: Callable[[int], Progress] | None = None,
) -> GetResult:
    """Read ``url``, authenticate it completely, and write its plaintext to ``sink``.

    ``sink=None`` decrypts to nowhere (``bp verify``). With ``byte_range`` only the covering
    segments are fetched (plus the 112-byte header) and authenticated. The binding is checked
    against ``tenant`` and the bucket and key *asked for*, never names from the response.
    """
    started = time.monotonic()
    if byte_range is not None:
        return _download_range(store, url, sink, keys, tenant, byte_range, started)
    response = store.get(url)
    envelope, candidates = _wrapped_keys(_metadata_headers(response))
    private_key = keys(candidates)
    expected = ObjectBinding(tenant, url.bucket, url.key, envelope.content_id)
    total = int(response.get("ContentLength") or 0)
    progress = progress_factory(total) if progress_factory else None
    body = store.read_stream(response, f"get {url}")
    header_box: list[Header] = []

    def dek(header_bytes: bytes) -> bytes:
        header_box.append(Header.parse(header_bytes))
        return unwrap_any(candidates, private_key, header_bytes)

    def chunks() -> Iterator[bytes]:
        while chunk := body.read(_READ_CHUNK):
            if progress is not None:
                progress.update(len(chunk))
            yield chunk

    written = 0
    try:
        for plaintext in decrypt_stream(chunks(), dek=dek, expected=expected):
            if sink is not None:
                sink.write(plaintext)
            written += len(plaintext)
    finally:
        body.close()
        if progress is not None:
            progress.close()
    header = header_box[0]
    return GetResult(
        plaintext_length=header.plaintext_length,
        bytes_written=written,
        segments=header.segment_count,
        key_id=key_id(private_key),
        content_id=envelope.content_id.hex(),
        seconds=time.monotonic() - started,
    )


def _download_range(
    store: RemoteStore,
    url: S3Url,
    sink: BinaryIO | None,
    keys: KeySource,
    tenant: str,
    wanted: PlaintextRange,
    started: float,
) -> GetResult:
    first_response = store.get(url, f"bytes=0-{HEADER_LEN - 1}")
    headers = _metadata_headers(first_response)
    envelope, candidates = _wrapped_keys(headers)
    head_body = store.read_stream(first_response, f"get {url}")
    try:
        header_bytes = _read_exact(head_body, HEADER_LEN)
    finally:
        head_body.close()
    if len(header_bytes) < HEADER_LEN:
        raise Truncated("the object ends inside its header")
    private_key = keys(candidates)
    expected = ObjectBinding(tenant, url.bucket, url.key, envelope.content_id)
    cipher = SegmentCipher.for_reading(
        header_bytes, lambda h: unwrap_any(candidates, private_key, h), expected
    )
    header = cipher.header
    first, last = wanted.resolve(header.plaintext_length)
    span = _pt_to_ct(first, last, header)  # RangeNotSatisfiable outside the object
    last = min(last, header.plaintext_length - 1)
    etag = first_response.get("ETag")
    response = store.get(url, span.http_range, if_match=etag)
    if _metadata_headers(response).get(CONTENT_ID) != envelope.content_id.hex():
        raise ObjectChanged(f"{url}: the object was replaced during the read; try again")
    content_range = str(response.get("ContentRange") or "")
    if not content_range.startswith(f"bytes {span.offset}-{span.offset + span.length - 1}/"):
        raise Tampered(
            f"the gateway answered the ranged read {span.http_range} with "
            f"{content_range or 'the whole object'}"
        )
    body = store.read_stream(response, f"get {url}")
    written = 0
    try:
        for index in range(span.first_segment, (last >> header.seg_log2) + 1):
            want = header.segment_plaintext_length(index) + TAG_LEN
            data = _read_exact(body, want)
            if len(data) < want:
                raise Truncated(f"the ranged read ended inside segment {index}")
            plaintext = cipher.open(index, data)
            seg_first = index << header.seg_log2
            piece = plaintext[max(first - seg_first, 0) : last - seg_first + 1]
            if sink is not None:
                sink.write(piece)
            written += len(piece)
        if body.read(1):
            raise Tampered("the ranged read returned more bytes than its segments hold")
    finally:
        body.close()
    return GetResult(
        plaintext_length=header.plaintext_length,
        bytes_written=written,
        segments=(last >> header.seg_log2) - span.first_segment + 1,
        key_id=key_id(private_key),
        content_id=envelope.content_id.hex(),
        seconds=time.monotonic() - started,
    )


# -- output -------------------------------------------------------------------------------


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
