"""PutObject: validate, place, quorum-write, then commit once (invariants 1, 4, 5, 6).

Order matters. Everything that can be refused without touching a backend is refused first
(length, metadata, envelope fields, class, placement). The body then streams through integrity
checks and the BP1 header check into the quorum writer. Only when the write quorum holds and
every check of the body passed does one transaction commit the version, its replica rows,
the replication jobs for unfinished replicas and the audit entry. Any failure before that
sends what was written to garbage: nothing becomes visible.

The class is the one the request names (``X-Redundancy-Class``, or ``x-amz-storage-class``
naming a class), else the bucket's default, else the tenant's, else the policy's
(``core.policy.choose_class``). The constraints are the bucket's region lock, the tenant's
region lock, jurisdiction lists and backend allow-list, all read from the database for each
write and read again, locked, in the commit transaction: if they (or the policy version)
changed while the body streamed, the new object is marked for the placement checker in that
same transaction, so no object placed under superseded rules goes unchecked. Placement never
relaxes a rule: an impossible placement is a 400 naming the rule, missing healthy capacity a
503.

Erasure-coded classes write shard ``i`` of every part to target ``i``; each shard is a replica
row with ``shard_index = i`` and its own SHA-256, and each part's length, SHA-256 and code go
to the ``parts`` table, all in the commit transaction.

The pieces are shared with the other writers: ``start_write`` / ``run_write`` place and write
a body, ``commit_written`` commits what was written (PutObject, CopyObject through
``store_object``, CompleteMultipartUpload), so the replicate jobs, the placement-checker mark
and the audit entry are decided in one place. ``store_object`` takes a ``WriteCondition``
(``If-Match`` / ``If-None-Match: *``, checked under the key's row lock) and, for CopyObject, a
body and length that replace the request's. PutObject stores the ``x-amz-checksum-*`` it
verified (type ``FULL_OBJECT``) and answers ``x-amz-version-id`` on versioned buckets.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

import asyncpg
from fastapi import Response

from actors.garbage import collect_garbage, discard_write
from actors.quorum_writer import QuorumWrite
from actors.replica_repair import misplaced
from actors.write_finisher import finish_stragglers
from core.envelope import (
    BP1_HEADER_SIZE,
    ENVELOPE_METADATA,
    Envelope,
    envelope_columns,
    envelope_from_metadata,
    parse_bp1_header,
)
from core.errors import InsufficientCapacity, InvalidEnvelope, InvalidInput, PolicyViolation
from core.placement import BackendView, Placement, PlacementConstraints, place_for_write
from core.policy import ClassChoice, PolicyDocument, RedundancyClass, choose_class
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import declared_length, payload
from gateway.s3.call import S3Call, user_metadata
from gateway.s3.conditions import write_condition
from gateway.s3.stored_headers import stored_headers
from schema.audit import AuditEntry
from schema.jobs import PRIORITY, JobKind, replicate_key
from schema.parts import ErasurePart
from schema.policies import PlacementSettings
from schema.records import Bucket, NewReplica, NewVersion, ObjectVersion, WriteCondition

__all__ = [
    "CHANGED_WHILE_WRITTEN",
    "commit_written",
    "constraints_for",
    "new_version_id",
    "object_metadata",
    "placement_fingerprint",
    "put_object",
    "redundancy_class_for",
    "require_envelope",
    "resolve_class",
    "run_write",
    "start_write",
    "store_object",
    "stored_checksum",
    "version_headers",
    "write_condition",
    "written_layout",
    "written_pieces",
]

log = logging.getLogger(__name__)


def new_version_id() -> str:
    """Time-ordered and unguessable: 16 hex digits of nanoseconds, 16 random."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def redundancy_class_for(
    ctx: GatewayContext, headers: Mapping[str, str], bucket: Bucket
) -> RedundancyClass | None:
    """The class the request names: X-Redundancy-Class, else x-amz-storage-class naming a
    class (``STANDARD`` names none). None when it names none: ``store_object`` then takes the
    bucket's, the tenant's or the policy's default."""
    requested = headers.get("x-redundancy-class")
    if requested is None:
        storage_class = headers.get("x-amz-storage-class")
        if storage_class and storage_class != "STANDARD":
            if storage_class not in ctx.policy.classes:
                raise s3e.InvalidStorageClass(
                    f"Storage class {storage_class!r} is not a redundancy class of this gateway"
                )
            requested = storage_class
    if requested is None:
        return None
    if requested not in ctx.policy.classes:
        raise s3e.InvalidArgument(f"Unknown redundancy class {requested!r}")
    return ctx.policy.get(requested)


