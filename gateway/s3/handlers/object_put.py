"""PutObject: validate, place, quorum-write, then commit once (invariants 1, 4, 5, 6).

Order matters. Everything that can be refused without touching a backend is refused first
(length, metadata, envelope fields, class, placement). The body then streams through integrity
checks and the BP1 header check into the quorum writer. Only when the write quorum holds and
every check of the body passed does one transaction commit the version, its replica rows,
the replication jobs for unfinished replicas and the audit entry. Any failure before that
sends what was written to garbage: nothing becomes visible.

The class is the one the request names (``X-Redundancy-Class``, or ``x-amz-storage-class``
naming a class), else the bucket's default, else the tenant's, else the policy's
(``cluster.policy.choose_class``). The constraints are the bucket's region lock, the tenant's
region lock, jurisdiction lists and backend allow-list, all read from the database for each
write and read again, locked, in the commit transaction: if they (or the policy version)
changed while the body streamed, the new object is marked for the placement checker in that
same transaction, so no object placed under superseded rules goes unchecked. Placement never
relaxes a rule: an impossible placement is a 400 naming the rule, missing healthy capacity a
503.

Erasure-coded classes write shard ``i`` of every part to target ``i``; each shard is a replica
row with ``shard_index = i`` and its own SHA-256, and each part's length, SHA-256 and code go
to the ``parts`` table, all in the commit transaction.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping

from fastapi import Response

from actors.garbage import collect_garbage, discard_write
from actors.quorum_writer import QuorumWrite
from actors.write_finisher import finish_stragglers, replicate_job_key
from cluster.envelope import (
    BP1_HEADER_SIZE,
    ENVELOPE_METADATA,
    Envelope,
    envelope_from_metadata,
    parse_bp1_header,
)
from cluster.errors import InsufficientCapacity, InvalidEnvelope, InvalidInput, PolicyViolation
from cluster.placement import BackendView, Placement, PlacementConstraints, place_for_write
from cluster.policy import ClassChoice, PolicyDocument, RedundancyClass, choose_class
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import declared_length, payload
from gateway.s3.call import S3Call, user_metadata
from schema.audit import AuditEntry
from schema.objects import NewReplica, NewVersion
from schema.parts import ErasurePart
from schema.policies import PlacementSettings
from schema.records import Bucket, ObjectVersion

__all__ = [
    "constraints_for",
    "new_version_id",
    "put_object",
    "redundancy_class_for",
    "resolve_class",
    "store_object",
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
) -> ObjectVersion:
    """The write path shared by the S3 API and the plain /objects API. ``rc`` is the class
    the request names (``redundancy_class_for``), None for the default chain."""
    principal, bucket = auth.principal, auth.bucket
    assert bucket is not None
    headers = call.headers
    length = declared_length(principal.verified, headers)
    if length > ctx.settings.max_object_size:
        raise s3e.EntityTooLarge(
            f"Your proposed upload of {length} bytes exceeds the maximum of "
            f"{ctx.settings.max_object_size} bytes."
        )
    if envelope is None and not principal.allow_plaintext:
        raise InvalidEnvelope(
            "object is not client-side encrypted: the encryption envelope field "
            "x-amz-meta-bp-wrapped-key is missing (see docs/envelope.md)"
        )
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, rc.name if rc is not None else None).redundancy_class
    handles = await ctx.registry.current()
    placement, down = _place(rc, [h.view() for h in handles], constraints_for(settings), length)
    by_name = {h.name: h for h in handles}
    targets = [by_name[name] for name in placement.targets]

    body = payload(call.body, principal.verified, headers)
    if envelope is not None:
        body = _bp1_checked(body, length)
    write = QuorumWrite(
        ctx.registry,
        targets,
        placement.write_quorum,
        part_size=ctx.settings.part_size,
        skip=frozenset(by_name[name].id for name in down),
        erasure=(rc.k, rc.m) if rc.kind == "erasure" else None,
    )
    try:
        try:
            await write.run(body, length)
        except InvalidInput as exc:
            if isinstance(exc, InvalidEnvelope):
                raise
            raise s3e.IncompleteBody(str(exc)) from exc
        complete = frozenset(write.complete_backends())
        version, superseded = await _commit(
            ctx,
            auth,
            call,
            write,
            complete,
            key=key,
            envelope=envelope,
            user_meta=user_meta,
            content_type=content_type,
            rc=rc,
            length=length,
            settings=settings,
            policy_version=policy_version,
        )
    except BaseException:
        ctx.spawn(discard_write(ctx.store, ctx.registry, write.all_locators(), "failed write"))
        raise
    await ctx.meta.invalidate_object(bucket.id, key)
    pending = [t.id for t in targets if t.id not in complete]
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


async def _commit(
    ctx: GatewayContext,
    auth: Authorized,
    call: S3Call,
    write: QuorumWrite,
    complete: frozenset[int],
    *,
    key: str,
    envelope: Envelope | None,
    user_meta: dict[str, str],
    content_type: str | None,
    rc: RedundancyClass,
    length: int,
    settings: PlacementSettings,
    policy_version: int,
) -> tuple[ObjectVersion, int | None]:
    principal, bucket = auth.principal, auth.bucket
    assert bucket is not None
    locators = write.locators()
    coded = write.erasure is not None
    shard_of = {backend_id: i for i, backend_id in enumerate(write.target_ids())}
    replicas = [
        NewReplica(
            backend_id=backend_id,
            locator=parts[part.number],
            part_number=part.number,
            size=part.piece(shard_of[backend_id]).size,
            sha256=part.piece(shard_of[backend_id]).sha256,
            status="ok" if backend_id in complete else "pending",
            shard_index=shard_of[backend_id] if coded else -1,
        )
        for backend_id, parts in locators.items()
        for part in write.parts
    ]
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
        encrypted=envelope is not None,
        wrapped_key=envelope.wrapped_key if envelope else None,
        key_id=envelope.key_id if envelope else None,
        key_version=envelope.key_version if envelope else None,
        wrap_alg=envelope.wrap_alg if envelope else None,
        content_id=envelope.content_id if envelope else None,
    )
    async with ctx.store.db.transaction() as conn:
        # Locks the bucket and tenant rows FOR SHARE until the commit: a concurrent change of
        # their placement settings lands wholly before (seen here) or after (it marks us).
        settings_now = await ctx.policies.placement_settings(conn, bucket.id, lock=True)
        version, superseded = await ctx.store.objects.commit_version(conn, new, replicas)
        if coded:
            assert write.erasure is not None
            k, m = write.erasure
            await ctx.parts.add(
                conn,
                version.id,
                [ErasurePart(p.number, p.size, p.sha256, k, m) for p in write.parts],
            )
        for backend_id in locators:
            if backend_id in complete:
                continue
            job: dict[str, object] = {
                "version_pk": version.id,
                "tenant_id": principal.tenant_id,
                "bucket_id": bucket.id,
                "key": key,
                "version_id": version.version_id,
                "target_backend_id": backend_id,
                "source_backend_ids": sorted(complete),
                "redundancy_class": rc.name,
                "encryption_required": not principal.allow_plaintext,
            }
            if coded:
                assert write.erasure is not None
                job["shard_index"] = shard_of[backend_id]
                job["erasure"] = {"k": write.erasure[0], "m": write.erasure[1]}
            await ctx.store.jobs.enqueue(
                conn,
                "replicate",
                job,
                idempotency_key=replicate_job_key(version.id, backend_id),
                priority=100,
            )
        if settings_now != settings:
            await ctx.policies.mark_version(
                conn, version.id, "placement settings changed while the object was written"
            )
        elif await ctx.policies.current_version(conn) != policy_version:
            await ctx.policies.mark_version(
                conn, version.id, "policy changed while the object was written"
            )
        pieces = "shards" if coded else "replicas"
        await ctx.store.audit.append(
            conn,
            AuditEntry(
                actor=principal.access_key_id,
                action="PutObject",
                resource=f"{bucket.name}/{key}",
                request_id=call.request_id,
                result=(
                    f"ok version={version.version_id} class={rc.name}"
                    f" {pieces}={len(complete)}/{len(locators)}"
                ),
                tenant_id=principal.tenant_id,
            ),
        )
    return version, superseded


async def put_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    from gateway.s3.operations import PutObject

    op = auth.op
    assert isinstance(op, PutObject) and auth.bucket is not None
    meta = user_metadata(call.headers)
    envelope = envelope_from_metadata(meta)
    unknown = sorted(k for k in meta if k.startswith("bp-") and k not in ENVELOPE_METADATA)
    if unknown:
        raise s3e.InvalidArgument(
            f"x-amz-meta-{unknown[0]} is not an envelope field; x-amz-meta-bp-* is reserved"
            " for the encryption envelope (docs/envelope.md section 8)"
        )
    plain_meta = {k: v for k, v in meta.items() if not k.startswith("bp-")}
    version = await store_object(
        ctx,
        auth,
        call,
        key=op.key,
        envelope=envelope,
        user_meta=plain_meta,
        content_type=call.headers.get("content-type"),
        rc=redundancy_class_for(ctx, call.headers, auth.bucket),
    )
    return Response(status_code=200, headers={"ETag": f'"{version.etag}"'})
