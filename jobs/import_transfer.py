"""Copying one source object into the federation: stream, check, encrypt, store.

What it keeps true:

- **Zero trust.** The plaintext exists only in this process, a window at a time: it is read
  from the source, hashed, and sealed in BP1 exactly as ``bp put`` seals it (the SDK's
  ``Encryptor``: fresh data key and content id, binding tenant/bucket/key, the data key
  wrapped for each of the run's recipients against the header). The primary recipient's wrap
  is the envelope; the others are committed with the version as ``bp share`` would add them
  (``object_recipients``). No private key is ever here.
- **Bounded memory.** One window (``WINDOW``, whole segments) of plaintext and its ciphertext
  per object in flight, whatever the object's size; below the write path, the quorum writer
  holds at most ``PARTS_IN_FLIGHT`` stored parts (``bytes_held``), so the next parts are read
  and sealed while the earlier ones are stored. Objects whose ciphertext exceeds
  ``settings.max_object_size`` go through the multipart data path part by part.
- **Nothing unverified becomes visible.** The stream is checked against the source before its
  last window is handed to the write path: size, MD5 = ETag for a single-part ETag, the
  multipart ETag rule for ``...-N`` (part size from ``HEAD ?partNumber=1``), and the source's
  full-object checksum when it has one. A mismatch raises ``VerificationFailed`` inside the
  write, which then commits nothing (its pieces go to garbage). So a committed version is a
  verified one, and its object row can move to ``verified`` with it.
- **A retry never duplicates.** Every version carries the run and the source ETag in its
  user metadata (``schema.imports.MARKER_RUN``/``MARKER_ETAG``); the worker looks for them
  (``ImportRepository.written_by_run``) before copying an object again.

The write is the normal one (``actors.writes.store_object``; for small objects its two
halves, ``write_object`` here and ``store_objects`` in the worker for a whole batch; or
``actors.uploads`` and ``actors.upload_completion``): class, placement, quorum, metadata and
audit (action ``ImportObject``, actor ``import:<run>``), with the run's class and region lock;
a placement the rules refuse is ``PolicyViolation`` naming the rule, and is never placed
elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from actors.data_path import DataPath
from actors.quorum_writer import BodyChunk
from actors.source_bucket import SourceBucket, SourceObject
from actors.upload_completion import ListedPart, complete_upload
from actors.uploads import MIN_PART_SIZE, abort_upload, create_upload, part_limit, write_part
from actors.writes import WrittenObject, store_object, write_object
from client.format import HEADER_LEN, TAG_LEN, ObjectBinding
from client.parts import PartPlan, choose_part_size, plan_parts
from client.recipient import PublicKeyRef
from client.stream import Encryptor
from client.wrap import WrappedKey, wrap_for_all
from core.checksums import Checksum, new_checksum
from core.envelope import Envelope
from core.errors import BulletproofError, IntegrityError, InvalidInput
from core.import_state import destination_key
from schema.audit import Caller
from schema.import_records import MARKER_ETAG, MARKER_RUN, ImportObject, ImportRun
from schema.keys import KeyRepository, Recipient
from schema.policies import PlacementSettings
from schema.records import Bucket

__all__ = [
    "BATCHED_MAX",
    "IMPORT_ACTION",
    "PARTS_IN_FLIGHT",
    "WINDOW",
    "ImportTarget",
    "SourceDigest",
    "VerificationFailed",
    "bytes_held",
    "load_target",
    "transfer_object",
    "write_small_object",
]

#: Plaintext bytes read, hashed and sealed per step (whole 64 KiB segments).
WINDOW = 1024 * 1024
#: The audit action of an imported object's write.
IMPORT_ACTION = "ImportObject"
#: Plaintext bytes per part of a multipart import, at most (the write path's part limit may
#: lower it).
MULTIPART_PART_SIZE = 64 * 1024 * 1024
#: Objects up to this size are written, then committed together with the others of their job
#: (``write_small_object``); larger ones commit alone as they finish (``transfer_object``).
BATCHED_MAX = WINDOW
#: Stored parts of one object written at once (the quorum writer's ``parts_in_flight``): the
#: source is read and sealed ahead while earlier parts are still on their way to the backends.
PARTS_IN_FLIGHT = 3


def bytes_held(size: int, part_size: int) -> int:
    """Bytes one transfer of a ``size``-byte object holds at most: one window of the stream
    and the stored parts in flight (what the worker reserves from its byte budget)."""
    return min(size, WINDOW) + min(size, PARTS_IN_FLIGHT * part_size)


class VerificationFailed(BulletproofError):
    """The bytes read from the source do not match what the listing said (size, ETag or the
    source's checksum): nothing was stored."""


@dataclass(frozen=True)
class ImportTarget:
    """Everything one run's transfers share: where objects land, how they are encrypted."""

    run_id: int
    tenant_id: int
    tenant_name: str
    bucket: Bucket
    source_prefix: str
    dest_prefix: str
    redundancy_class: str | None
    region_lock: tuple[str, ...]
    recipients: tuple[PublicKeyRef, ...]
    caller: Caller

    def key_of(self, source_key: str) -> str:
        return destination_key(source_key, self.source_prefix, self.dest_prefix)


async def load_target(
    ctx: DataPath, run: ImportRun, source_prefix: str, submission_id: str
) -> ImportTarget:
    """The run's destination bucket, tenant name (bound into every object) and recipients'
    public keys (as the tenant published them)."""
    async with ctx.store.db.connection() as conn:
        tenant = await ctx.store.tenants.get(conn, run.tenant_id)
        bucket = await ctx.store.buckets.get(conn, run.tenant_id, run.dest_bucket)
        published = {
            (k.key_id, k.key_version): k for k in await KeyRepository().published(conn, tenant.id)
        }
    recipients = []
    for ref in run.recipients:
        key = published.get((ref.key_id, ref.key_version))
        if key is None:
            raise InvalidInput(
                f"recipient {ref.key_id} v{ref.key_version} is not published by the tenant"
            )
        loaded: Any = load_pem_public_key(key.public_key_pem.encode())
        public = PublicKeyRef(loaded, ref.key_version)
        if public.key_id != ref.key_id:
            raise InvalidInput(f"published key {ref.key_id} does not match its public key")
        recipients.append(public)
    return ImportTarget(
        run_id=run.id,
        tenant_id=run.tenant_id,
        tenant_name=tenant.name,
        bucket=bucket,
        source_prefix=source_prefix,
        dest_prefix=run.dest_prefix,
        redundancy_class=run.redundancy_class,
        region_lock=run.region_lock,
        recipients=tuple(recipients),
        caller=Caller(f"import:{run.id}", submission_id, run.tenant_id),
    )


# -- checking the source's bytes ------------------------------------------------------------


class SourceDigest:
    """What the plaintext read must match: size, the ETag (single-part MD5 or the multipart
    rule over ``part_size`` parts) and the source's full-object checksum, if any. ETags of
    another form (e.g. SSE-KMS) are not checked; size and checksum still are."""

    def __init__(
        self,
        size: int,
        etag: str,
        *,
        part_size: int | None = None,
        checksum: tuple[str, str] | None = None,
    ) -> None:
        self.size = size
        self.etag = etag.strip('"').lower()
        self._read = 0
        base, _, count = self.etag.partition("-")
        self._single = len(base) == 32 and not count and _is_hex(base)
        self._parts = int(count) if count.isdigit() and _is_hex(base) else 0
        if self._parts and not part_size:
            raise InvalidInput("a multipart ETag needs the source's part size")
        self._part_size = part_size or 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._part_md5s: list[bytes] = []
        self._in_part = 0
        self._checksum: Checksum | None = None
        self._expected_checksum: str | None = None
        if checksum is not None:
            algorithm, value = checksum
            try:
                self._checksum = new_checksum(algorithm.lower())
                self._expected_checksum = value
            except BulletproofError:  # an algorithm this process cannot compute
                self._checksum = None

    @property
    def read_bytes(self) -> int:
        return self._read

    @property
    def checks(self) -> str:
        kinds = ["size"]
        if self._single:
            kinds.append("md5")
        if self._parts:
            kinds.append(f"multipart etag ({self._parts} parts)")
        if self._checksum is not None:
            kinds.append("checksum")
        return "+".join(kinds)

    def update(self, data: bytes) -> None:
        self._read += len(data)
        if self._checksum is not None:
            self._checksum.update(data)
        if self._single:
            self._md5.update(data)
        elif self._parts:
            view = memoryview(data)
            while view:
                room = self._part_size - self._in_part
                take = view[:room]
                self._md5.update(take)
                self._in_part += len(take)
                view = view[len(take) :]
                if self._in_part == self._part_size:
                    self._part_md5s.append(self._md5.digest())
                    self._md5 = hashlib.md5(usedforsecurity=False)
                    self._in_part = 0

    def check(self) -> None:
        """Raise ``VerificationFailed`` naming the first mismatch."""
        if self._read != self.size:
            raise VerificationFailed(f"read {self._read} bytes, the source listed {self.size}")
        if self._single and self._md5.hexdigest() != self.etag:
            raise VerificationFailed("MD5 of the bytes read differs from the source ETag")
        if self._parts:
            digests = list(self._part_md5s)
            if self._in_part or not digests:
                digests.append(self._md5.digest())
            combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
            if f"{combined}-{len(digests)}" != self.etag:
                raise VerificationFailed(
                    "the multipart ETag rule over the bytes read differs from the source ETag"
                )
        if self._checksum is not None:
            value = base64.b64encode(self._checksum.digest()).decode()
            if value != self._expected_checksum:
                raise VerificationFailed("the source's checksum differs from the bytes read")


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)


