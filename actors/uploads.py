"""Multipart uploads: create one, write a part, abort, and find an upload and its parts
(completing one is ``actors/upload_completion.py``). No HTTP here.

A part is written exactly like an object (``actors/writes.py``): placed by the upload's class
under the bucket's and tenant's rules, streamed into ``QuorumWrite``, cut into chunks of the
``part_size`` setting, every stored piece with its own SHA-256. One transaction then records
it (``schema/uploads.py``: ``upload_parts`` + ``upload_pieces``, replacing an earlier part with
the same number, whose pieces go to ``garbage``). Parts are ordered by when their write
started, not when it finished: a part re-sent while its first attempt still runs (a client
retry after a timeout) is kept even if the first attempt finishes later, since the client
completes with the ETag of the retry it saw acknowledged. Pieces of targets that were
skipped or still in flight are recorded ``pending``; stragglers that finish become ``ok``.
The part's ETag is its MD5; its checksum in the upload's algorithm (chosen at create) is
computed here.

Every part after the first goes to the backends of the first while they still form a valid
placement (``start_write``'s ``pinned``), so one backend set holds the whole object.

Encrypted uploads: the envelope comes with create (same rules as a single write); part 1 must
start with a structurally valid BP1 header (checked as part 1 streams, kept with the part);
the length it implies is checked at completion.

An upload is found only inside its tenant, bucket and key: anything else is
indistinguishable from an unknown upload (``NoSuchUpload``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import replace

import asyncpg

from actors.data_path import DataPath
from actors.garbage import collect_garbage, discard_write
from actors.quorum_writer import BodyChunk, QuorumWrite
from actors.writes import (
    CHANGED_WHILE_WRITTEN,
    bp1_checked,
    placement_fingerprint,
    require_envelope,
    resolve_class,
    run_write,
    start_write,
    written_pieces,
)
from core.checksums import Checksum, new_checksum
from core.envelope import (
    BP1_HEADER_SIZE,
    Envelope,
    ciphertext_length,
    envelope_columns,
    parse_bp1_header,
)
from core.errors import InvalidRequest, LimitExceeded, NoSuchUpload
from schema.audit import Caller
from schema.records import Bucket, ObjectVersion
from schema.uploads import Chunk, NewUpload, Upload, UploadedPart, UploadPiece

__all__ = [
    "MAX_MULTIPART_OBJECT_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "abort_upload",
    "check_bp1_structure",
    "check_part_source",
    "create_upload",
    "new_upload_id",
    "part_limit",
    "upload_of",
    "upload_parts",
    "uploads_page",
    "write_part",
]

log = logging.getLogger(__name__)

#: S3's limits: every part but the last at least 5 MiB, a part at most 5 GiB, an object at
#: most 5 TiB, at most 10,000 parts.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024**3
MAX_MULTIPART_OBJECT_SIZE = 5 * 1024**4
MAX_PARTS = 10_000


def new_upload_id() -> str:
    """Unguessable and time-ordered (nanoseconds first), so upload ids sort in initiation order:
    ListMultipartUploads lists one key's uploads by id, which is then their age."""
    return f"{time.time_ns():016x}{secrets.token_hex(16)}"


def part_limit(ctx: DataPath) -> int:
    """The largest part: S3's 5 GiB, or less when the operator lowered ``BP_MAX_OBJECT_SIZE``
    (a part is one request body, the memory that cap bounds), never below the 5 MiB minimum."""
    return min(MAX_PART_SIZE, max(ctx.settings.max_object_size, MIN_PART_SIZE))


async def upload_of(
    ctx: DataPath,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    upload_id: str,
    *,
    conn: asyncpg.Connection | None = None,
    lock: bool = False,
) -> Upload:
    """The upload ``upload_id`` names, or NoSuchUpload: unknown, finished, or another tenant's,
    bucket's or key's (indistinguishable from unknown). ``lock``: its row FOR UPDATE."""
    if conn is None:
        async with ctx.store.db.connection() as own:
            upload = await ctx.store.uploads.get(own, upload_id)
    else:
        upload = await ctx.store.uploads.get(conn, upload_id, lock=lock)
    if (
        upload is None
        or upload.tenant_id != tenant_id
        or upload.bucket_id != bucket.id
        or upload.key != key
    ):
        raise NoSuchUpload()
    return upload


# -- create ------------------------------------------------------------------------------------
async def _check_open_uploads(ctx: DataPath, conn: asyncpg.Connection, tenant_id: int) -> None:
    """Refuse a new upload when the tenant already has ``max_open_uploads`` open.

    Why ``503 SlowDown`` (``LimitExceeded``): S3 sets no limit on a tenant's open uploads, so
    there is no AWS code for it; MinIO and Ceph RGW answer their own resource limits with
    ``SlowDown`` (503) or similar throttling, and every SDK treats SlowDown as "back off and
    retry", which is right here: the tenant's uploads in flight complete, and abandoned ones
    are aborted by the upload expirer. A 4xx code no client knows would only be a hard
    failure. The message names the limit and how to free uploads."""
    count, own = await ctx.store.uploads.open_uploads(conn, tenant_id)
    limit = ctx.settings.max_open_uploads if own is None else own
    if 0 < limit <= count:
        raise LimitExceeded(
            f"This tenant has {limit} multipart uploads open, its limit: complete or abort"
            " some (ListMultipartUploads, AbortMultipartUpload) before starting more.",
            retry_after_s=5,
        )


