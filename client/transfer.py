"""Moving BP1 objects between local files and the gateway, encrypted end to end.

This is the I/O half of ``bp``: it moves bytes through :class:`~client.remote.RemoteStore`
and hands every one of them through the SDK (:class:`~client.stream.Encryptor`,
:func:`~client.stream.decrypt_stream`, :class:`~client.segments.SegmentCipher`). It keeps
four promises:

- **Bounded memory both ways.** Uploads encrypt a window of plaintext at a time straight into
  the request body (:class:`~client.upload_body.EncryptingBody`;
  :data:`~client.upload_body.WINDOW` for a single PUT, :data:`PART_WINDOW` per part in flight
  for a multipart upload); downloads decrypt segment by segment into the sink. No file is
  ever read whole, and no part is ever held whole.
- **Nothing unauthenticated is published.** :func:`atomic_output` writes into a temporary file
  beside the destination and renames it only after the final tag verified; on any error the
  temporary file is removed and an existing destination is left untouched. ``-`` (stdout) is
  spooled to an anonymous temporary file for the same reason.
- **The names asked for are the names checked.** The binding is recomputed from the tenant,
  bucket and key the caller asked for, never from anything in a response.
- **No nonce is ever used twice, and a file that changes is not stored.** See below.

Remote errors arrive as :class:`~client.remote.TransferError` (see :mod:`client.remote`).

**Upload strategy** (:func:`_send`, the one place that chooses): a file of up to
:data:`MULTIPART_THRESHOLD` plaintext bytes is one streaming PutObject. A larger one is a
multipart upload: CreateMultipartUpload with the envelope metadata, content type and
redundancy class exactly as the single PUT sends them; parts of
:attr:`UploadOptions.part_size` plaintext bytes (a multiple of the segment size, at least
5 MiB; raised by :func:`client.parts.choose_part_size` when the file would need more than
10,000 parts), cut by :func:`client.parts.plan_parts` so that part 1 starts with the BP1
header and every part holds whole segments; :attr:`UploadOptions.concurrency` parts in
flight, each sealed and sent by its own thread (AES-GCM releases the GIL, so parts are
encrypted in parallel); a part that fails with a temporary error is sent again, up to
:data:`PART_ATTEMPTS` times; then CompleteMultipartUpload with the parts' ETags. On any
failure, and on Ctrl-C, the part threads are stopped and AbortMultipartUpload is sent (best
effort: if that fails too, the error says so) before the original error is raised. Without
multipart the ciphertext would be capped at :data:`SINGLE_PUT_LIMIT` (5 GiB); with it, at
S3's 5 TiB. A gateway that answers CreateMultipartUpload with 501 gets a single PUT instead,
if the file fits one.

Why parts are streamed rather than sealed whole by :func:`client.parts.encrypt_parts`: that
holds each part in flight whole, plaintext and ciphertext (with 16 MiB parts, four being sent
and its look-ahead of ``workers + 1`` being sealed, well over 100 MiB), where a streamed part
needs two 1 MiB windows (about 5 MiB per part in flight measured, botocore's buffers
included): ``bp put`` of 1 GiB peaks where ``bp put`` of 1 MiB does, give or take 20 MiB.
Parts are still sealed independently and in parallel, from the same
:class:`~client.stream.Encryptor`, and a part sent again is re-encrypted under the ledger's
rule rather than kept.

**Nonce reuse and changing files.** A request body is rewindable: over plain ``http://``
botocore signs the SHA-256 of the payload, which it computes by reading the body once and
seeking back before sending it, and a part sent again is read again. The body re-encrypts the
same windows on a rewind; the encryptor's ledger releases a repeated window only if it comes
out byte-identical (same plaintext), so a file that changes between two passes aborts the
upload (:class:`~client.errors.SegmentReuse`) instead of reusing a nonce. A part the gateway
acknowledged is closed in the ledger (:meth:`~client.stream.Encryptor.close_segments`): its
segments can never be sealed again. Independently, a file that grows or shrinks
(:class:`~client.errors.PlaintextLengthMismatch`) or whose size, modification or change time
differs from when the upload started (:class:`~client.errors.SourceChanged`) aborts the
upload before its last window is released (single PUT) or before CompleteMultipartUpload (each
part checks when it finishes, and the whole file once more before completing): nothing is
stored. The nonce protection is absolute; detecting an in-place change by its timestamps is
as good as the file system's clock (a write within the same clock tick as the previous one
may go unseen, but never makes a nonce repeat).

Over ``https://`` botocore sends an unsigned payload with a CRC32 trailer instead and each
body is read once.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from client.envelope import (
    META_PREFIX,
)
from client.parts import PartPlan, choose_part_size, plan_parts
from client.progress import Progress
from client.remote import GatewayUnavailable, RemoteStore, RequestRefused, TransferError
from client.s3url import S3Url
from client.stream import Encryptor
from client.upload_body import EncryptingBody, UploadCancelled, UploadSource, body_failures

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "MAX_CONCURRENCY",
    "MULTIPART_THRESHOLD",
    "PART_ATTEMPTS",
    "PART_WINDOW",
    "SINGLE_PUT_LIMIT",
    "GetResult",
    "PlaintextRange",
    "PutResult",
    "UploadOptions",
    "atomic_output",
    "parse_range",
]

#: S3's cap on one PutObject; above it an upload must be multipart.
SINGLE_PUT_LIMIT = 5 * 1024**3
#: Files of more plaintext bytes than this are uploaded in parts.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: Plaintext bytes per part unless told otherwise (a multiple of every allowed segment size).
DEFAULT_PART_SIZE = 16 * 1024 * 1024
#: Parts in flight at once unless told otherwise, and the most allowed.
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16
#: Tries per part: a part that fails with a temporary error (5xx, a dropped connection, a
#: timeout) is sent again this many times in all, on top of botocore's own retries.
PART_ATTEMPTS = 3
#: Plaintext bytes encrypted per step of one part in flight.
PART_WINDOW = 1024 * 1024
_READ_CHUNK = 1024 * 1024
#: How long a failed or interrupted upload waits for its other parts to stop before aborting.
_STOP_WAIT_S = 30.0
_RETRY_BACKOFF_S = 0.5
_POLL_S = 0.25

# -- upload -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadOptions:
    """How to upload: the part size and parts in flight of a multipart upload, and the
    plaintext size above which a file is uploaded in parts."""

    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    multipart_threshold: int = MULTIPART_THRESHOLD

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}, got {self.concurrency}")
        if self.multipart_threshold < 0:
            raise ValueError("the multipart threshold cannot be negative")


@dataclass(frozen=True, slots=True)
class PutResult:
    """What was stored: sizes, the new version's content id and the recipients' key ids.

    ``parts`` is 0 for a single PutObject, else the number of parts of ``part_size``
    plaintext bytes the object was uploaded in.
    """

    plaintext_length: int
    ciphertext_length: int
    content_id: str
    key_ids: tuple[str, ...]
    etag: str
    seconds: float
    parts: int = 0
    part_size: int = 0


@dataclass(frozen=True, slots=True)
class _Sent:
    response: Mapping[str, Any]
    parts: int = 0
    part_size: int = 0


def _part_size_for(encryptor: Encryptor, options: UploadOptions) -> int | None:
    """The plaintext part size to upload in, or None for a single PutObject."""
    header = encryptor.header
    small = header.plaintext_length <= options.multipart_threshold
    if small and header.ciphertext_length <= SINGLE_PUT_LIMIT:
        return None
    return choose_part_size(header.plaintext_length, options.part_size, header.seg_log2)


def _send(
    store: RemoteStore,
    url: S3Url,
    source: Any,
    encryptor: Encryptor,
    metadata: Mapping[str, str],
    redundancy_class: str | None,
    progress: Progress | None,
    options: UploadOptions | None = None,
) -> _Sent:
    """The upload strategy: one PutObject, or a multipart upload (see the module docstring)."""
    options = options or UploadOptions()
    source = source if isinstance(source, UploadSource) else UploadSource(source)
    part_size = _part_size_for(encryptor, options)
    if part_size is None:
        return _Sent(
            _put_single(store, url, source, encryptor, metadata, redundancy_class, progress)
        )
    plans = plan_parts(encryptor.header.plaintext_length, part_size, encryptor.header.seg_log2)
    try:
        upload_id = store.create_multipart_upload(url, metadata, redundancy_class=redundancy_class)
    except RequestRefused as exc:
        if exc.code != "NotImplemented" or encryptor.header.ciphertext_length > SINGLE_PUT_LIMIT:
            raise
        # A gateway without multipart: nothing was started, and the file fits one PUT.
        return _Sent(
            _put_single(store, url, source, encryptor, metadata, redundancy_class, progress)
        )
    upload = _MultipartUpload(store, url, upload_id, source, encryptor, progress, options)
    return _Sent(upload.run(plans), len(plans), part_size)


def _put_single(
    store: RemoteStore,
    url: S3Url,
    source: UploadSource,
    encryptor: Encryptor,
    metadata: Mapping[str, str],
    redundancy_class: str | None,
    progress: Progress | None,
) -> dict[str, Any]:
    total = encryptor.header.ciphertext_length
    if total > SINGLE_PUT_LIMIT:
        raise RequestRefused(
            f"{url}: {total} bytes of ciphertext exceed the 5 GiB single-PUT limit"
        )
    body = EncryptingBody(source, encryptor, progress)
    with body_failures(body):
        return store.put(url, body, total, metadata, redundancy_class=redundancy_class)


class _MultipartUpload:
    """One multipart upload from CreateMultipartUpload's id to Complete, or to Abort."""

    def __init__(
        self,
        store: RemoteStore,
        url: S3Url,
        upload_id: str,
        source: UploadSource,
        encryptor: Encryptor,
        progress: Progress | None,
        options: UploadOptions,
    ) -> None:
        self.store = store
        self.url = url
        self.upload_id = upload_id
        self.source = source
        self.encryptor = encryptor
        self.progress = progress
        self.concurrency = options.concurrency
        self.cancel = threading.Event()
        self._active = 0  # part threads between start and finish, under _idle
        self._idle = threading.Condition()

    def run(self, plans: list[PartPlan]) -> dict[str, Any]:
        """Send every part, complete; on any exception (Ctrl-C included) abort, then re-raise."""
        try:
            etags = self._send_parts(plans)
            self.source.check_unchanged()
            return self.store.complete_multipart_upload(self.url, self.upload_id, etags)
        except BaseException as exc:
            self._abort(exc)
            raise

    def _send_parts(self, plans: list[PartPlan]) -> list[tuple[int, str]]:
        """Keep ``concurrency`` parts in flight, in order of part number; the first failure
        stops the others (their bodies end their requests at the next read)."""
        etags: dict[int, str] = {}
        waiting = iter(plans)
        running: set[Future[tuple[int, str]]] = set()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="bp-part")
        try:
            for plan in waiting:
                running.add(pool.submit(self._run_part, plan))
                if len(running) == self.concurrency:
                    break
            while running:
                # Woken at least every _POLL_S: a Ctrl-C the kernel delivered to a part's
                # thread is only acted on once the main thread runs.
                done, running = wait(running, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    number, etag = future.result()
                    etags[number] = etag
                    following = next(waiting, None)
                    if following is not None:
                        running.add(pool.submit(self._run_part, following))
        except BaseException:
            self._stop()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return sorted(etags.items())

    def _stop(self) -> None:
        """Stop every part and wait (up to :data:`_STOP_WAIT_S`) until none is sending, so
        the abort that follows is not overtaken by a part. A part thread counts itself active
        before it checks ``cancel``: one that starts after this looks sends nothing."""
        self.cancel.set()
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=_STOP_WAIT_S)

    def _run_part(self, plan: PartPlan) -> tuple[int, str]:
        with self._idle:
            self._active += 1
        try:
            if self.cancel.is_set():
                raise UploadCancelled("the upload is being aborted")
            return self._send_part(plan)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _send_part(self, plan: PartPlan) -> tuple[int, str]:
        body = EncryptingBody(
            self.source,
            self.encryptor,
            self.progress,
            part=plan,
            window=PART_WINDOW,
            cancel=self.cancel,
        )
        attempt = 1
        while True:
            if self.cancel.is_set():
                raise UploadCancelled("the upload is being aborted")
            try:
                with body_failures(body):
                    etag = self.store.upload_part(
                        self.url, self.upload_id, plan.number, body, plan.ciphertext_length
                    )
                break
            except GatewayUnavailable:
                if attempt == PART_ATTEMPTS:
                    raise
            body.seek(0)
            if self.cancel.wait(_RETRY_BACKOFF_S * 2 ** (attempt - 1)):
                raise UploadCancelled("the upload is being aborted")
            attempt += 1
        segments = max(1, -(-plan.plaintext_length // self.encryptor.header.segment_size))
        self.encryptor.close_segments(plan.first_segment, plan.first_segment + segments)
        return plan.number, etag

    def _abort(self, exc: BaseException) -> None:
        """AbortMultipartUpload, best effort: if it fails, the error being raised says so."""
        try:
            self.store.abort_multipart_upload(self.url, self.upload_id)
        except TransferError as failed:
            exc.add_note(
                f"the incomplete upload {self.upload_id} could not be aborted ({failed}); it "
                "holds its parts until it is aborted"
            )


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