# -- the stream -----------------------------------------------------------------------------


class _SealedStream:
    """The source object read window by window, checked, and sealed into BP1 segments."""

    def __init__(
        self, source: SourceBucket, obj: SourceObject, digest: SourceDigest, encryptor: Encryptor
    ) -> None:
        self.source = source
        self.obj = obj
        self.digest = digest
        self.encryptor = encryptor
        self.segment = encryptor.header.segment_size
        self.window = max(self.segment, WINDOW - WINDOW % self.segment)

    def _step(self, first_segment: int, length: int, last: bool) -> bytearray:
        """Read ``length`` plaintext bytes, hash them, seal them (in a worker thread: the
        reads block and AES-GCM and MD5 release the GIL)."""
        data = self.source.read(self.obj, length)
        if len(data) != length:
            raise VerificationFailed(
                f"the source body ended after {self.digest.read_bytes + len(data)} of"
                f" {self.digest.size} bytes"
            )
        self.digest.update(data)
        if last:
            if self.source.read(self.obj, 1):
                raise VerificationFailed(f"the source body is longer than {self.digest.size}")
            self.digest.check()  # before the final window is released: nothing unverified
        return self.encryptor.encrypt_segments(first_segment, data)  # handed on, not copied

    async def ciphertext(
        self, offset: int, length: int, *, header: bool
    ) -> AsyncIterator[BodyChunk]:
        """The ciphertext of plaintext ``[offset, offset + length)`` (whole segments, or up to
        the object's end), preceded by the header for part 1 / a single PUT."""
        if header:
            yield self.encryptor.header_bytes
        total = self.encryptor.header.plaintext_length
        end = offset + length
        position = offset
        while True:
            step = min(self.window, end - position)
            last = position + step >= total
            yield await asyncio.to_thread(self._step, position // self.segment, step, last)
            position += step
            if position >= end:
                return


def _multipart_part_size(ctx: DataPath, plaintext_length: int, seg_log2: int) -> int:
    """Plaintext bytes per part: whole segments whose ciphertext fits the part limit."""
    segment = 1 << seg_log2
    fit = (part_limit(ctx) - HEADER_LEN) // (segment + TAG_LEN) * segment
    wanted = max(MIN_PART_SIZE, min(MULTIPART_PART_SIZE, fit))
    return choose_part_size(plaintext_length, wanted - wanted % segment, seg_log2)


@dataclass(frozen=True)
class _Transfer:
    """One object opened at the source and ready to stream, sealed, into the write path."""

    key: str
    stream: _SealedStream
    envelope: Envelope
    others: list[Recipient]
    marker: dict[str, str]
    length: int  # ciphertext bytes


@contextlib.asynccontextmanager
async def _opened(
    source: SourceBucket, target: ImportTarget, obj: ImportObject
) -> AsyncIterator[_Transfer]:
    """Open ``obj`` at the source (``If-Match`` its listed ETag), check its length, and set up
    its sealing (fresh data key wrapped for the run's recipients); closed on the way out."""
    key = target.key_of(obj.key)
    part_size = None
    if "-" in obj.etag:
        part_size = await asyncio.to_thread(source.first_part_size, obj.key, obj.etag)
    opened = await asyncio.to_thread(source.open_object, obj.key, obj.etag, checksum=obj.checksum)
    try:
        if opened.length != obj.size:
            raise VerificationFailed(
                f"the source object has {opened.length} bytes, the listing said {obj.size}"
            )
        digest = SourceDigest(obj.size, obj.etag, part_size=part_size, checksum=opened.checksum)
        binding = ObjectBinding.new(target.tenant_name, target.bucket.name, key)
        encryptor = Encryptor(binding, obj.size)
        wrapped = wrap_for_all(encryptor.dek, target.recipients, encryptor.header_bytes)
        yield _Transfer(
            key=key,
            stream=_SealedStream(source, opened, digest, encryptor),
            envelope=_envelope(wrapped[0], binding.content_id),
            others=[Recipient(w.key_id, w.key_version, w.alg, w.to_bytes()) for w in wrapped[1:]],
            marker={MARKER_RUN: str(target.run_id), MARKER_ETAG: obj.etag},
            length=encryptor.header.ciphertext_length,
        )
    finally:
        opened.close()


async def transfer_object(
    ctx: DataPath, source: SourceBucket, target: ImportTarget, obj: ImportObject
) -> int:
    """Copy ``obj`` (a manifest row) to its destination key, encrypted and verified (see the
    module docstring); returns the committed version's primary key."""
    async with _opened(source, target, obj) as t:
        if t.length <= ctx.settings.max_object_size:
            version = await store_object(
                ctx,
                caller=target.caller,
                tenant_id=target.tenant_id,
                bucket=target.bucket,
                key=t.key,
                body=t.stream.ciphertext(0, obj.size, header=True),
                length=t.length,
                envelope=t.envelope,
                requested_class=target.redundancy_class,
                user_metadata=t.marker,
                action=IMPORT_ACTION,
                region_lock=target.region_lock,
                recipients=t.others,
                parts_in_flight=PARTS_IN_FLIGHT,
            )
            return version.id
        return await _multipart(ctx, target, t.key, t.stream, t.envelope, t.marker, t.others)


async def write_small_object(
    ctx: DataPath,
    source: SourceBucket,
    target: ImportTarget,
    obj: ImportObject,
    settings: PlacementSettings,
) -> WrittenObject:
    """``transfer_object`` of an object of at most ``BATCHED_MAX`` bytes without its commit:
    encrypted, verified and on its backends, but invisible until the worker commits it with
    the others of its job (``actors.writes.store_objects``: one transaction per batch instead
    of one per object). ``settings``: the bucket's placement settings, read once per batch."""
    if obj.size > BATCHED_MAX:
        raise InvalidInput(f"{obj.size} bytes is above the batched-commit size {BATCHED_MAX}")
    async with _opened(source, target, obj) as t:
        return await write_object(
            ctx,
            caller=target.caller,
            tenant_id=target.tenant_id,
            bucket=target.bucket,
            key=t.key,
            body=t.stream.ciphertext(0, obj.size, header=True),
            length=t.length,
            envelope=t.envelope,
            requested_class=target.redundancy_class,
            user_metadata=t.marker,
            action=IMPORT_ACTION,
            region_lock=target.region_lock,
            recipients=t.others,
            settings=settings,
        )


def _envelope(wrapped: WrappedKey, content_id: bytes) -> Envelope:
    return Envelope(
        wrapped_key=wrapped.to_bytes(),
        key_id=wrapped.key_id,
        key_version=wrapped.key_version,
        wrap_alg=wrapped.alg,
        content_id=content_id.hex(),
    )


async def _multipart(
    ctx: DataPath,
    target: ImportTarget,
    key: str,
    stream: _SealedStream,
    envelope: Envelope,
    marker: dict[str, str],
    others: Sequence[Recipient],
) -> int:
    """A large object through the multipart data path, one part after another (memory: one
    window); aborted on any failure."""
    header = stream.encryptor.header
    size = _multipart_part_size(ctx, header.plaintext_length, header.seg_log2)
    plans: list[PartPlan] = plan_parts(header.plaintext_length, size, header.seg_log2)
    upload = await create_upload(
        ctx,
        caller=target.caller,
        tenant_id=target.tenant_id,
        bucket=target.bucket,
        key=key,
        initiator=target.caller.actor,
        envelope=envelope,
        requested_class=target.redundancy_class,
        user_metadata=marker,
        region_lock=target.region_lock,
    )
    try:
        listed = []
        for plan in plans:
            part = await write_part(
                ctx,
                tenant_id=target.tenant_id,
                bucket=target.bucket,
                upload=upload,
                part_number=plan.number,
                body=stream.ciphertext(
                    plan.plaintext_offset, plan.plaintext_length, header=plan.number == 1
                ),
                length=plan.ciphertext_length,
                region_lock=target.region_lock,
            )
            listed.append(ListedPart(plan.number, part.etag))
        completed = await complete_upload(
            ctx,
            caller=target.caller,
            tenant_id=target.tenant_id,
            bucket=target.bucket,
            key=key,
            upload_id=upload.upload_id,
            listed=listed,
            recipients=others,
            action=IMPORT_ACTION,
            region_lock=target.region_lock,
        )
    except BaseException:
        # If the abort fails too, the upload expirer collects it; the original error matters.
        with contextlib.suppress(Exception):
            await abort_upload(
                ctx, target.caller, target.tenant_id, target.bucket, key, upload.upload_id
            )
        raise
    if completed.version_pk is None:  # only a retried completion lacks it; this is the first
        raise IntegrityError(f"completing the upload of {key!r} named no new version")
    return completed.version_pk
