"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts and
ListMultipartUploads.

A part is written exactly like an object (``object_put``): placed by the upload's class under the
bucket's and tenant's rules, streamed through the same integrity checks into ``QuorumWrite``,
cut into chunks of the ``part_size`` setting, every stored piece with its own SHA-256. One
transaction then records it (``schema/uploads.py``: ``upload_parts`` + ``upload_pieces``,
replacing an earlier part with the same number, whose pieces go to ``garbage``). Pieces of
targets that were skipped or still in flight are recorded ``pending``; stragglers that finish
become ``ok``. The part's ETag is its MD5; its checksum in the upload's algorithm
(``x-amz-checksum-algorithm`` at Create) is computed here and, when the client sent it too,
verified by ``payload()``.

Complete turns the listed parts into one object version in ONE transaction that first locks
the bucket's settings and the upload row (so of a concurrent Complete and Abort, or two
Completes, exactly one wins): the stored parts of the version are the chunks of the listed parts
in order (``part_sizes`` records each chunk's length), the replica rows are the pieces (``ok``
or ``pending``, the latter with a ``replicate`` job), erasure-coded chunks get their ``parts``
rows, pieces of uploaded but unlisted parts go to ``garbage``, the upload rows are deleted; the
version is committed through ``object_put.commit_written``, the function PutObject uses.

What the completed version records:

- ETag: ``hex(MD5(MD5(part 1) || ... || MD5(part N)))-N``, as S3.
- ``sha256``: NULL. The object's SHA-256 would need every byte read back at Complete (parts
  arrive in any order, concurrently; SHA-256 does not combine). Nothing reads the column for
  verification: readers and repairs check each stored piece against its replica row's
  SHA-256 and erasure-coded chunks against their ``parts`` row. A hash of the parts' hashes
  would be a different function under the same name, so the column says "unknown" instead.
- Checksum: with an algorithm, the COMPOSITE checksum S3 defines:
  ``base64(ALG(raw checksum of part 1 || ... || part N))-N``, type ``COMPOSITE``.
  ``FULL_OBJECT`` multipart checksums are not offered (501 at Create).
- Encrypted uploads: the envelope comes with Create (same rules as PutObject); part 1 must start
  with a structurally valid BP1 header (checked when part 1 is uploaded, kept with the part),
  and at Complete the assembled length must be the length that header implies, or nothing
  becomes visible (InvalidRequest).
- Placement: the object is marked for the placement checker unless every listed part was
  placed under the policy version and placement settings in force at Complete.

Abandoned uploads are aborted by the ``upload_expirer`` worker (``jobs/upload_expirer.py``)
after ``upload_expiry_s``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import asyncpg
from fastapi import Response

from actors.garbage import collect_garbage, discard_write
from actors.quorum_writer import QuorumWrite
from core.envelope import (
    BP1_HEADER_SIZE,
    ciphertext_length,
    envelope_columns,
    parse_bp1_header,
)
from core.errors import InvalidEnvelope
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.body import declared_length, payload, read_small_body
from gateway.s3.call import S3Call
from gateway.s3.chunked import _new_checksum, supported_checksums
from gateway.s3.handlers.copy import (
    check_copy_source_conditions,
    copy_source_version,
    refuse_unbound_copy,
)
from gateway.s3.handlers.list import _past_prefix
from gateway.s3.handlers.object_put import (
    CHANGED_WHILE_WRITTEN,
    commit_written,
    new_version_id,
    object_metadata,
    placement_fingerprint,
    redundancy_class_for,
    require_envelope,
    resolve_class,
    run_write,
    start_write,
    version_headers,
    write_condition,
    written_pieces,
)
from gateway.s3.operations import (
    AbortMultipartUpload,
    CompleteMultipartUpload,
    CreateMultipartUpload,
    ListMultipartUploads,
    ListParts,
    UploadPart,
    UploadPartCopy,
)
from gateway.s3.stored_headers import stored_headers
from schema.audit import AuditEntry
from schema.parts import ErasurePart
from schema.records import NewReplica, NewVersion
from schema.uploads import Chunk, NewUpload, Upload, UploadedPart, UploadPiece

__all__ = [
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "CompletedPart",
    "abort_multipart_upload",
    "complete_multipart_upload",
    "composite_checksum",
    "create_multipart_upload",
    "list_multipart_uploads",
    "list_parts",
    "multipart_etag",
    "new_upload_id",
    "parse_complete_document",
    "upload_part",
    "upload_part_copy",
]

