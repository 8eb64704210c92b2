"""Completing a multipart upload: the listed parts become one object version, in ONE
transaction.

The transaction first locks the bucket's settings and the upload row, so of a concurrent
Complete and Abort, or two Completes, exactly one wins. The stored parts of the version are the
chunks of the listed parts in order (``part_sizes`` records each chunk's length), the replica
rows are the pieces (``ok`` or ``pending``, the latter with a ``replicate`` job), erasure-coded
chunks get their ``parts`` rows, pieces of uploaded but unlisted parts go to ``garbage``, the
upload rows are deleted; the version is committed through ``actors.writes.commit_written``,
the commit every writer uses.

What the completed version records:

- ETag: ``hex(MD5(MD5(part 1) || ... || MD5(part N)))-N``, as S3 (``core.checksums``).
- ``upload_part_sizes``: each listed part's length, so GET ``?partNumber=N`` serves it.

A retried completion (its first answer was lost) finds the upload gone but its completion
remembered (``completed_uploads``, kept until the upload would have expired): with the same
part list it gets the same answer, and nothing is written again.
- ``sha256``: NULL. The object's SHA-256 would need every byte read back at completion (parts
  arrive in any order, concurrently; SHA-256 does not combine). Nothing reads the column for
  verification: readers and repairs check each stored piece against its replica row's
  SHA-256 and erasure-coded chunks against their ``parts`` row. A hash of the parts' hashes
  would be a different function under the same name, so the column says "unknown" instead.
- Checksum: with an algorithm, the COMPOSITE checksum S3 defines:
  ``base64(ALG(raw checksum of part 1 || ... || part N))-N``, type ``COMPOSITE``.
- Encrypted uploads: the assembled length must be the length part 1's BP1 header implies, or
  nothing becomes visible (InvalidEnvelope).
- Placement: the object is marked for the placement checker unless every listed part was
  placed under the policy version and placement settings in force at completion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from actors.data_path import DataPath
from actors.garbage import collect_garbage
from actors.uploads import MAX_MULTIPART_OBJECT_SIZE, MIN_PART_SIZE, upload_of
from actors.writes import commit_written, new_version_id
from core.checksums import composite_checksum, multipart_etag
from core.envelope import parse_bp1_header
from core.errors import (
    BadDigest,
    EntityTooLarge,
    EntityTooSmall,
    InvalidEnvelope,
    InvalidPart,
    InvalidRequest,
    NoSuchUpload,
)
from schema.audit import Caller
from schema.keys import Recipient
from schema.parts import ErasurePart
from schema.records import Bucket, NewReplica, NewVersion, WriteCondition
from schema.uploads import CompletedRecord, Upload, UploadedPart, UploadPiece

__all__ = [
    "CompletedUpload",
    "ListedPart",
    "assemble",
    "check_completable",
    "check_requested_checksums",
    "chosen_parts",
    "complete_upload",
    "parts_digest",
]


@dataclass(frozen=True)
class ListedPart:
    """One part a completion lists (a ``<Part>`` of the CompleteMultipartUpload document)."""

    part_number: int
    etag: str
    #: algorithm (lower case) -> base64 value, for each part checksum given.
    checksums: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CompletedUpload:
    """What a completion answers (the first one, or a retry of it)."""

    etag: str
    #: The new version's id; None for a null version (the answer names none).
    version_id: str | None
    #: (algorithm, COMPOSITE value) when the upload has an algorithm and every part its value.
    checksum: tuple[str, str] | None
    #: The committed version's row id; known to the first completion only (a retried one
    #: answers from what was remembered, which names the version by its id).
    version_pk: int | None = None


def _bare_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


def parts_digest(listed: Sequence[ListedPart]) -> str:
    """SHA-256 of a completion's part list (numbers and ETags, in order): a retried Complete
    is the same completion only if it names the same parts."""
    text = "\n".join(f"{p.part_number}:{_bare_etag(p.etag)}" for p in listed)
    return hashlib.sha256(text.encode()).hexdigest()


async def check_completable(
    ctx: DataPath, tenant_id: int, bucket: Bucket, key: str, upload_id: str
) -> None:
    """NoSuchUpload unless ``upload_id`` is an open upload of ``key`` or one whose completion
    is remembered (a retried Complete): checked before the completion document is read."""
    try:
        await upload_of(ctx, tenant_id, bucket, key, upload_id)
    except NoSuchUpload:
        async with ctx.store.db.connection() as conn:
            done = await ctx.store.uploads.completed(conn, upload_id, ctx.settings.upload_expiry_s)
        if done is None or (done.tenant_id, done.bucket_id, done.key) != (
            tenant_id,
            bucket.id,
            key,
        ):
            raise


async def _retried(
    ctx: DataPath,
    conn: asyncpg.Connection,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    upload_id: str,
    listed: Sequence[ListedPart],
) -> CompletedUpload | None:
    """The answer of an earlier completion of this upload with the same parts, if it is
    remembered (``completed_uploads``), else None (the upload is then unknown)."""
    done = await ctx.store.uploads.completed(conn, upload_id, ctx.settings.upload_expiry_s)
    if (
        done is None
        or done.tenant_id != tenant_id
        or done.bucket_id != bucket.id
        or done.key != key
        or done.parts_digest != parts_digest(listed)
    ):
        return None
    checksum = (
        (done.checksum_algorithm, done.checksum_value)
        if done.checksum_algorithm and done.checksum_value
        else None
    )
    return CompletedUpload(done.etag, done.version_id, checksum)


def chosen_parts(
    upload: Upload, listed: Sequence[ListedPart], stored: Mapping[int, UploadedPart]
) -> list[UploadedPart]:
    """The stored parts the completion lists, each checked: present, same ETag, same
    checksum, and at least ``MIN_PART_SIZE`` bytes unless it is the last."""
    chosen: list[UploadedPart] = []
    for index, item in enumerate(listed):
        part = stored.get(item.part_number)
        if part is None or part.etag != item.etag.lower():
            raise InvalidPart(
                f"Part {item.part_number} was not uploaded, or its ETag is not {item.etag!r}."
            )
        for algorithm, value in item.checksums:
            if algorithm != upload.checksum_algorithm:
                raise InvalidPart(
                    f"Part {item.part_number} lists a {algorithm.upper()} checksum, but the"
                    " upload was created with "
                    + (
                        f"the {upload.checksum_algorithm.upper()} checksum algorithm"
                        if upload.checksum_algorithm
                        else "no checksum algorithm"
                    )
                )
            if part.checksum_value is None or part.checksum_value != value:
                raise InvalidPart(
                    f"The {algorithm.upper()} checksum of part {item.part_number} does not match"
                    " the uploaded part's."
                )
        if index < len(listed) - 1 and part.size < MIN_PART_SIZE:
            raise EntityTooSmall(
                f"Part {item.part_number} has {part.size} bytes; every part but the last must"
                f" have at least {MIN_PART_SIZE} bytes."
            )
        chosen.append(part)
    return chosen


def check_requested_checksums(
    requested: Mapping[str, str], upload: Upload, composite: str | None
) -> None:
    """An object checksum sent with the completion (algorithm -> value, the
    ``x-amz-checksum-<alg>`` headers) must be the upload's algorithm and ours."""
    for algorithm, value in requested.items():
        name = f"x-amz-checksum-{algorithm}"
        if algorithm != upload.checksum_algorithm or composite is None:
            raise InvalidRequest(
                f"{name} does not name the checksum algorithm this upload was created with"
            )
        if value.strip().split("-", 1)[0] != composite.split("-", 1)[0]:
            raise BadDigest(f"The {name} you specified did not match the calculated checksum.")