def resolve_class(
    policy: PolicyDocument, settings: PlacementSettings, requested: str | None
) -> ClassChoice:
    """The object's class: requested, else bucket default, else tenant default, else policy
    default (``choose_class``); an unknown name is a 400 naming where it came from."""
    try:
        return choose_class(
            policy,
            requested=requested,
            bucket_default=settings.bucket_default_class,
            tenant_default=settings.tenant.default_class,
        )
    except InvalidInput as exc:
        raise s3e.InvalidArgument(str(exc)) from exc


def constraints_for(settings: PlacementSettings) -> PlacementConstraints:
    """The placement constraints of the bucket's objects: its region lock and its tenant's
    region lock, jurisdiction lists and backend allow-list (all of them hold at once)."""
    tenant = settings.tenant
    return PlacementConstraints(
        region_lock=frozenset(settings.bucket_region_lock),
        tenant_region_lock=frozenset(tenant.region_lock),
        jurisdiction_allow=frozenset(tenant.jurisdiction_allow),
        jurisdiction_deny=frozenset(tenant.jurisdiction_deny),
        allowed_backends=(
            None if tenant.allowed_backends is None else frozenset(tenant.allowed_backends)
        ),
    )


def _place(
    rc: RedundancyClass, views: list[BackendView], constraints: PlacementConstraints, size: int
) -> tuple[Placement, frozenset[str]]:
    """Placement with tenant-safe errors: the rule that failed is named, backend names (the
    operator's topology) go to the log only."""
    try:
        return place_for_write(rc, views, constraints, object_size=size)
    except InsufficientCapacity as exc:
        log.warning("placement for class %s: %s", rc.name, exc)
        raise InsufficientCapacity(
            f"not enough healthy backends to store this object under class {rc.name} right now"
        ) from exc
    except PolicyViolation as exc:
        log.warning("placement for class %s: %s", rc.name, exc)
        raise PolicyViolation(str(exc).split("; filtered out:", 1)[0]) from exc


async def _bp1_checked(body: AsyncIterator[bytes], length: int) -> AsyncIterator[bytes]:
    """Pass the body through once its first 112 bytes parsed as a BP1 header for ``length``."""
    head = bytearray()
    checked = False
    async for chunk in body:
        if checked:
            yield chunk
            continue
        head += chunk
        if len(head) >= BP1_HEADER_SIZE:
            parse_bp1_header(bytes(head[:BP1_HEADER_SIZE]), length)
            checked = True
            yield bytes(head)
    if not checked:
        parse_bp1_header(bytes(head), length)
        yield bytes(head)


# -- request headers shared by the writes (PutObject, CreateMultipartUpload, CopyObject) -------
# ``write_condition`` (If-Match / If-None-Match: *) lives in gateway/s3/conditions.py and is
# re-exported here for the writers that import it from this module.


def object_metadata(headers: Mapping[str, str]) -> tuple[Envelope | None, dict[str, str]]:
    """(encryption envelope, the other user metadata) of a write request: ``x-amz-meta-*``
    (2 KiB at most), where every ``x-amz-meta-bp-*`` name is reserved for the envelope."""
    meta = user_metadata(headers)
    envelope = envelope_from_metadata(meta)
    unknown = sorted(k for k in meta if k.startswith("bp-") and k not in ENVELOPE_METADATA)
    if unknown:
        raise s3e.InvalidArgument(
            f"x-amz-meta-{unknown[0]} is not an envelope field; x-amz-meta-bp-* is reserved"
            " for the encryption envelope (docs/envelope.md section 8)"
        )
    return envelope, {k: v for k, v in meta.items() if not k.startswith("bp-")}


def require_envelope(auth: Authorized, envelope: Envelope | None) -> None:
    """A tenant without ``allow_plaintext`` stores only client-side encrypted objects."""
    if envelope is None and not auth.principal.allow_plaintext:
        raise InvalidEnvelope(
            "object is not client-side encrypted: the encryption envelope field "
            "x-amz-meta-bp-wrapped-key is missing (see docs/envelope.md)"
        )