log = logging.getLogger(__name__)

#: S3's limits: every part but the last at least 5 MiB, a part at most 5 GiB, an object at
#: most 5 TiB, at most 10,000 parts.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024**3
MAX_MULTIPART_OBJECT_SIZE = 5 * 1024**4
MAX_PARTS = 10_000
_LISTING_BATCH = 1000
_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def new_upload_id() -> str:
    """Unguessable and time-ordered (nanoseconds first), so upload ids sort in initiation order:
    ListMultipartUploads lists one key's uploads by id, which is then their age."""
    return f"{time.time_ns():016x}{secrets.token_hex(16)}"


def multipart_etag(part_etags: Sequence[str]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, then ``-<count>``."""
    digest = hashlib.md5()  # noqa: S324 - the S3 ETag, not security
    for etag in part_etags:
        digest.update(bytes.fromhex(etag))
    return f"{digest.hexdigest()}-{len(part_etags)}"


def composite_checksum(algorithm: str, part_values: Sequence[str]) -> str:
    """S3's COMPOSITE checksum: the algorithm over the parts' raw checksums, base64, ``-N``."""
    digest = _new_checksum(f"x-amz-checksum-{algorithm}")
    for value in part_values:
        digest.update(base64.b64decode(value))
    return f"{base64.b64encode(digest.digest()).decode()}-{len(part_values)}"


def _resource(bucket: str, key: str) -> str:
    return f"/{bucket}/{key}"


async def _upload_of(
    ctx: GatewayContext,
    auth: Authorized,
    upload_id: str,
    key: str,
    *,
    conn: asyncpg.Connection | None = None,
    lock: bool = False,
) -> Upload:
    """The upload this request names, or NoSuchUpload: unknown, finished, or another tenant's,
    bucket's or key's (indistinguishable from unknown)."""
    bucket = auth.bucket
    assert bucket is not None
    if conn is None:
        async with ctx.store.db.connection() as own:
            upload = await ctx.store.uploads.get(own, upload_id)
    else:
        upload = await ctx.store.uploads.get(conn, upload_id, lock=lock)
    if (
        upload is None
        or upload.tenant_id != auth.principal.tenant_id
        or upload.bucket_id != bucket.id
        or upload.key != key
    ):
        raise s3e.NoSuchUpload(resource=_resource(bucket.name, key))
    return upload


# -- CreateMultipartUpload ---------------------------------------------------------------------
def _checksum_algorithm(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("x-amz-checksum-algorithm")
    kind = (headers.get("x-amz-checksum-type") or "").strip().upper()
    if kind not in ("", "COMPOSITE"):
        if kind == "FULL_OBJECT":
            raise s3e.NotImplemented(
                "FULL_OBJECT checksums of multipart uploads are not supported; use COMPOSITE"
            )
        raise s3e.InvalidRequest(f"Unknown x-amz-checksum-type {kind!r}")
    if raw is None or not raw.strip():
        return None
    algorithm = raw.strip().lower()
    if algorithm not in supported_checksums():
        raise s3e.InvalidRequest(
            f"Checksum algorithm {raw.strip()!r} is not supported by this gateway; use one of: "
            + ", ".join(sorted(a.upper() for a in supported_checksums()))
        )
    return algorithm


async def create_multipart_upload(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, CreateMultipartUpload) and auth.bucket is not None
    bucket, principal = auth.bucket, auth.principal
    envelope, meta = object_metadata(call.headers)
    require_envelope(auth, envelope)
    algorithm = _checksum_algorithm(call.headers)
    requested = redundancy_class_for(ctx, call.headers, bucket)
    policy = await ctx.current_policy()
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, requested.name if requested else None).redundancy_class
    # An impossible class or region lock fails now, not at the first part.
    await start_write(ctx, rc, settings, 0)
    new = NewUpload(
        upload_id=new_upload_id(),
        tenant_id=principal.tenant_id,
        bucket_id=bucket.id,
        key=op.key,
        initiator=principal.access_key_id,
        content_type=call.headers.get("content-type"),
        user_metadata=meta,
        redundancy_class=rc.name,
        **envelope_columns(envelope),
        checksum_algorithm=algorithm,
        http_headers=stored_headers(call.headers),
    )
    async with ctx.store.db.transaction() as conn:
        upload = await ctx.store.uploads.create(conn, new)
        await ctx.store.audit.append(
            conn,
            AuditEntry(
                actor=principal.access_key_id,
                action="CreateMultipartUpload",
                resource=f"{bucket.name}/{op.key}",
                request_id=call.request_id,
                result=f"ok upload={upload.upload_id} class={rc.name}",
                tenant_id=principal.tenant_id,
            ),
        )
    headers = {}
    if algorithm:
        headers["x-amz-checksum-algorithm"] = algorithm.upper()
        headers["x-amz-checksum-type"] = "COMPOSITE"
    return Response(
        xml.initiate_multipart_upload_document(bucket.name, op.key, upload.upload_id),
        media_type="application/xml",
        headers=headers,
    )


# -- writing a part ----------------------------------------------------------------------------
def _check_bp1_structure(head: bytes) -> bytes:
    """The 112-byte BP1 header starting part 1, structurally checked (magic, version, suite,
    segment size, reserved byte). The length it implies is checked at Complete."""
    if len(head) < BP1_HEADER_SIZE:
        parse_bp1_header(head, 0)  # raises: too short
    header = head[:BP1_HEADER_SIZE]
    seg_log2 = header[6]
    plaintext_length = int.from_bytes(header[72:80], "big")
    parse_bp1_header(header, ciphertext_length(plaintext_length, min(seg_log2, 64)))
    return header


async def _bp1_captured(body: AsyncIterator[bytes], box: list[bytes]) -> AsyncIterator[bytes]:
    """Pass part 1 of an encrypted upload through once its first 112 bytes are a BP1 header;
    the header lands in ``box``."""
    head = bytearray()
    async for chunk in body:
        if box:
            yield chunk
            continue
        head += chunk
        if len(head) >= BP1_HEADER_SIZE:
            box.append(_check_bp1_structure(bytes(head)))
            yield bytes(head)
    if not box:
        _check_bp1_structure(bytes(head))


async def _digesting(body: AsyncIterator[bytes], digest: Any) -> AsyncIterator[bytes]:
    """Pass the body through, feeding the upload's checksum."""
    async for chunk in body:
        digest.update(chunk)
        yield chunk


async def _settle_part(ctx: GatewayContext, write: QuorumWrite, pending: list[int]) -> None:
    """Pieces committed ``pending`` because their target was still writing: ``ok`` once it
    acknowledged every chunk (a failed one keeps ``pending``, and Complete queues its job)."""
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
    except Exception:  # the pieces stay pending; Complete's replication jobs finish them
        log.exception("could not record finished multipart pieces")


async def _write_part(
    ctx: GatewayContext,
    auth: Authorized,
    upload: Upload,
    part_number: int,
    body: AsyncIterator[bytes],
    length: int,
) -> UploadedPart:
    """Place, quorum-write and record one part (see the module docstring)."""
    bucket = auth.bucket
    assert bucket is not None
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    rc = policy.classes.get(upload.redundancy_class)
    if rc is None:
        raise s3e.InvalidRequest(
            f"The upload's redundancy class {upload.redundancy_class} is no longer defined;"
            " abort the upload and start a new one"
        )
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
        pinned = await ctx.store.uploads.first_targets(conn, upload.id)
    write = await start_write(ctx, rc, settings, length, pinned=pinned)
    header: list[bytes] = []
    if upload.encrypted and part_number == 1:
        body = _bp1_captured(body, header)
    digest = None
    if upload.checksum_algorithm:
        digest = _new_checksum(f"x-amz-checksum-{upload.checksum_algorithm}")
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
        )
        placed = placement_fingerprint(settings, policy_version)
        async with ctx.store.db.transaction() as conn:
            # Bucket and tenant rows FOR SHARE before the upload row, as Complete does.
            settings_now = await ctx.policies.placement_settings(conn, bucket.id, lock=True)
            await _upload_of(ctx, auth, upload.upload_id, upload.key, conn=conn, lock=True)
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