async def create_upload(
    ctx: DataPath,
    *,
    caller: Caller,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    initiator: str,
    envelope: Envelope | None,
    allow_plaintext: bool = False,
    requested_class: str | None = None,
    checksum_algorithm: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
    http_headers: Mapping[str, str] | None = None,
    region_lock: Collection[str] = (),
) -> Upload:
    """Start an upload of ``key``: its class is chosen and placed now, so an impossible class
    or region lock fails here, not at the first part. Audited. ``region_lock``: an import's
    lock on top of the bucket's rules (give it to every ``write_part`` too)."""
    require_envelope(allow_plaintext, envelope)
    policy = await ctx.current_policy()
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, requested_class).redundancy_class
    await start_write(ctx, rc, settings, 0, region_lock=region_lock)
    new = NewUpload(
        upload_id=new_upload_id(),
        tenant_id=tenant_id,
        bucket_id=bucket.id,
        key=key,
        initiator=initiator,
        content_type=content_type,
        user_metadata=dict(user_metadata or {}),
        redundancy_class=rc.name,
        **envelope_columns(envelope),
        checksum_algorithm=checksum_algorithm,
        http_headers=dict(http_headers or {}),
    )
    async with ctx.store.db.transaction() as conn:
        await _check_open_uploads(ctx, conn, tenant_id)
        upload = await ctx.store.uploads.create(conn, new)
        await ctx.store.audit.append(
            conn,
            caller.entry(
                "CreateMultipartUpload",
                f"{bucket.name}/{key}",
                f"ok upload={upload.upload_id} class={rc.name}",
            ),
        )
    return upload


# -- writing a part ----------------------------------------------------------------------------
def check_bp1_structure(head: bytes) -> bytes:
    """The 112-byte BP1 header starting part 1, structurally checked (magic, version, suite,
    segment size, reserved byte). The length it implies is checked at completion."""
    if len(head) < BP1_HEADER_SIZE:
        parse_bp1_header(head, 0)  # raises: too short
    header = head[:BP1_HEADER_SIZE]
    seg_log2 = header[6]
    plaintext_length = int.from_bytes(header[72:80], "big")
    parse_bp1_header(header, ciphertext_length(plaintext_length, min(seg_log2, 64)))
    return header


async def _digesting(body: AsyncIterator[BodyChunk], digest: Checksum) -> AsyncIterator[BodyChunk]:
    """Pass the body through, feeding the upload's checksum."""
    async for chunk in body:
        digest.update(chunk)
        yield chunk


async def _settle_part(ctx: DataPath, write: QuorumWrite, pending: list[int]) -> None:
    """Pieces committed ``pending`` because their target was still writing: ``ok`` once it
    acknowledged every chunk (a failed one keeps ``pending``, and completion queues its job)."""
    live = set(write.live_backends())
    waiting = [b for b in pending if b in live]
    outcomes = await asyncio.gather(*(write.settle(b) for b in waiting))
    finished = [b for b, ok in zip(waiting, outcomes, strict=True) if ok]
    if not finished:
        return
    locators = write.locators()
    try:
        async with ctx.store.db.transaction() as conn:
            for backend_id in finished:
                await ctx.store.uploads.settle_pieces(
                    conn, backend_id, list(locators[backend_id].values())
                )
    except Exception:  # the pieces stay pending; completion's replication jobs finish them
        log.exception("could not record finished multipart pieces")


def check_part_source(upload: Upload, source: ObjectVersion) -> None:
    """A copied part must be what the upload holds: ciphertext of the same content (the
    envelope's content id) in an encrypted upload, plaintext in a plaintext one."""
    if source.encrypted != upload.encrypted:
        raise InvalidRequest(
            "The copy source is "
            + ("client-side encrypted" if source.encrypted else "not encrypted")
            + " but this multipart upload is "
            + ("encrypted" if upload.encrypted else "not encrypted")
            + ": the object would mix ciphertext and plaintext"
        )
    if (
        source.encrypted
        and upload.content_id
        and source.content_id
        and upload.content_id != source.content_id
    ):
        raise InvalidRequest(
            "The copy source is another encrypted version (another content id) than this"
            " upload's envelope names: its ciphertext could not be decrypted with it"
        )


