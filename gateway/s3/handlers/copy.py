"""CopyObject: a new version from an existing one, sharing its backend objects when allowed.

Sharing. When the target's class is the source's class and the backends holding the source
satisfy the target bucket's placement rules (region locks, jurisdiction lists, allow-list:
``actors.replica_repair.misplaced`` decides, the same rule the placement checker applies),
the copy is metadata only: its replica rows name the source's backend objects. Several rows
then reference one (backend, locator); the garbage collector deletes a backend object only
when no row references it any more (``actors/garbage.py``), so neither version's deletion
can take the other's bytes. The copy's transaction locks the source version's row
``FOR SHARE`` and re-reads its replica rows under that lock; every drop of a version locks its
row ``FOR UPDATE`` first, so a copy can never add a reference to an object whose last holder
is being dropped.

Otherwise (another class, a placement the target's rules forbid, a source not fully
replicated right now) the bytes are copied: read through the verified reader and written by
the ordinary write path (placement, quorum, one-transaction commit).

Encrypted objects: the ciphertext is bound to its tenant, bucket and key (docs/envelope.md),
so a copy to another bucket or key could never be decrypted; it is refused with a message
that says so. Copying an encrypted object onto itself (to change its metadata, or to restore
an older version) keeps the binding and is allowed; the envelope is always the source's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Response

from actors.garbage import collect_garbage
from actors.replica_repair import misplaced
from core.envelope import Envelope, envelope_columns
from core.errors import InvalidEnvelope
from core.policy import RedundancyClass
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.call import S3Call, user_metadata
from gateway.s3.conditions import write_condition
from gateway.s3.handlers.object_put import (
    commit_written,
    constraints_for,
    new_version_id,
    placement_fingerprint,
    redundancy_class_for,
    resolve_class,
    store_object,
)
from gateway.s3.operations import CopyObject, CopySource
from gateway.s3.preconditions import Outcome, evaluate
from gateway.s3.stored_headers import stored_headers
from schema.records import Bucket, NewReplica, NewVersion, ObjectVersion, WriteCondition

__all__ = [
    "MAX_COPY_BYTES",
    "check_copy_source_conditions",
    "refuse_unbound_copy",
    "copy_object",
    "copy_source_version",
]

log = logging.getLogger(__name__)

#: S3's limit for one CopyObject; larger objects are copied with UploadPartCopy.
MAX_COPY_BYTES = 5 * 1024**3


async def copy_source_version(
    ctx: GatewayContext, bucket: Bucket | None, source: CopySource
) -> ObjectVersion:
    """The version a copy reads: the latest, or the one ``versionId`` names. A delete marker
    named by version is an InvalidRequest (S3's answer); a missing one NoSuchKey/NoSuchVersion."""
    assert bucket is not None
    resource = f"/{bucket.name}/{source.key}"
    if source.version_id is None:
        version = await ctx.meta.latest(bucket.id, source.key)
        if version is None or version.is_delete_marker:
            raise s3e.NoSuchKey(resource=resource)
        return version
    async with ctx.store.db.connection() as conn:
        version = await ctx.store.versions.get_version(
            conn, bucket.id, source.key, source.version_id
        )
    if version is None:
        raise s3e.NoSuchVersion(resource=resource)
    if version.is_delete_marker:
        raise s3e.InvalidRequest(
            "The source of a copy request may not specifically refer to a delete marker by"
            " version id."
        )
    return version


_COPY_SOURCE_CONDITIONS = {
    "x-amz-copy-source-if-match": "if-match",
    "x-amz-copy-source-if-none-match": "if-none-match",
    "x-amz-copy-source-if-modified-since": "if-modified-since",
    "x-amz-copy-source-if-unmodified-since": "if-unmodified-since",
}


def check_copy_source_conditions(headers: Mapping[str, str], source: ObjectVersion) -> None:
    """``x-amz-copy-source-if-*``: the same rules as a conditional GET of the source, except
    that a copy has no 304: any condition that does not hold is 412 PreconditionFailed."""
    conditions = {
        plain: headers[name] for name, plain in _COPY_SOURCE_CONDITIONS.items() if name in headers
    }
    if conditions and evaluate(conditions, source.etag, source.created_at) is not Outcome.PROCEED:
        raise s3e.PreconditionFailed("a copy source precondition (x-amz-copy-source-if-*) failed")


@dataclass(frozen=True)
class _CopiedMetadata:
    user: dict[str, str]
    content_type: str | None
    http_headers: dict[str, str]
    replaced: bool


def refuse_unbound_copy(source: ObjectVersion, same_name: bool) -> None:
    """A client-side encrypted source may be copied (whole or as a part) only under its own
    bucket and key: its ciphertext is bound to that name (docs/envelope.md)."""
    if source.encrypted and not same_name:
        raise s3e.InvalidRequest(
            "The copy source is client-side encrypted and its ciphertext is bound to its bucket"
            " and key (docs/envelope.md): a copy under another name could never be decrypted."
            " Download, re-encrypt and upload it with `bp` instead."
        )


def _metadata(headers: Mapping[str, str], source: ObjectVersion) -> _CopiedMetadata:
    """User metadata, content type and stored headers as ``x-amz-metadata-directive`` says."""
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise s3e.InvalidArgument("Unknown metadata directive.")
    if directive == "COPY":
        return _CopiedMetadata(
            dict(source.user_metadata), source.content_type, dict(source.http_headers), False
        )
    meta = user_metadata(headers)
    reserved = sorted(k for k in meta if k.startswith("bp-"))
    if reserved:
        raise s3e.InvalidArgument(
            f"x-amz-meta-{reserved[0]}: the encryption envelope of a copy is its source's;"
            " x-amz-meta-bp-* is reserved (docs/envelope.md section 8)"
        )
    return _CopiedMetadata(meta, headers.get("content-type"), stored_headers(headers), True)


def _envelope(source: ObjectVersion) -> Envelope | None:
    if not source.encrypted:
        return None
    assert source.wrapped_key is not None and source.key_id is not None
    assert source.key_version is not None and source.wrap_alg is not None
    return Envelope(
        wrapped_key=source.wrapped_key,
        key_id=source.key_id,
        key_version=source.key_version,
        wrap_alg=source.wrap_alg,
        content_id=source.content_id,
    )


async def copy_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, CopyObject) and auth.bucket is not None
    bucket, principal = auth.bucket, auth.principal
    source = await copy_source_version(ctx, auth.source_bucket, op.source)
    assert auth.source_bucket is not None
    check_copy_source_conditions(call.headers, source)
    same_key = auth.source_bucket.id == bucket.id and op.source.key == op.key
    refuse_unbound_copy(source, same_key)
    if not source.encrypted and not principal.allow_plaintext:
        raise InvalidEnvelope(
            "the source object is not client-side encrypted and this tenant stores only"
            " encrypted objects"
        )
    copied_meta = _metadata(call.headers, source)
    requested = redundancy_class_for(ctx, call.headers, bucket)
    if (
        same_key
        and not copied_meta.replaced
        and requested is None
        and (op.source.version_id is None or source.is_latest)
    ):
        raise s3e.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself"
            " without changing the object's metadata, storage class, website redirect location"
            " or encryption attributes."
        )
    condition = write_condition(call.headers)
    copied = await _share(ctx, auth, call, source, copied_meta, requested, condition)
    if copied is None:
        if source.size > MAX_COPY_BYTES:
            raise s3e.InvalidRequest(
                "The specified copy source is larger than the maximum allowable size for a copy"
                f" source: {MAX_COPY_BYTES}"
            )
        copied = await store_object(
            ctx,
            auth,
            call,
            key=op.key,
            envelope=_envelope(source),
            user_meta=copied_meta.user,
            content_type=copied_meta.content_type,
            rc=requested,
            body=ctx.reader.stream(source, 0, source.size - 1),
            length=source.size,
            condition=condition,
            http_headers=copied_meta.http_headers,
        )
    headers = {"x-amz-copy-source-version-id": source.api_version_id}
    if bucket.versioning != "Unversioned":
        headers["x-amz-version-id"] = copied.api_version_id
    return Response(
        xml.copy_result_document("CopyObjectResult", copied.etag, copied.created_at),
        media_type="application/xml",
        headers=headers,
    )