def _part_limit(ctx: GatewayContext) -> int:
    """The largest part: S3's 5 GiB, or less when the operator lowered ``BP_MAX_OBJECT_SIZE``
    (a part is one request body, the memory that cap bounds), never below the 5 MiB minimum."""
    return min(MAX_PART_SIZE, max(ctx.settings.max_object_size, MIN_PART_SIZE))


def _part_headers(upload: Upload, part: UploadedPart) -> dict[str, str]:
    headers = {"ETag": f'"{part.etag}"'}
    if upload.checksum_algorithm and part.checksum_value:
        headers[f"x-amz-checksum-{upload.checksum_algorithm}"] = part.checksum_value
    return headers


async def upload_part(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, UploadPart) and auth.bucket is not None
    upload = await _upload_of(ctx, auth, op.upload_id, op.key)
    length = declared_length(auth.principal.verified, call.headers)
    limit = _part_limit(ctx)
    if length > limit:
        raise s3e.EntityTooLarge(
            f"Your proposed part of {length} bytes exceeds the maximum of {limit} bytes."
        )
    body = payload(call.body, auth.principal.verified, call.headers)
    part = await _write_part(ctx, auth, upload, op.part_number, body, length)
    return Response(status_code=200, headers=_part_headers(upload, part))


# -- UploadPartCopy ----------------------------------------------------------------------------
def _copy_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) inclusive of ``x-amz-copy-source-range``; the whole source without it."""
    if header is None:
        return 0, size - 1
    match = _COPY_RANGE.match(header.strip())
    if not match:
        raise s3e.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first"
            " and last are the zero-based offsets of the first and last bytes to copy"
        )
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last >= size:
        raise s3e.InvalidRange(
            f"The x-amz-copy-source-range {header.strip()} is not satisfiable (source size {size})"
        )
    return first, last


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def upload_part_copy(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, UploadPartCopy) and auth.bucket is not None
    assert auth.source_bucket is not None
    bucket = auth.bucket
    upload = await _upload_of(ctx, auth, op.upload_id, op.key)
    source = await copy_source_version(ctx, auth.source_bucket, op.source)
    check_copy_source_conditions(call.headers, source)
    same_name = auth.source_bucket.id == bucket.id and op.source.key == op.key
    refuse_unbound_copy(source, same_name)
    if source.encrypted != upload.encrypted:
        raise s3e.InvalidRequest(
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
        raise s3e.InvalidRequest(
            "The copy source is another encrypted version (another content id) than this"
            " upload's envelope names: its ciphertext could not be decrypted with it"
        )
    if source.size == 0 and op.range_header is None:
        first, last, body = 0, -1, _nothing()
    else:
        first, last = _copy_range(op.range_header, source.size)
        body = ctx.reader.stream(source, first, last)
    length = last - first + 1
    limit = _part_limit(ctx)
    if length > limit:
        raise s3e.EntityTooLarge(
            f"The part to copy has {length} bytes; a part holds at most {limit} bytes."
            " Use x-amz-copy-source-range to copy it in several parts."
        )
    part = await _write_part(ctx, auth, upload, op.part_number, body, length)
    checksum = (
        (upload.checksum_algorithm, part.checksum_value)
        if upload.checksum_algorithm and part.checksum_value
        else None
    )
    return Response(
        xml.copy_part_result_document(part.etag, datetime.now(UTC), checksum),
        media_type="application/xml",
        headers={"x-amz-copy-source-version-id": source.api_version_id},
    )


# -- CompleteMultipartUpload -------------------------------------------------------------------
@dataclass(frozen=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload document."""

    part_number: int
    etag: str
    #: algorithm (lower case) -> base64 value, for each ``Checksum<ALG>`` given.
    checksums: tuple[tuple[str, str], ...] = ()