#: ``x-amz-checksum-*`` algorithms in the order one is chosen to be stored when a client sent
#: several (all of them were verified).
CHECKSUM_ALGORITHMS = ("crc64nvme", "crc32c", "crc32", "sha256", "sha1")


def stored_checksum(verified: Mapping[str, str]) -> tuple[str, str] | None:
    """(algorithm, base64 value) to store of the checksums ``payload()`` verified."""
    for algorithm in CHECKSUM_ALGORITHMS:
        if algorithm in verified:
            return algorithm, verified[algorithm]
    for algorithm in sorted(verified):
        return algorithm, verified[algorithm]
    return None


# -- the write: placement, quorum write, what to commit ----------------------------------------
def placement_fingerprint(settings: PlacementSettings, policy_version: int) -> str:
    """Names the rules pieces were placed under: the policy version and the bucket's and
    tenant's placement settings. Two writes placed under equal fingerprints obeyed the same
    rules; a commit under another fingerprint marks its object for the placement checker."""
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:32]
    return f"{policy_version}:{digest}"


#: The fingerprint of pieces whose rules changed while they were written.
CHANGED_WHILE_WRITTEN = "changed"


async def start_write(
    ctx: GatewayContext,
    rc: RedundancyClass,
    settings: PlacementSettings,
    length: int,
    *,
    pinned: Sequence[int] = (),
) -> QuorumWrite:
    """Place ``length`` bytes of class ``rc`` under the bucket's constraints and prepare
    their quorum write (unhealthy targets are skipped and end pending).

    ``pinned``: backend ids (in target order) an earlier part of the same multipart upload
    went to. They are reused while they still form a valid placement of the class under
    today's constraints and enough of them are healthy for the write quorum, so every part
    of the object lives on one backend set (repair and erasure layouts count on a backend
    holding every part, with one shard index); otherwise the part is placed afresh."""
    handles = await ctx.registry.current()
    constraints = constraints_for(settings)
    erasure = (rc.k, rc.m) if rc.kind == "erasure" else None
    by_id = {h.id: h for h in handles}
    if pinned and all(b in by_id for b in pinned) and len(pinned) == rc.width:
        targets = [by_id[b] for b in pinned]
        down = frozenset(h.id for h in targets if not h.healthy)
        allowed = all(h.record.state == "active" for h in targets)
        if (
            allowed
            and len(targets) - len(down) >= rc.write_quorum
            and not misplaced(rc, constraints, [h.view() for h in targets], [])
        ):
            return QuorumWrite(
                ctx.registry,
                targets,
                rc.write_quorum,
                part_size=ctx.settings.part_size,
                skip=down,
                erasure=erasure,
            )
    placement, down_names = _place(rc, [h.view() for h in handles], constraints, length)
    by_name = {h.name: h for h in handles}
    return QuorumWrite(
        ctx.registry,
        [by_name[name] for name in placement.targets],
        placement.write_quorum,
        part_size=ctx.settings.part_size,
        skip=frozenset(by_name[name].id for name in down_names),
        erasure=erasure,
    )


async def run_write(write: QuorumWrite, body: AsyncIterator[bytes], length: int) -> None:
    """Stream ``body`` into the write; a body of another length is IncompleteBody, a bad
    BP1 header InvalidRequest (InvalidEnvelope)."""
    try:
        await write.run(body, length)
    except InvalidInput as exc:
        if isinstance(exc, InvalidEnvelope):
            raise
        raise s3e.IncompleteBody(str(exc)) from exc


def written_pieces(write: QuorumWrite, complete: frozenset[int]) -> list[NewReplica]:
    """One row per (target, stored part): ``ok`` on complete targets, ``pending`` on the others
    (skipped, failed, dropped or still in flight). ``part_number`` is the write's own part."""
    coded = write.erasure is not None
    shard_of = {backend_id: i for i, backend_id in enumerate(write.target_ids())}
    return [
        NewReplica(
            backend_id=backend_id,
            locator=parts[part.number],
            part_number=part.number,
            size=part.piece(shard_of[backend_id]).size,
            sha256=part.piece(shard_of[backend_id]).sha256,
            status="ok" if backend_id in complete else "pending",
            shard_index=shard_of[backend_id] if coded else -1,
        )
        for backend_id, parts in write.locators().items()
        for part in write.parts
    ]