async def _share(
    ctx: GatewayContext,
    auth: Authorized,
    call: S3Call,
    source: ObjectVersion,
    copied_meta: _CopiedMetadata,
    requested: RedundancyClass | None,
    condition: WriteCondition | None,
) -> ObjectVersion | None:
    """Commit the copy as a new version naming the source's backend objects, or None when
    the target's rules do not allow sharing them (the caller then copies the bytes).

    Pieces still ``pending`` on the source (a straggler of a write that just reached its
    quorum) are shared as ``pending`` with the copy's own replicate job, which writes the
    same bytes under the same locator: idempotent. Corrupt or missing pieces are not shared
    (the bytes are copied from the good ones instead)."""
    op = auth.op
    assert isinstance(op, CopyObject)
    bucket, principal = auth.bucket, auth.principal
    assert bucket is not None
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, requested.name if requested else None).redundancy_class
    if rc.name != source.redundancy_class or not source.replicas:
        return None
    if any(r.status not in ("ok", "pending") for r in source.replicas):
        return None
    handles = {h.id: h for h in await ctx.registry.current()}
    holder_ids = sorted({r.backend_id for r in source.replicas})
    if len(holder_ids) != rc.width or any(b not in handles for b in holder_ids):
        return None
    holders = [handles[b].view() for b in holder_ids]
    if misplaced(rc, constraints_for(settings), holders, []):
        return None
    envelope = _envelope(source)
    async with ctx.store.db.transaction() as conn:
        current = await ctx.store.versions.lock_shared(conn, source.id)
        if current is None:
            raise s3e.NoSuchKey(resource=f"/{op.source.bucket}/{op.source.key}")
        if {(r.backend_id, r.locator, r.part_number, r.shard_index) for r in current.replicas} != {
            (r.backend_id, r.locator, r.part_number, r.shard_index) for r in source.replicas
        } or any(r.status not in ("ok", "pending") for r in current.replicas):
            return None  # repaired, moved or found bad meanwhile: copy the bytes instead
        new = NewVersion(
            tenant_id=principal.tenant_id,
            bucket_id=bucket.id,
            key=op.key,
            version_id=new_version_id(),
            size=source.size,
            etag=source.etag,
            sha256=source.sha256,
            content_type=copied_meta.content_type,
            user_metadata=copied_meta.user,
            redundancy_class=source.redundancy_class,
            part_size=source.part_size,
            part_count=source.part_count,
            **envelope_columns(envelope),
            part_sizes=source.part_sizes,
            checksum_algorithm=source.checksum_algorithm,
            checksum_value=source.checksum_value,
            checksum_type=source.checksum_type,
            http_headers=copied_meta.http_headers,
        )
        replicas = [
            NewReplica(
                backend_id=r.backend_id,
                locator=r.locator,
                part_number=r.part_number,
                size=r.size,
                sha256=r.sha256,
                status=r.status,
                shard_index=r.shard_index,
            )
            for r in current.replicas
        ]
        layout = await ctx.parts.of_version(conn, source.id)
        version, dropped = await commit_written(
            ctx,
            conn,
            auth,
            call,
            new,
            replicas,
            layout,
            placed_under={placement_fingerprint(settings, policy_version)},
            condition=condition,
            action="CopyObject",
            detail=(
                f"source={op.source.bucket}/{op.source.key}@{source.version_id}"
                f" shared={len(replicas)} pieces"
            ),
        )
    await ctx.meta.invalidate_object(bucket.id, op.key)
    if dropped is not None:  # its objects we share stay: the collector checks references
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return version