def _checksum_algorithm_of(element_name: str) -> str | None:
    """``ChecksumCRC32`` -> ``crc32``; None for other elements (``ChecksumType`` too)."""
    if element_name.startswith("Checksum") and element_name != "ChecksumType":
        return element_name.removeprefix("Checksum").lower() or None
    return None


def parse_complete_document(body: bytes) -> list[CompletedPart]:
    """The parts a CompleteMultipartUpload lists, in document order. MalformedXML for a
    document that is not one (oversized, DTD/entities, wrong root, no part, bad numbers);
    InvalidPartOrder unless the part numbers ascend strictly."""
    root = xml.parse_xml(body)
    if xml.local_name(root) != "CompleteMultipartUpload":
        raise s3e.MalformedXML()
    parts: list[CompletedPart] = []
    for element in root:
        if xml.local_name(element) != "Part":
            continue
        number: int | None = None
        etag: str | None = None
        checksums: list[tuple[str, str]] = []
        for field in element:
            name = xml.local_name(field)
            text = (field.text or "").strip()
            if name == "PartNumber":
                if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PARTS:
                    raise s3e.MalformedXML("PartNumber must be an integer between 1 and 10000")
                number = int(text)
            elif name == "ETag":
                etag = text.strip('"')
            elif (algorithm := _checksum_algorithm_of(name)) is not None:
                checksums.append((algorithm, text))
        if number is None or etag is None:
            raise s3e.MalformedXML("Each Part needs a PartNumber and an ETag")
        parts.append(CompletedPart(number, etag, tuple(checksums)))
        if len(parts) > MAX_PARTS:
            raise s3e.MalformedXML(f"A multipart upload has at most {MAX_PARTS} parts")
    if not parts:
        raise s3e.MalformedXML("The XML you provided did not list any part.")
    for before, after in zip(parts, parts[1:], strict=False):
        if after.part_number <= before.part_number:
            raise s3e.InvalidPartOrder()
    return parts