def written_layout(write: QuorumWrite) -> list[ErasurePart]:
    """The ``parts`` rows of an erasure-coded write (empty for replication)."""
    if write.erasure is None:
        return []
    k, m = write.erasure
    return [ErasurePart(p.number, p.size, p.sha256, k, m) for p in write.parts]


async def commit_written(
    ctx: GatewayContext,
    conn: asyncpg.Connection,
    auth: Authorized,
    call: S3Call,
    new: NewVersion,
    replicas: Sequence[NewReplica],
    layout: Sequence[ErasurePart],
    *,
    placed_under: Collection[str],
    condition: WriteCondition | None,
    action: str,
    detail: str = "",
) -> tuple[ObjectVersion, int | None]:
    """Make a written object visible, in the caller's transaction: the version and its replica
    rows (``commit_version``, checking ``condition`` under the key's row lock), the ``parts``
    rows of an erasure-coded object, one ``replicate`` job per backend holding a ``pending``
    piece, the placement-checker mark when the rules changed since the pieces were placed
    (``placed_under``: their ``placement_fingerprint``s) and the audit entry. Shared by
    PutObject (and CopyObject through ``store_object``) and CompleteMultipartUpload.
    Returns the version and the primary key of a version it dropped (garbage to collect)."""
    principal, bucket = auth.principal, auth.bucket
    assert bucket is not None
    # Locks the bucket and tenant rows FOR SHARE until the commit: a concurrent change of
    # their placement settings lands wholly before (seen here) or after (it marks us).
    settings_now = await ctx.policies.placement_settings(conn, bucket.id, lock=True)
    version, superseded = await ctx.store.versions.commit_version(
        conn, new, replicas, condition=condition
    )
    if layout:
        await ctx.parts.add(conn, version.id, layout)
    coded = any(r.shard_index >= 0 for r in replicas)
    pending = sorted({r.backend_id for r in replicas if r.status != "ok"})
    sources = sorted({r.backend_id for r in replicas} - set(pending))
    for backend_id in pending:
        job: dict[str, object] = {
            "version_pk": version.id,
            "tenant_id": principal.tenant_id,
            "bucket_id": bucket.id,
            "key": new.key,
            "version_id": version.version_id,
            "target_backend_id": backend_id,
            "source_backend_ids": sources,
            "redundancy_class": new.redundancy_class,
            "encryption_required": not principal.allow_plaintext,
        }
        if coded:
            shards = {r.shard_index for r in replicas if r.backend_id == backend_id}
            if len(shards) == 1:
                job["shard_index"] = shards.pop()
            if layout:
                job["erasure"] = {"k": layout[0].k, "m": layout[0].m}
        await ctx.store.jobs.enqueue(
            conn,
            JobKind.REPLICATE,
            job,
            idempotency_key=replicate_key(version.id, backend_id),
            priority=PRIORITY[JobKind.REPLICATE],
        )
    now = placement_fingerprint(settings_now, await ctx.policies.current_version(conn))
    stale = {fp for fp in placed_under if fp != now}
    if stale:
        policy_now = now.split(":", 1)[0]
        if all(fp.split(":", 1)[0] == policy_now for fp in stale):
            reason = "placement settings changed while the object was written"
        else:
            reason = "policy changed while the object was written"
        await ctx.policies.mark_version(conn, version.id, reason)
    holders = {r.backend_id for r in replicas}
    await ctx.store.audit.append(
        conn,
        AuditEntry(
            actor=principal.access_key_id,
            action=action,
            resource=f"{bucket.name}/{new.key}",
            request_id=call.request_id,
            result=(
                f"ok version={version.version_id} class={new.redundancy_class}"
                f" {'shards' if coded else 'replicas'}={len(holders) - len(pending)}/{len(holders)}"
                + (f" {detail}" if detail else "")
            ),
            tenant_id=principal.tenant_id,
        ),
    )
    return version, superseded


