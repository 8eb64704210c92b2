"""Copying a version: a new version from an existing one, sharing its backend objects when
allowed, else copying its verified bytes through the ordinary write path.

Sharing. When the target's class is the source's class and the backends holding the source
satisfy the target bucket's placement rules (region locks, jurisdiction lists, allow-list:
``core.compliance.misplaced`` decides, the same rule the placement checker applies),
the copy is metadata only: its replica rows name the source's backend objects. Several rows
then reference one (backend, locator); the garbage collector deletes a backend object only
when no row references it any more (``actors/garbage.py``), so neither version's deletion
can take the other's bytes. The copy's transaction locks the source version's row
``FOR SHARE`` and re-reads its replica rows under that lock; every drop of a version locks its
row ``FOR UPDATE`` first, so a copy can never add a reference to an object whose last holder
is being dropped.

Otherwise (another class, a placement the target's rules forbid, a source not fully
replicated right now) the bytes are copied: read through the verified reader and written by
``actors.writes.store_object`` (placement, quorum, one-transaction commit).

Encrypted objects: the ciphertext is bound to its tenant, bucket and key (docs/envelope.md),
so a copy under another bucket or key could never be decrypted; it is refused with a message
that says so (``refuse_unbound_copy``). The envelope of a copy is always the source's.

A region lock recorded with the source (an import's ``--region-lock``) goes with its copy:
the shared pieces must satisfy it, a byte copy is placed under it, and the copy records it
(a copy cannot take the object out of its lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from actors.data_path import DataPath
from actors.garbage import collect_garbage
from actors.writes import (
    commit_written,
    new_version_id,
    placement_fingerprint,
    resolve_class,
    store_object,
)
from core.compliance import misplaced
from core.envelope import Envelope, envelope_columns
from core.errors import InvalidEnvelope, InvalidRequest, NoSuchKey, NoSuchVersion
from schema.audit import Caller
from schema.records import Bucket, NewReplica, NewVersion, ObjectVersion, WriteCondition

__all__ = [
    "MAX_COPY_BYTES",
    "CopiedMetadata",
    "copy_version",
    "refuse_plaintext_copy",
    "refuse_unbound_copy",
    "source_envelope",
    "source_version",
]

log = logging.getLogger(__name__)

#: S3's limit for one CopyObject; larger objects are copied with UploadPartCopy.
MAX_COPY_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class CopiedMetadata:
    """What the copy stores besides the bytes: the source's (``replaced`` False) or new."""

    user: dict[str, str]
    content_type: str | None
    http_headers: dict[str, str]
    replaced: bool

    @classmethod
    def of(cls, source: ObjectVersion) -> CopiedMetadata:
        return cls(
            dict(source.user_metadata), source.content_type, dict(source.http_headers), False
        )


async def source_version(
    ctx: DataPath, bucket: Bucket, key: str, version_id: str | None
) -> ObjectVersion:
    """The version a copy reads: the latest, or the one ``version_id`` names. A delete marker
    named by version is InvalidRequest (S3's answer); a missing one NoSuchKey/NoSuchVersion."""
    if version_id is None:
        version = await ctx.meta.latest(bucket.id, key)
        if version is None or version.is_delete_marker:
            raise NoSuchKey()
        return version
    async with ctx.store.db.connection() as conn:
        version = await ctx.store.versions.get_version(conn, bucket.id, key, version_id)
    if version is None:
        raise NoSuchVersion()
    if version.is_delete_marker:
        raise InvalidRequest(
            "The source of a copy request may not specifically refer to a delete marker by"
            " version id."
        )
    return version


def refuse_unbound_copy(source: ObjectVersion, same_name: bool) -> None:
    """A client-side encrypted source may be copied (whole or as a part) only under its own
    bucket and key: its ciphertext is bound to that name (docs/envelope.md)."""
    if source.encrypted and not same_name:
        raise InvalidRequest(
            "The copy source is client-side encrypted and its ciphertext is bound to its bucket"
            " and key (docs/envelope.md): a copy under another name could never be decrypted."
            " Download, re-encrypt and upload it with `bp` instead."
        )


def refuse_plaintext_copy(source: ObjectVersion, allow_plaintext: bool) -> None:
    """A tenant without ``allow_plaintext`` may not copy a plaintext object either."""
    if not source.encrypted and not allow_plaintext:
        raise InvalidEnvelope(
            "the source object is not client-side encrypted and this tenant stores only"
            " encrypted objects"
        )


def source_envelope(source: ObjectVersion) -> Envelope | None:
    """The envelope a copy of ``source`` carries: the source's own."""
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