def assemble(
    chosen: Sequence[UploadedPart], pieces: Sequence[UploadPiece]
) -> tuple[list[int], list[NewReplica], list[ErasurePart]]:
    """(stored part sizes, replica rows, erasure layout) of the object the chosen parts make:
    its stored parts are their chunks in order, numbered from 0 across all of them."""
    by_part: dict[int, list[UploadPiece]] = {}
    for piece in pieces:
        by_part.setdefault(piece.part_number, []).append(piece)
    kinds = {chunk.k > 0 for part in chosen for chunk in part.chunks}
    if len(kinds) > 1:
        raise InvalidRequest(
            "The parts were stored under different redundancy schemes (the upload's class was"
            " redefined meanwhile); upload them again"
        )
    sizes: list[int] = []
    replicas: list[NewReplica] = []
    layout: list[ErasurePart] = []
    base = 0
    for part in chosen:
        for index, chunk in enumerate(part.chunks):
            sizes.append(chunk.size)
            if chunk.k:
                layout.append(ErasurePart(base + index, chunk.size, chunk.sha256, chunk.k, chunk.m))
        held = by_part.get(part.part_number, [])
        if {p.chunk for p in held} != set(range(len(part.chunks))):
            raise RuntimeError("a part row without its pieces: never committed so")
        replicas.extend(
            NewReplica(
                backend_id=p.backend_id,
                locator=p.locator,
                part_number=base + p.chunk,
                size=p.size,
                sha256=p.sha256,
                status=p.status,
                shard_index=p.shard_index,
            )
            for p in held
        )
        base += len(part.chunks)
    return sizes, replicas, layout


def _check_bp1_length(chosen: Sequence[UploadedPart], size: int) -> None:
    first = chosen[0]
    if first.part_number != 1 or first.bp1_header is None:
        raise InvalidEnvelope(
            "an encrypted upload's object starts with part 1, which holds the BP1 header"
        )
    try:
        parse_bp1_header(first.bp1_header, size)
    except InvalidEnvelope as exc:
        raise InvalidEnvelope(f"the completed object is not the BP1 body: {exc}") from exc


