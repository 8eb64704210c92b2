"""The request body of an upload: a local file's ciphertext, encrypted as it is sent.

:class:`EncryptingBody` is what :mod:`client.transfer` hands botocore for a single PutObject
or for one part of a multipart upload. It keeps, whoever sends it:

- **Bounded memory.** The file is read at absolute offsets (:class:`UploadSource`, safe from
  several part threads at once) and encrypted one window at a time (:data:`WINDOW` plaintext
  bytes unless told otherwise) into reused buffers: one plaintext and one ciphertext window
  per body, however large the file or part.
- **A rewind never reuses a nonce.** botocore reads a body twice over plain ``http://`` (to
  hash, then to send) and again when it retries; a rewind to the start re-encrypts the same
  windows, and the :class:`~client.stream.Encryptor`'s ledger releases a repeated window
  only if it comes out byte-identical (else :class:`~client.errors.SegmentReuse`).
- **A file that changes is not stored.** One that shrinks or grows
  (:class:`~client.errors.PlaintextLengthMismatch`), or whose size, modification or change
  time differs from when the upload started (:class:`~client.errors.SourceChanged`), fails
  the body before the last bytes of its part leave.
- **A failure ends the request as itself.** Any failure, or the upload's ``cancel`` event,
  ends the request with :class:`BodyStopped` (which botocore passes through unretried);
  :func:`body_failures` then raises the body's own failure in its place.

How an object is uploaded (one PutObject or parts, retries, abort) is
:mod:`client.transfer`'s, as is the rest of the story of nonces and changing files.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import Any

from client.errors import PlaintextLengthMismatch, SourceChanged
from client.format import TAG_LEN
from client.parts import PartPlan
from client.progress import Progress
from client.stream import Encryptor

__all__ = [
    "WINDOW",
    "BodyStopped",
    "EncryptingBody",
    "UploadCancelled",
    "UploadSource",
    "body_failures",
]

#: Plaintext bytes encrypted per step of a single PUT (a multiple of every allowed segment size).
WINDOW = 8 * 1024 * 1024


class UploadSource:
    """The file being uploaded: read at absolute offsets (safe from several threads at once),
    and remembered as it was when the upload started (inode, size, mtime, ctime)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        try:
            self._fd: int | None = raw.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None
        self._lock = threading.Lock()
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, ...] | None:
        if self._fd is None:
            return None
        st = os.fstat(self._fd)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @property
    def size(self) -> int | None:
        return None if self._stamp is None else self._stamp[2]

    def readinto(self, view: memoryview, offset: int) -> int:
        if self._fd is not None:
            return os.preadv(self._fd, [view], offset)
        with self._lock:
            self._raw.seek(offset)
            return int(self._raw.readinto(view) or 0)

    def has_byte_at(self, offset: int) -> bool:
        return self.readinto(memoryview(bytearray(1)), offset) > 0

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChanged` if the file is not as it was when the upload began."""
        if self._stat() != self._stamp:
            raise SourceChanged(
                "the file was modified while it was being uploaded; nothing was stored"
            )


class BodyStopped(CancelledError):
    """Raised by a body's ``read`` to end the request it feeds; ``failure`` says why.

    A :class:`CancelledError` because botocore lets those through unchanged and unretried
    (any other exception from a body is wrapped and the request retried from the start): the
    caller takes the body's ``failure`` and raises that instead.
    """


class UploadCancelled(CancelledError):
    """The upload is being abandoned (another part failed, or Ctrl-C)."""


def _whole_object(encryptor: Encryptor) -> PartPlan:
    header = encryptor.header
    return PartPlan(1, 0, header.plaintext_length, 0, header.ciphertext_length)


class EncryptingBody(io.RawIOBase):
    """The ciphertext of a local file, or of one part of it, as a read-only file object.

    Produced window by window (``part`` defaults to the whole object; part 1 starts with the
    header). Seekable only to its start (a rewind re-encrypts, see the module docstring), to
    its current position, or to its end (how botocore measures a body). Memory: one plaintext
    window and one ciphertext window. Any failure, or ``cancel`` being set, ends the request
    with :class:`BodyStopped`; the reason stays in :attr:`failure` and every later read
    raises again.
    """

    def __init__(
        self,
        source: Any,
        encryptor: Encryptor,
        progress: Progress | None = None,
        *,
        part: PartPlan | None = None,
        window: int = WINDOW,
        cancel: threading.Event | None = None,
    ) -> None:
        self._source = source if isinstance(source, UploadSource) else UploadSource(source)
        self._enc = encryptor
        header = encryptor.header
        self._part = part if part is not None else _whole_object(encryptor)
        end = self._part.plaintext_offset + self._part.plaintext_length
        self._last_part = end == header.plaintext_length
        self._total = self._part.ciphertext_length
        # Whole segments per window (every window size is a multiple of every allowed segment
        # size), so each window is sealed on its own and a rewind repeats exactly its ranges.
        segments = max(1, -(-self._part.plaintext_length // header.segment_size))
        self._window = min(window, segments * header.segment_size)
        self._plain = bytearray(self._window)
        self._sealed = bytearray(self._window + TAG_LEN * (self._window // header.segment_size))
        self._progress = progress
        self._rewind_restarts = part is None
        self._cancel = cancel
        self.failure: BaseException | None = None
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
            if self._progress is not None:
                if self._rewind_restarts:
                    self._progress.restart()
                else:
                    self._progress.update(-self._pos)
            self._start_pass()
        elif target == self._total:
            self._pos, self._pending = target, memoryview(b"")
            self._windows = iter(())
        else:
            raise io.UnsupportedOperation("an encrypting body can only rewind to its start")
        return target

    def _read_plain(self, offset: int, n: int) -> memoryview:
        view = memoryview(self._plain)[:n]
        got = 0
        while got < n:
            count = self._source.readinto(view[got:], offset + got)
            if not count:
                raise PlaintextLengthMismatch(
                    "the file shrank while it was being uploaded; nothing was stored"
                )
            got += count
        return view

    def _generate(self) -> Iterator[memoryview]:
        enc = self._enc
        header = enc.header
        part = self._part
        if part.number == 1:
            yield memoryview(enc.header_bytes)
        out = memoryview(self._sealed)
        if header.plaintext_length == 0:
            written = enc.encrypt_segments_into(0, b"", out)
            self._source.check_unchanged()
            yield out[:written]
            return
        offset, end = part.plaintext_offset, part.plaintext_offset + part.plaintext_length
        while offset < end:
            n = min(self._window, end - offset)
            plain = self._read_plain(offset, n)
            final = offset + n == end
            if final and self._last_part and self._source.has_byte_at(end):
                raise PlaintextLengthMismatch(
                    "the file grew while it was being uploaded; nothing was stored"
                )
            written = enc.encrypt_segments_into(offset >> header.seg_log2, plain, out)
            if final:
                # Before the part's last bytes leave: a file modified anywhere since the
                # upload began (even in windows already sent) is not stored.
                self._source.check_unchanged()
            yield out[:written]
            offset += n

    def readinto(self, buffer: Any) -> int:
        if self.failure is None and self._cancel is not None and self._cancel.is_set():
            self.failure = UploadCancelled("the upload is being aborted")
        if self.failure is not None:
            raise BodyStopped(str(self.failure))
        target = memoryview(buffer).cast("B")
        try:
            while not self._pending:
                nxt = next(self._windows, None)
                if nxt is None:
                    return 0
                self._pending = nxt
        except Exception as exc:
            self.failure = exc
            raise BodyStopped(str(exc)) from exc
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        if self._progress is not None:
            self._progress.update(n)
        return n


@contextlib.contextmanager
def body_failures(body: EncryptingBody) -> Iterator[None]:
    """Raise the body's own failure in place of whatever the request made of it."""
    try:
        yield
    except BaseException:
        if body.failure is not None:
            raise body.failure from None
        raise