def _chosen_parts(
    upload: Upload, listed: Sequence[CompletedPart], stored: Mapping[int, UploadedPart]
) -> list[UploadedPart]:
    """The stored parts the document lists, each checked: present, same ETag, same checksum,
    and at least ``MIN_PART_SIZE`` bytes unless it is the last."""
    chosen: list[UploadedPart] = []
    for index, item in enumerate(listed):
        part = stored.get(item.part_number)
        if part is None or part.etag != item.etag.lower():
            raise s3e.InvalidPart(
                f"Part {item.part_number} was not uploaded, or its ETag is not {item.etag!r}."
            )
        for algorithm, value in item.checksums:
            if algorithm != upload.checksum_algorithm:
                raise s3e.InvalidPart(
                    f"Part {item.part_number} lists a {algorithm.upper()} checksum, but the"
                    " upload was created with "
                    + (
                        f"the {upload.checksum_algorithm.upper()} checksum algorithm"
                        if upload.checksum_algorithm
                        else "no checksum algorithm"
                    )
                )
            if part.checksum_value is None or part.checksum_value != value:
                raise s3e.InvalidPart(
                    f"The {algorithm.upper()} checksum of part {item.part_number} does not match"
                    " the uploaded part's."
                )
        if index < len(listed) - 1 and part.size < MIN_PART_SIZE:
            raise s3e.EntityTooSmall(
                f"Part {item.part_number} has {part.size} bytes; every part but the last must"
                f" have at least {MIN_PART_SIZE} bytes."
            )
        chosen.append(part)
    return chosen


def _check_requested_checksums(
    headers: Mapping[str, str], upload: Upload, composite: str | None
) -> None:
    """An object checksum sent with Complete (``x-amz-checksum-<alg>``) must be ours."""
    for name, value in headers.items():
        if not name.startswith("x-amz-checksum-") or name in (
            "x-amz-checksum-algorithm",
            "x-amz-checksum-type",
        ):
            continue
        algorithm = name.removeprefix("x-amz-checksum-")
        if algorithm != upload.checksum_algorithm or composite is None:
            raise s3e.InvalidRequest(
                f"{name} does not name the checksum algorithm this upload was created with"
            )
        if value.strip().split("-", 1)[0] != composite.split("-", 1)[0]:
            raise s3e.BadDigest(f"The {name} you specified did not match the calculated checksum.")