async def complete_upload(
    ctx: DataPath,
    *,
    caller: Caller,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    upload_id: str,
    listed: Sequence[ListedPart],
    allow_plaintext: bool = False,
    condition: WriteCondition | None = None,
    declared_size: str | None = None,
    requested_checksums: Mapping[str, str] | None = None,
    recipients: Sequence[Recipient] = (),
    action: str = "CompleteMultipartUpload",
    region_lock: Collection[str] = (),
) -> CompletedUpload:
    """Turn the listed parts of the upload into the new version of ``key`` (see the module
    docstring). ``declared_size``: the object size the client expects (as it sent it);
    ``requested_checksums``: object checksums it sent (algorithm -> value); ``recipients``:
    further wraps of the data key, committed with the version (an import's); ``region_lock``:
    the import's lock its parts were placed under, recorded with the version."""
    async with ctx.store.db.transaction() as conn:
        # Bucket and tenant rows FOR SHARE, then the upload row FOR UPDATE: a concurrent
        # Complete, Abort, part commit or expiry of this upload waits, and then finds it gone.
        await ctx.policies.placement_settings(conn, bucket.id, lock=True)
        try:
            upload = await upload_of(ctx, tenant_id, bucket, key, upload_id, conn=conn, lock=True)
        except NoSuchUpload:
            retried = await _retried(ctx, conn, tenant_id, bucket, key, upload_id, listed)
            if retried is None:
                raise
            return retried
        stored = {p.part_number: p for p in await ctx.store.uploads.parts(conn, upload.id)}
        chosen = chosen_parts(upload, listed, stored)
        size = sum(p.size for p in chosen)
        if size > MAX_MULTIPART_OBJECT_SIZE:
            raise EntityTooLarge(
                f"The object would have {size} bytes; at most {MAX_MULTIPART_OBJECT_SIZE}."
            )
        if declared_size is not None and declared_size.strip() != str(size):
            raise InvalidRequest(
                f"x-amz-mp-object-size is {declared_size.strip()} but the listed parts hold"
                f" {size} bytes"
            )
        if upload.encrypted:
            _check_bp1_length(chosen, size)
        composite = None
        if upload.checksum_algorithm and all(p.checksum_value for p in chosen):
            composite = composite_checksum(
                upload.checksum_algorithm, [p.checksum_value or "" for p in chosen]
            )
        check_requested_checksums(requested_checksums or {}, upload, composite)
        pieces = await ctx.store.uploads.pieces(conn, upload.id)
        sizes, replicas, layout = assemble(chosen, pieces)
        unlisted = await ctx.store.uploads.discard(
            conn,
            upload.id,
            "multipart part not completed",
            keep_parts=[p.part_number for p in chosen],
        )
        await ctx.store.uploads.delete(conn, upload.id)
        new = NewVersion(
            tenant_id=tenant_id,
            bucket_id=bucket.id,
            key=key,
            version_id=new_version_id(),
            size=size,
            etag=multipart_etag([p.etag for p in chosen]),
            sha256=None,
            content_type=upload.content_type,
            user_metadata=upload.user_metadata,
            redundancy_class=upload.redundancy_class,
            part_size=ctx.settings.part_size,
            part_count=len(sizes),
            encrypted=upload.encrypted,
            wrapped_key=upload.wrapped_key,
            key_id=upload.key_id,
            key_version=upload.key_version,
            wrap_alg=upload.wrap_alg,
            content_id=upload.content_id,
            part_sizes=tuple(sizes),
            upload_part_sizes=tuple(p.size for p in chosen),
            checksum_algorithm=upload.checksum_algorithm if composite else None,
            checksum_value=composite,
            checksum_type="COMPOSITE" if composite else None,
            http_headers=upload.http_headers,
            # part 1's header, checked above against the completed object's length
            bp1_header=chosen[0].bp1_header if upload.encrypted else None,
        )
        version, superseded = await commit_written(
            ctx,
            conn,
            caller,
            bucket,
            new,
            replicas,
            layout,
            placed_under={p.placement for p in chosen},
            condition=condition,
            encryption_required=not allow_plaintext,
            action=action,
            detail=f"upload={upload.upload_id} parts={len(chosen)} unlisted_pieces={unlisted}",
            recipients=recipients,
            region_lock=region_lock,
        )
        checksum = (
            (upload.checksum_algorithm, composite)
            if upload.checksum_algorithm and composite
            else None
        )
        answer = CompletedUpload(
            version.etag,
            None if version.null_version else version.version_id,
            checksum,
            version_pk=version.id,
        )
        await ctx.store.uploads.remember_completed(
            conn,
            CompletedRecord(
                upload_id=upload.upload_id,
                tenant_id=tenant_id,
                bucket_id=bucket.id,
                key=key,
                parts_digest=parts_digest(listed),
                etag=answer.etag,
                version_id=answer.version_id,
                checksum_algorithm=checksum[0] if checksum else None,
                checksum_value=checksum[1] if checksum else None,
            ),
            upload.created_at or version.created_at,
            ctx.settings.upload_expiry_s,
        )
    await ctx.meta.invalidate_object(bucket.id, key)
    if superseded is not None or unlisted:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return answer