async def write_part(
    ctx: DataPath,
    *,
    tenant_id: int,
    bucket: Bucket,
    upload: Upload,
    part_number: int,
    body: AsyncIterator[BodyChunk],
    length: int,
    region_lock: Collection[str] = (),
) -> UploadedPart:
    """Place, quorum-write and record one part (see the module docstring); ``region_lock``
    as given to ``create_upload``."""
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    rc = policy.classes.get(upload.redundancy_class)
    if rc is None:
        raise InvalidRequest(
            f"The upload's redundancy class {upload.redundancy_class} is no longer defined;"
            " abort the upload and start a new one"
        )
    async with ctx.store.db.connection() as conn:
        started_at = await ctx.store.uploads.clock(conn)
        settings = await ctx.policies.placement_settings(conn, bucket.id)
        pinned = await ctx.store.uploads.first_targets(conn, upload.id)
    write = await start_write(ctx, rc, settings, length, pinned=pinned, region_lock=region_lock)
    header: list[bytes] = []
    if upload.encrypted and part_number == 1:
        body = bp1_checked(body, lambda head: header.append(check_bp1_structure(head)))
    digest = None
    if upload.checksum_algorithm:
        digest = new_checksum(upload.checksum_algorithm)
        body = _digesting(body, digest)
    try:
        await run_write(write, body, length)
        complete = frozenset(write.complete_backends())
        k, m = write.erasure or (0, 0)
        pieces = [
            UploadPiece(
                part_number=part_number,
                chunk=r.part_number,
                backend_id=r.backend_id,
                shard_index=r.shard_index,
                locator=r.locator,
                size=r.size,
                sha256=r.sha256,
                status=r.status,
            )
            for r in written_pieces(write, complete)
        ]
        part = UploadedPart(
            part_number=part_number,
            size=length,
            etag=write.md5_hex,
            sha256=write.sha256,
            chunks=tuple(Chunk(p.size, p.sha256, k, m) for p in write.parts),
            checksum_value=base64.b64encode(digest.digest()).decode() if digest else None,
            bp1_header=header[0] if header else None,
            started_at=started_at,
        )
        placed = placement_fingerprint(settings, policy_version)
        async with ctx.store.db.transaction() as conn:
            # Bucket and tenant rows FOR SHARE before the upload row, as completion does.
            settings_now = await ctx.policies.placement_settings(conn, bucket.id, lock=True)
            await upload_of(
                ctx, tenant_id, bucket, upload.key, upload.upload_id, conn=conn, lock=True
            )
            now = placement_fingerprint(settings_now, await ctx.policies.current_version(conn))
            part = replace(part, placement=now if now == placed else CHANGED_WHILE_WRITTEN)
            replaced = await ctx.store.uploads.put_part(conn, upload.id, part, pieces)
    except BaseException:
        ctx.spawn(discard_write(ctx.store, ctx.registry, write.all_locators(), "failed part"))
        raise
    pending = [b for b in write.target_ids() if b not in complete]
    if pending:
        ctx.spawn(_settle_part(ctx, write, pending))
    if replaced:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return part


# -- abort, and reading uploads ----------------------------------------------------------------
async def abort_upload(
    ctx: DataPath, caller: Caller, tenant_id: int, bucket: Bucket, key: str, upload_id: str
) -> int:
    """Abort the upload: its rows go, its pieces to garbage (collected in the background).
    Audited; returns the number of pieces discarded."""
    async with ctx.store.db.transaction() as conn:
        upload = await upload_of(ctx, tenant_id, bucket, key, upload_id, conn=conn, lock=True)
        pieces = await ctx.store.uploads.abort(conn, upload.id, "multipart upload aborted")
        await ctx.store.audit.append(
            conn,
            caller.entry(
                "AbortMultipartUpload",
                f"{bucket.name}/{key}",
                f"ok upload={upload.upload_id} pieces={pieces}",
            ),
        )
    if pieces:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return pieces


async def upload_parts(
    ctx: DataPath,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    upload_id: str,
    *,
    after: int,
    limit: int,
) -> tuple[Upload, list[UploadedPart]]:
    """The upload and up to ``limit`` of its parts numbered above ``after``."""
    async with ctx.store.db.connection() as conn:
        upload = await upload_of(ctx, tenant_id, bucket, key, upload_id, conn=conn)
        parts = await ctx.store.uploads.parts(conn, upload.id, after=after, limit=limit)
    return upload, parts


async def uploads_page(
    ctx: DataPath,
    bucket: Bucket,
    *,
    prefix: str,
    after_key: str,
    after_upload_id: str | None,
    limit: int,
) -> list[Upload]:
    """Up to ``limit`` open uploads of the bucket under ``prefix``, by key then upload id,
    after ``after_key`` (``after_upload_id`` None) or after (``after_key``,
    ``after_upload_id``), as ``UploadRepository.listing`` reads them."""
    async with ctx.store.db.connection() as conn:
        return await ctx.store.uploads.listing(
            conn,
            bucket.id,
            prefix=prefix,
            after_key=after_key,
            after_upload_id=after_upload_id,
            limit=limit,
        )