async def copy_version(
    ctx: DataPath,
    *,
    caller: Caller,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    source: ObjectVersion,
    source_name: str,
    metadata: CopiedMetadata,
    allow_plaintext: bool,
    requested_class: str | None = None,
    condition: WriteCondition | None = None,
) -> ObjectVersion:
    """Commit a copy of ``source`` as the new version of ``key`` in ``bucket``: shared
    backend objects when the target's rules allow it, else the bytes copied. ``source_name``
    (``bucket/key``) names the source in the audit entry. The caller checked the copy is
    allowed under this name (``refuse_unbound_copy``) and for this tenant
    (``refuse_plaintext_copy``)."""
    async with ctx.store.db.connection() as conn:
        locks = await ctx.policies.version_region_locks(conn, [source.id])
    region_lock = locks.get(source.id, ())
    copied = await _share(
        ctx,
        _Copy(
            caller,
            tenant_id,
            bucket,
            key,
            source,
            source_name,
            metadata,
            requested_class,
            condition,
            encryption_required=not allow_plaintext,
            region_lock=region_lock,
        ),
    )
    if copied is not None:
        return copied
    if source.size > MAX_COPY_BYTES:
        raise InvalidRequest(
            "The specified copy source is larger than the maximum allowable size for a copy"
            f" source: {MAX_COPY_BYTES}"
        )
    return await store_object(
        ctx,
        caller=caller,
        tenant_id=tenant_id,
        bucket=bucket,
        key=key,
        body=ctx.reader.stream(source, 0, source.size - 1),
        length=source.size,
        envelope=source_envelope(source),
        allow_plaintext=allow_plaintext,
        requested_class=requested_class,
        user_metadata=metadata.user,
        content_type=metadata.content_type,
        http_headers=metadata.http_headers,
        condition=condition,
        region_lock=region_lock,
    )


def _same_pieces(a: ObjectVersion, b: ObjectVersion) -> bool:
    return {(r.backend_id, r.locator, r.part_number, r.shard_index) for r in a.replicas} == {
        (r.backend_id, r.locator, r.part_number, r.shard_index) for r in b.replicas
    }


@dataclass(frozen=True)
class _Copy:
    """One copy as ``copy_version`` was asked for it."""

    caller: Caller
    tenant_id: int
    bucket: Bucket
    key: str
    source: ObjectVersion
    source_name: str
    metadata: CopiedMetadata
    requested_class: str | None
    condition: WriteCondition | None
    encryption_required: bool
    region_lock: tuple[str, ...] = ()


async def _share(ctx: DataPath, copy: _Copy) -> ObjectVersion | None:
    """Commit the copy as a new version naming the source's backend objects, or None when
    the target's rules do not allow sharing them (the caller then copies the bytes).

    Pieces still ``pending`` on the source (a straggler of a write that just reached its
    quorum) are shared as ``pending`` with the copy's own replicate job, which writes the
    same bytes under the same locator: idempotent. Corrupt or missing pieces are not shared
    (the bytes are copied from the good ones instead)."""
    bucket, source, metadata = copy.bucket, copy.source, copy.metadata
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, copy.requested_class).redundancy_class
    if rc.name != source.redundancy_class or not source.replicas:
        return None
    if any(r.status not in ("ok", "pending") for r in source.replicas):
        return None
    handles = {h.id: h for h in await ctx.registry.current()}
    holder_ids = sorted({r.backend_id for r in source.replicas})
    if len(holder_ids) != rc.width or any(b not in handles for b in holder_ids):
        return None
    holders = [handles[b].view() for b in holder_ids]
    if misplaced(rc, settings.constraints.with_import_lock(copy.region_lock), holders, []):
        return None
    envelope = source_envelope(source)
    async with ctx.store.db.transaction() as conn:
        # The source's BP1 header goes with the shared pieces (they hold the same bytes).
        locked = await conn.fetchrow(
            "SELECT id, bp1_header FROM object_versions WHERE id = $1 FOR SHARE", source.id
        )
        current = await ctx.store.versions.get_by_pk(conn, source.id) if locked else None
        if current is None:
            raise NoSuchKey()
        if not _same_pieces(current, source) or any(
            r.status not in ("ok", "pending") for r in current.replicas
        ):
            return None  # repaired, moved or found bad meanwhile: copy the bytes instead
        new = NewVersion(
            tenant_id=copy.tenant_id,
            bucket_id=bucket.id,
            key=copy.key,
            version_id=new_version_id(),
            size=source.size,
            etag=source.etag,
            sha256=source.sha256,
            content_type=metadata.content_type,
            user_metadata=metadata.user,
            redundancy_class=source.redundancy_class,
            part_size=source.part_size,
            part_count=source.part_count,
            **envelope_columns(envelope),
            part_sizes=source.part_sizes,
            checksum_algorithm=source.checksum_algorithm,
            checksum_value=source.checksum_value,
            checksum_type=source.checksum_type,
            http_headers=metadata.http_headers,
            bp1_header=bytes(locked["bp1_header"]) if locked["bp1_header"] is not None else None,
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
            copy.caller,
            bucket,
            new,
            replicas,
            layout,
            placed_under={placement_fingerprint(settings, policy_version)},
            condition=copy.condition,
            encryption_required=copy.encryption_required,
            action="CopyObject",
            detail=f"source={copy.source_name}@{source.version_id} shared={len(replicas)} pieces",
            region_lock=copy.region_lock,
        )
    await ctx.meta.invalidate_object(bucket.id, copy.key)
    if dropped is not None:  # its objects we share stay: the collector checks references
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return version