async def store_object(
    ctx: GatewayContext,
    auth: Authorized,
    call: S3Call,
    *,
    key: str,
    envelope: Envelope | None,
    user_meta: dict[str, str],
    content_type: str | None,
    rc: RedundancyClass | None,
    condition: WriteCondition | None = None,
    body: AsyncIterator[bytes] | None = None,
    length: int | None = None,
    http_headers: dict[str, str] | None = None,
) -> ObjectVersion:
    """The write path shared by the S3 API, the plain /objects API and CopyObject. ``rc`` is
    the class the request names (``redundancy_class_for``), None for the default chain.

    The body is the request's (verified by ``payload``: its x-amz-checksum-* is stored with
    the version) unless ``body`` and ``length`` replace it: CopyObject streams a source
    version's verified bytes that way. ``condition`` (``write_condition``) is checked in the
    commit transaction. ``http_headers`` (Cache-Control...): the request's unless given."""
    principal, bucket = auth.principal, auth.bucket
    assert bucket is not None
    headers = call.headers
    if body is not None:
        if length is None:
            raise ValueError("store_object: a body override needs its length")
    else:
        length = declared_length(principal.verified, headers)
    if length > ctx.settings.max_object_size:
        raise s3e.EntityTooLarge(
            f"Your proposed upload of {length} bytes exceeds the maximum of "
            f"{ctx.settings.max_object_size} bytes."
        )
    require_envelope(auth, envelope)
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, rc.name if rc is not None else None).redundancy_class
    write = await start_write(ctx, rc, settings, length)

    checksums: dict[str, str] = {}
    if body is None:
        body = payload(call.body, principal.verified, headers, checksums_out=checksums)
    if envelope is not None:
        body = _bp1_checked(body, length)
    try:
        await run_write(write, body, length)
        complete = frozenset(write.complete_backends())
        checksum = stored_checksum(checksums)
        new = NewVersion(
            tenant_id=principal.tenant_id,
            bucket_id=bucket.id,
            key=key,
            version_id=new_version_id(),
            size=length,
            etag=write.md5_hex,
            sha256=write.sha256,
            content_type=content_type,
            user_metadata=user_meta,
            redundancy_class=rc.name,
            part_size=write.part_size,
            part_count=len(write.parts),
            **envelope_columns(envelope),
            checksum_algorithm=checksum[0] if checksum else None,
            checksum_value=checksum[1] if checksum else None,
            checksum_type="FULL_OBJECT" if checksum else None,
            http_headers=stored_headers(headers) if http_headers is None else http_headers,
        )
        async with ctx.store.db.transaction() as conn:
            version, superseded = await commit_written(
                ctx,
                conn,
                auth,
                call,
                new,
                written_pieces(write, complete),
                written_layout(write),
                placed_under={placement_fingerprint(settings, policy_version)},
                condition=condition,
                action="PutObject",
            )
    except BaseException:
        ctx.spawn(discard_write(ctx.store, ctx.registry, write.all_locators(), "failed write"))
        raise
    await ctx.meta.invalidate_object(bucket.id, key)
    pending = [b for b in write.target_ids() if b not in complete]
    if pending:
        ctx.spawn(_finish(ctx, write, version, pending))
    if superseded is not None:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return version


async def _finish(
    ctx: GatewayContext, write: QuorumWrite, version: ObjectVersion, pending: list[int]
) -> None:
    """Finish in-flight replicas, then drop the cached version that still shows them pending."""
    if await finish_stragglers(ctx.store, write, version.id, pending):
        await ctx.meta.invalidate_object(version.bucket_id, version.key)


def version_headers(bucket: Bucket, version: ObjectVersion) -> dict[str, str]:
    """``x-amz-version-id`` of a write's response when the bucket has versioning (enabled or
    suspended: then it is ``null``)."""
    if bucket.versioning == "Unversioned":
        return {}
    return {"x-amz-version-id": version.api_version_id}


async def put_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    from gateway.s3.operations import PutObject

    op = auth.op
    assert isinstance(op, PutObject) and auth.bucket is not None
    envelope, plain_meta = object_metadata(call.headers)
    version = await store_object(
        ctx,
        auth,
        call,
        key=op.key,
        envelope=envelope,
        user_meta=plain_meta,
        content_type=call.headers.get("content-type"),
        rc=redundancy_class_for(ctx, call.headers, auth.bucket),
        condition=write_condition(call.headers),
    )
    headers = {"ETag": f'"{version.etag}"', **version_headers(auth.bucket, version)}
    if version.checksum_algorithm and version.checksum_value:
        headers[f"x-amz-checksum-{version.checksum_algorithm}"] = version.checksum_value
    return Response(status_code=200, headers=headers)