def _assemble(
    chosen: Sequence[UploadedPart], pieces: Sequence[UploadPiece]
) -> tuple[list[int], list[NewReplica], list[ErasurePart]]:
    """(stored part sizes, replica rows, erasure layout) of the object the chosen parts make:
    its stored parts are their chunks in order, numbered from 0 across all of them."""
    by_part: dict[int, list[UploadPiece]] = {}
    for piece in pieces:
        by_part.setdefault(piece.part_number, []).append(piece)
    kinds = {chunk.k > 0 for part in chosen for chunk in part.chunks}
    if len(kinds) > 1:
        raise s3e.InvalidRequest(
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
            raise s3e.InternalError()  # a part row without its pieces: never committed so
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


def _without_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """Complete's x-amz-checksum-* headers describe the object, not the XML document."""
    return {k: v for k, v in headers.items() if not k.startswith("x-amz-checksum-")}


async def complete_multipart_upload(
    ctx: GatewayContext, auth: Authorized, call: S3Call
) -> Response:
    op = auth.op
    assert isinstance(op, CompleteMultipartUpload) and auth.bucket is not None
    bucket, principal = auth.bucket, auth.principal
    await _upload_of(ctx, auth, op.upload_id, op.key)
    document = await read_small_body(
        call.body, principal.verified, _without_checksums(call.headers), xml.MAX_XML_BYTES
    )
    listed = parse_complete_document(document)
    condition = write_condition(call.headers)
    object_size = call.headers.get("x-amz-mp-object-size")
    async with ctx.store.db.transaction() as conn:
        # Bucket and tenant rows FOR SHARE, then the upload row FOR UPDATE: a concurrent
        # Complete, Abort, part commit or expiry of this upload waits, and then finds it gone.
        await ctx.policies.placement_settings(conn, bucket.id, lock=True)
        upload = await _upload_of(ctx, auth, op.upload_id, op.key, conn=conn, lock=True)
        stored = {p.part_number: p for p in await ctx.store.uploads.parts(conn, upload.id)}
        chosen = _chosen_parts(upload, listed, stored)
        size = sum(p.size for p in chosen)
        if size > MAX_MULTIPART_OBJECT_SIZE:
            raise s3e.EntityTooLarge(
                f"The object would have {size} bytes; at most {MAX_MULTIPART_OBJECT_SIZE}."
            )
        if object_size is not None and object_size.strip() != str(size):
            raise s3e.InvalidRequest(
                f"x-amz-mp-object-size is {object_size.strip()} but the listed parts hold"
                f" {size} bytes"
            )
        if upload.encrypted:
            first = chosen[0]
            if first.part_number != 1 or first.bp1_header is None:
                raise InvalidEnvelope(
                    "an encrypted upload's object starts with part 1, which holds the BP1 header"
                )
            try:
                parse_bp1_header(first.bp1_header, size)
            except InvalidEnvelope as exc:
                raise InvalidEnvelope(f"the completed object is not the BP1 body: {exc}") from exc
        composite = None
        if upload.checksum_algorithm and all(p.checksum_value for p in chosen):
            composite = composite_checksum(
                upload.checksum_algorithm, [p.checksum_value or "" for p in chosen]
            )
        _check_requested_checksums(call.headers, upload, composite)
        pieces = await ctx.store.uploads.pieces(conn, upload.id)
        sizes, replicas, layout = _assemble(chosen, pieces)
        unlisted = await ctx.store.uploads.discard(
            conn,
            upload.id,
            "multipart part not completed",
            keep_parts=[p.part_number for p in chosen],
        )
        await ctx.store.uploads.delete(conn, upload.id)
        new = NewVersion(
            tenant_id=principal.tenant_id,
            bucket_id=bucket.id,
            key=op.key,
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
            checksum_algorithm=upload.checksum_algorithm if composite else None,
            checksum_value=composite,
            checksum_type="COMPOSITE" if composite else None,
            http_headers=upload.http_headers,
        )
        version, superseded = await commit_written(
            ctx,
            conn,
            auth,
            call,
            new,
            replicas,
            layout,
            placed_under={p.placement for p in chosen},
            condition=condition,
            action="CompleteMultipartUpload",
            detail=f"upload={upload.upload_id} parts={len(chosen)} unlisted_pieces={unlisted}",
        )
    await ctx.meta.invalidate_object(bucket.id, op.key)
    if superseded is not None or unlisted:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return Response(
        xml.complete_multipart_upload_document(
            location=f"{ctx.settings.endpoint}/{bucket.name}/{quote(op.key)}",
            bucket=bucket.name,
            key=op.key,
            etag=version.etag,
            checksum=(upload.checksum_algorithm, composite)
            if upload.checksum_algorithm and composite
            else None,
            checksum_type="COMPOSITE" if composite else None,
        ),
        media_type="application/xml",
        headers=version_headers(bucket, version),
    )


# -- AbortMultipartUpload ----------------------------------------------------------------------
async def abort_multipart_upload(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, AbortMultipartUpload) and auth.bucket is not None
    bucket, principal = auth.bucket, auth.principal
    async with ctx.store.db.transaction() as conn:
        upload = await _upload_of(ctx, auth, op.upload_id, op.key, conn=conn, lock=True)
        pieces = await ctx.store.uploads.abort(conn, upload.id, "multipart upload aborted")
        await ctx.store.audit.append(
            conn,
            AuditEntry(
                actor=principal.access_key_id,
                action="AbortMultipartUpload",
                resource=f"{bucket.name}/{op.key}",
                request_id=call.request_id,
                result=f"ok upload={upload.upload_id} pieces={pieces}",
                tenant_id=principal.tenant_id,
            ),
        )
    if pieces:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return Response(status_code=204)


# -- ListParts and ListMultipartUploads --------------------------------------------------------
async def list_parts(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListParts) and auth.bucket is not None
    async with ctx.store.db.connection() as conn:
        upload = await _upload_of(ctx, auth, op.upload_id, op.key, conn=conn)
        parts = await ctx.store.uploads.parts(
            conn, upload.id, after=op.part_number_marker, limit=op.max_parts + 1
        )
    truncated = len(parts) > op.max_parts
    parts = parts[: op.max_parts]
    return Response(
        xml.list_parts_document(
            bucket=auth.bucket.name,
            key=op.key,
            upload_id=upload.upload_id,
            owner=auth.principal.tenant_name,
            initiator=upload.initiator,
            part_number_marker=op.part_number_marker,
            next_part_number_marker=parts[-1].part_number if parts else None,
            max_parts=op.max_parts,
            is_truncated=truncated,
            checksum_algorithm=upload.checksum_algorithm,
            parts=[
                (p.part_number, p.created_at or datetime.now(UTC), p.etag, p.size, p.checksum_value)
                for p in parts
            ],
        ),
        media_type="application/xml",
    )


async def list_multipart_uploads(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListMultipartUploads) and auth.bucket is not None
    prefix, delimiter = op.prefix, op.delimiter
    # Where to start: after an upload (key and upload id), after every upload of a key, or
    # past a common prefix returned as NextKeyMarker.
    after_key = op.key_marker
    after_id: str | None = op.upload_id_marker if op.key_marker and op.upload_id_marker else None
    if (
        after_id is None
        and delimiter
        and after_key.endswith(delimiter)
        and after_key.startswith(prefix)
        and len(after_key) > len(prefix)
    ):
        after_key, after_id = _past_prefix(after_key), ""
    uploads: list[Upload] = []
    prefixes: list[str] = []
    truncated = False
    next_key: str | None = None
    next_id: str | None = None
    exhausted = op.max_uploads == 0
    async with ctx.store.db.connection() as conn:
        while not exhausted and not truncated:
            batch = await ctx.store.uploads.listing(
                conn,
                auth.bucket.id,
                prefix=prefix,
                after_key=after_key,
                after_upload_id=after_id,
                limit=_LISTING_BATCH,
            )
            exhausted = len(batch) < _LISTING_BATCH
            for upload in batch:
                if len(uploads) + len(prefixes) >= op.max_uploads:
                    truncated = True
                    break
                rest = upload.key[len(prefix) :]
                cut = rest.find(delimiter) if delimiter else -1
                if cut >= 0:
                    common = prefix + rest[: cut + len(delimiter)]
                    prefixes.append(common)
                    next_key, next_id = common, None
                    after_key, after_id = _past_prefix(common), ""
                    exhausted = False
                    break
                uploads.append(upload)
                next_key, next_id = upload.key, upload.upload_id
                after_key, after_id = upload.key, upload.upload_id
    return Response(
        xml.list_multipart_uploads_document(
            bucket=auth.bucket.name,
            owner=auth.principal.tenant_name,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=op.key_marker,
            upload_id_marker=op.upload_id_marker,
            next_key_marker=next_key if truncated else None,
            next_upload_id_marker=(next_id or "") if truncated else None,
            max_uploads=op.max_uploads,
            is_truncated=truncated,
            encoding_type=op.encoding_type,
            uploads=[
                (
                    u.key,
                    u.upload_id,
                    u.initiator,
                    u.created_at or datetime.now(UTC),
                    u.checksum_algorithm,
                )
                for u in uploads
            ],
            common_prefixes=prefixes,
        ),
        media_type="application/xml",
    )
