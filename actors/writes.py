"""Writing an object: choose its class, place it, quorum-write the body, commit it once
(invariants 1, 4, 5, 6). No HTTP here: the S3 handlers, the plain /objects API, CopyObject,
multipart uploads and the bucket importer all write through these functions with plain values
(tenant id, bucket record, key, envelope, class name, a body and its length, a
``WriteCondition``, a ``Caller`` for the audit entry) and get the committed record back.

Order matters. Everything that can be refused without touching a backend is refused first
(length, envelope, class, placement). The body then streams through the BP1 header check into
the quorum writer. Only when the write quorum holds and every check of the body passed does one
transaction commit the version, its replica rows, the replication jobs for unfinished replicas
and the audit entry (``commit_written``). Any failure before that sends what was written to
garbage: nothing becomes visible.

The class is the one asked for, else the bucket's default, else the tenant's, else the
policy's (``core.policy.choose_class``). The constraints are the bucket's and tenant's
placement settings, read for each write and read again, locked, in the commit transaction: if
they (or the policy version) changed while the body streamed, the object is marked for the
placement checker in that same transaction (``placement_fingerprint``), so no object placed
under superseded rules goes unchecked. Placement never relaxes a rule: an impossible placement
is ``PolicyViolation`` naming the rule, missing healthy capacity ``InsufficientCapacity``.

Erasure-coded classes write shard ``i`` of every part to target ``i``; each shard is a replica
row with ``shard_index = i`` and its own SHA-256, and each part's length, SHA-256 and code go
to the ``parts`` table, all in the commit transaction.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from actors.data_path import DataPath
from actors.garbage import collect_garbage, discard_write
from actors.quorum_writer import INLINE_PART_MAX, BodyChunk, QuorumWrite
from actors.write_finisher import finish_stragglers
from core.checksums import stored_checksum
from core.compliance import misplaced
from core.envelope import BP1_HEADER_SIZE, Envelope, envelope_columns, parse_bp1_header
from core.errors import (
    EntityTooLarge,
    IncompleteBody,
    InsufficientCapacity,
    InvalidEnvelope,
    InvalidInput,
    PolicyViolation,
)
from core.placement import BackendView, Placement, PlacementConstraints, place_for_write
from core.policy import ClassChoice, PolicyDocument, RedundancyClass, choose_class
from schema.audit import AuditEntry, Caller
from schema.jobs import PRIORITY, JobKind, replicate_key
from schema.keys import Recipient
from schema.parts import ErasurePart
from schema.policies import PlacementSettings
from schema.records import Bucket, NewReplica, NewVersion, ObjectVersion, WriteCondition

__all__ = [
    "CHANGED_WHILE_WRITTEN",
    "SMALL_WRITE_GRACE_S",
    "WrittenObject",
    "bp1_checked",
    "commit_written",
    "discard_written",
    "new_version_id",
    "placement_fingerprint",
    "require_envelope",
    "resolve_class",
    "run_write",
    "start_write",
    "store_object",
    "store_objects",
    "written_layout",
    "write_object",
    "written_pieces",
]

log = logging.getLogger(__name__)


def new_version_id() -> str:
    """Time-ordered and unguessable: 16 hex digits of nanoseconds, 16 random."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def resolve_class(
    policy: PolicyDocument, settings: PlacementSettings, requested: str | None
) -> ClassChoice:
    """The object's class: requested, else bucket default, else tenant default, else policy
    default (``choose_class``); an unknown name is InvalidInput naming where it came from."""
    return choose_class(
        policy,
        requested=requested,
        bucket_default=settings.bucket_default_class,
        tenant_default=settings.tenant.default_class,
    )


def require_envelope(allow_plaintext: bool, envelope: Envelope | None) -> None:
    """A tenant without ``allow_plaintext`` stores only client-side encrypted objects."""
    if envelope is None and not allow_plaintext:
        raise InvalidEnvelope(
            "object is not client-side encrypted: the encryption envelope field "
            "x-amz-meta-bp-wrapped-key is missing (see docs/envelope.md)"
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


async def bp1_checked(
    body: AsyncIterator[BodyChunk], check: Callable[[bytes], object]
) -> AsyncIterator[BodyChunk]:
    """Pass the body through once ``check`` accepted its first 112 bytes (the BP1 header;
    ``check`` raises InvalidEnvelope), or all of a shorter body."""
    head = bytearray()
    checked = False
    async for chunk in body:
        if checked:
            yield chunk
            continue
        head += chunk
        if len(head) >= BP1_HEADER_SIZE:
            check(bytes(head[:BP1_HEADER_SIZE]))
            checked = True
            yield bytes(head)
    if not checked:
        check(bytes(head))
        yield bytes(head)


def placement_fingerprint(settings: PlacementSettings, policy_version: int) -> str:
    """Names the rules pieces were placed under: the policy version and the bucket's and
    tenant's placement settings. Two writes placed under equal fingerprints obeyed the same
    rules; a commit under another fingerprint marks its object for the placement checker."""
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:32]
    return f"{policy_version}:{digest}"


#: How long a small write (one part of at most ``INLINE_PART_MAX`` bytes) whose quorum holds
#: waits for its remaining copies before committing. Their puts were sent together and are
#: usually done within milliseconds of the quorum; each one that lands in time is committed
#: ``ok``, which saves the ``replicate`` job's insert, the straggler's own transaction (BEGIN,
#: two statements, COMMIT) and a second cache invalidation: CPU that a small PUT on a busy
#: gateway pays for in throughput (docs/architecture.md, write path). A copy slower than this
#: is committed ``pending`` and finished in the background as before; large writes never wait.
SMALL_WRITE_GRACE_S = 0.025

#: The fingerprint of pieces whose rules changed while they were written.
CHANGED_WHILE_WRITTEN = "changed"


async def start_write(
    ctx: DataPath,
    rc: RedundancyClass,
    settings: PlacementSettings,
    length: int,
    *,
    pinned: Sequence[int] = (),
    region_lock: Collection[str] = (),
    parts_in_flight: int = 1,
) -> QuorumWrite:
    """Place ``length`` bytes of class ``rc`` under the bucket's constraints and prepare
    their quorum write (unhealthy targets are skipped and end pending).

    ``pinned``: backend ids (in target order) an earlier part of the same multipart upload
    went to. They are reused while they still form a valid placement of the class under
    today's constraints and enough of them are healthy for the write quorum, so every part
    of the object lives on one backend set (repair and erasure layouts count on a backend
    holding every part, with one shard index); otherwise the part is placed afresh.

    ``region_lock``: an import run's lock, added to the bucket's and tenant's rules (it only
    narrows; a placement it makes impossible is ``PolicyViolation`` naming it).

    ``parts_in_flight``: parts whose quorum may be awaited at once (``QuorumWrite``)."""
    handles = await ctx.registry.current()
    constraints = settings.constraints.with_import_lock(region_lock)
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
                parts_in_flight=parts_in_flight,
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
        parts_in_flight=parts_in_flight,
    )


async def run_write(write: QuorumWrite, body: AsyncIterator[BodyChunk], length: int) -> None:
    """Stream ``body`` into the write; a body of another length is IncompleteBody, a bad
    BP1 header InvalidEnvelope."""
    try:
        await write.run(body, length)
    except InvalidInput as exc:
        if isinstance(exc, InvalidEnvelope | IncompleteBody):
            raise
        raise IncompleteBody(str(exc)) from exc


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
    ctx: DataPath,
    conn: asyncpg.Connection,
    caller: Caller,
    bucket: Bucket,
    new: NewVersion,
    replicas: Sequence[NewReplica],
    layout: Sequence[ErasurePart],
    *,
    placed_under: Collection[str],
    condition: WriteCondition | None,
    encryption_required: bool,
    action: str,
    detail: str = "",
    recipients: Sequence[Recipient] = (),
    region_lock: Collection[str] = (),
    audit: list[AuditEntry] | None = None,
) -> tuple[ObjectVersion, int | None]:
    """Make a written object visible, in the caller's transaction: the version and its replica
    rows (``commit_version``, checking ``condition`` under the key's row lock), the ``parts``
    rows of an erasure-coded object, one ``replicate`` job per backend holding a ``pending``
    piece, the placement-checker mark when the rules changed since the pieces were placed
    (``placed_under``: their ``placement_fingerprint``s), the data key's further
    ``recipients`` (wrapped for other public keys, as ``?share`` adds them), the import's
    ``region_lock`` recorded with the version (every later move of its pieces obeys it:
    ``PolicyRepository.version_constraints``) and the audit entry. Shared by every writer
    (``store_object``, copies, completed multipart uploads). ``audit``: collect the entry
    there instead, for the caller to append with the others of its transaction
    (``store_objects``). Returns the version and the primary key of a version it dropped
    (garbage to collect)."""
    # Locks the bucket and tenant rows FOR SHARE until the commit: a concurrent change of
    # their placement settings lands wholly before (seen here) or after (it marks us).
    settings_now = await ctx.policies.placement_settings(conn, bucket.id, lock=True)
    version, superseded = await ctx.store.versions.commit_version(
        conn, new, replicas, condition=condition
    )
    if layout:
        await ctx.parts.add(conn, version.id, layout)
    if recipients:
        await ctx.store.keys.add_recipients(conn, version.id, recipients)
    if region_lock:
        await ctx.policies.lock_version_region(conn, version.id, region_lock, origin=caller.actor)
    coded = any(r.shard_index >= 0 for r in replicas)
    pending = sorted({r.backend_id for r in replicas if r.status != "ok"})
    sources = sorted({r.backend_id for r in replicas} - set(pending))
    for backend_id in pending:
        job: dict[str, object] = {
            "version_pk": version.id,
            "tenant_id": new.tenant_id,
            "bucket_id": bucket.id,
            "key": new.key,
            "version_id": version.version_id,
            "target_backend_id": backend_id,
            "source_backend_ids": sources,
            "redundancy_class": new.redundancy_class,
            "encryption_required": encryption_required,
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
    entry = caller.entry(
        action,
        f"{bucket.name}/{new.key}",
        f"ok version={version.version_id} class={new.redundancy_class}"
        f" {'shards' if coded else 'replicas'}={len(holders) - len(pending)}/{len(holders)}"
        + (f" {detail}" if detail else ""),
        size=new.size,
    )
    if audit is None:
        await ctx.store.audit.append(conn, entry)
    else:
        audit.append(entry)
    return version, superseded


@dataclass(frozen=True)
class WrittenObject:
    """An object whose body is on its backends (write quorum met, every check of the body
    passed) and which is not committed yet, so invisible. ``store_objects`` commits it; a
    caller that gives it up instead hands it to ``discard_written`` (else its pieces wait for
    the orphan sweep)."""

    write: QuorumWrite
    new: NewVersion
    bucket: Bucket
    caller: Caller
    placed_under: str
    condition: WriteCondition | None
    encryption_required: bool
    action: str
    recipients: Sequence[Recipient]
    #: An import's region lock, recorded with the version at commit (``commit_written``).
    region_lock: tuple[str, ...] = ()


async def write_object(
    ctx: DataPath,
    *,
    caller: Caller,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    body: AsyncIterator[BodyChunk],
    length: int,
    envelope: Envelope | None,
    allow_plaintext: bool = False,
    requested_class: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
    http_headers: Mapping[str, str] | None = None,
    condition: WriteCondition | None = None,
    verified_checksums: Mapping[str, str] | None = None,
    action: str = "PutObject",
    region_lock: Collection[str] = (),
    recipients: Sequence[Recipient] = (),
    parts_in_flight: int = 1,
    settings: PlacementSettings | None = None,
) -> WrittenObject:
    """Everything of ``store_object`` but the commit: refuse what can be refused, place,
    quorum-write the body. A failure sends what was written to garbage and raises.

    ``settings``: the bucket's placement settings when the caller has just read them (a
    batch of writes to one bucket reads them once); the commit reads them again, locked,
    and marks a version placed under other rules for the placement checker, as always."""
    if length > ctx.settings.max_object_size:
        raise EntityTooLarge(
            f"Your proposed upload of {length} bytes exceeds the maximum of "
            f"{ctx.settings.max_object_size} bytes."
        )
    require_envelope(allow_plaintext, envelope)
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    if settings is None:
        async with ctx.store.db.connection() as conn:
            settings = await ctx.policies.placement_settings(conn, bucket.id)
    rc = resolve_class(policy, settings, requested_class).redundancy_class
    write = await start_write(
        ctx, rc, settings, length, region_lock=region_lock, parts_in_flight=parts_in_flight
    )
    checked_header: list[bytes] = []
    if envelope is not None:

        def check(header: bytes) -> None:
            parse_bp1_header(header, length)
            checked_header.append(header)  # kept with the version (rotation reads it there)

        body = bp1_checked(body, check)
    try:
        await run_write(write, body, length)
        checksum = stored_checksum(verified_checksums or {})
        new = NewVersion(
            tenant_id=tenant_id,
            bucket_id=bucket.id,
            key=key,
            version_id=new_version_id(),
            size=length,
            etag=write.md5_hex,
            sha256=write.sha256,
            content_type=content_type,
            user_metadata=dict(user_metadata or {}),
            redundancy_class=rc.name,
            part_size=write.part_size,
            part_count=len(write.parts),
            **envelope_columns(envelope),
            checksum_algorithm=checksum[0] if checksum else None,
            checksum_value=checksum[1] if checksum else None,
            checksum_type="FULL_OBJECT" if checksum else None,
            http_headers=dict(http_headers or {}),
            bp1_header=checked_header[0] if checked_header else None,
        )
    except BaseException:
        ctx.spawn(discard_write(ctx.store, ctx.registry, write.all_locators(), "failed write"))
        raise
    return WrittenObject(
        write=write,
        new=new,
        bucket=bucket,
        caller=caller,
        placed_under=placement_fingerprint(settings, policy_version),
        condition=condition,
        encryption_required=not allow_plaintext,
        action=action,
        recipients=tuple(recipients),
        region_lock=tuple(region_lock),
    )


def discard_written(ctx: DataPath, written: WrittenObject) -> None:
    """Give up a written object that will not be committed: its pieces go to garbage."""
    write = written.write
    ctx.spawn(discard_write(ctx.store, ctx.registry, write.all_locators(), "failed write"))


async def store_objects(ctx: DataPath, written: Sequence[WrittenObject]) -> list[ObjectVersion]:
    """Commit written objects together: ONE transaction for all of them (each one's rows,
    jobs and checks exactly as ``commit_written`` makes them alone, the audit entries
    appended together at its end), so every one becomes visible at once or none does. A
    target that completed since its quorum was met is recorded ``ok`` (no job, no
    straggler to finish). On failure nothing is committed and nothing is discarded: the
    caller may commit the objects again (alone) or ``discard_written`` them."""
    if not written:
        return []
    done = await _commit_together(ctx, written)
    for item, complete, version, superseded in done:
        await _committed(ctx, item, complete, version, superseded)
    return [version for _, _, version, _ in done]


_Committed = tuple[WrittenObject, frozenset[int], ObjectVersion, int | None]


async def _commit_together(ctx: DataPath, written: Sequence[WrittenObject]) -> list[_Committed]:
    """The one transaction of ``store_objects``: (object, backends complete at commit,
    version, superseded version's row id) for each, in order."""
    done: list[_Committed] = []
    async with ctx.store.db.transaction() as conn:
        entries: list[AuditEntry] = []
        for item in written:
            complete = frozenset(item.write.complete_backends())
            version, superseded = await commit_written(
                ctx,
                conn,
                item.caller,
                item.bucket,
                item.new,
                written_pieces(item.write, complete),
                written_layout(item.write),
                placed_under={item.placed_under},
                condition=item.condition,
                encryption_required=item.encryption_required,
                action=item.action,
                recipients=item.recipients,
                region_lock=item.region_lock,
                audit=entries,
            )
            done.append((item, complete, version, superseded))
        await ctx.store.audit.append_many(conn, entries)
    return done


async def _committed(
    ctx: DataPath,
    item: WrittenObject,
    complete: frozenset[int],
    version: ObjectVersion,
    superseded: int | None,
) -> None:
    """After the commit: drop the cached key, finish the stragglers, collect what the new
    version replaced."""
    await ctx.meta.invalidate_object(item.bucket.id, item.new.key)
    pending = [b for b in item.write.target_ids() if b not in complete]
    if pending:
        ctx.spawn(_finish(ctx, item.write, version, pending))
    if superseded is not None:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))


async def store_object(
    ctx: DataPath,
    *,
    caller: Caller,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    body: AsyncIterator[BodyChunk],
    length: int,
    envelope: Envelope | None,
    allow_plaintext: bool = False,
    requested_class: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
    http_headers: Mapping[str, str] | None = None,
    condition: WriteCondition | None = None,
    verified_checksums: Mapping[str, str] | None = None,
    action: str = "PutObject",
    region_lock: Collection[str] = (),
    recipients: Sequence[Recipient] = (),
    parts_in_flight: int = 1,
) -> ObjectVersion:
    """Write ``length`` bytes of ``body`` as the new version of ``key`` and commit it; the
    write path of PutObject, the plain /objects API, CopyObject's byte copy and the importer.

    ``requested_class``: the class asked for, None for the default chain. ``allow_plaintext``:
    whether the tenant may store an object without ``envelope``. ``verified_checksums``: the
    ``x-amz-checksum-*`` values the body was verified against (algorithm -> base64), read once
    the body is consumed (the verifying reader fills it as it ends); one is stored with the
    version (type ``FULL_OBJECT``). ``condition`` is checked in the commit transaction.
    ``region_lock``: an import's lock on top of the bucket's rules (``start_write``);
    ``recipients``: further wraps of the data key, committed with the version.
    ``parts_in_flight``: parts stored at once (1 for request bodies, whose memory must stay
    at one part; the importer, which bounds its own bytes in flight, sends several)."""
    written = await write_object(
        ctx,
        caller=caller,
        tenant_id=tenant_id,
        bucket=bucket,
        key=key,
        body=body,
        length=length,
        envelope=envelope,
        allow_plaintext=allow_plaintext,
        requested_class=requested_class,
        user_metadata=user_metadata,
        content_type=content_type,
        http_headers=http_headers,
        condition=condition,
        verified_checksums=verified_checksums,
        action=action,
        region_lock=region_lock,
        recipients=recipients,
        parts_in_flight=parts_in_flight,
    )
    try:
        if written.write.size <= INLINE_PART_MAX:
            await written.write.settle_all(SMALL_WRITE_GRACE_S)
        ((_, complete, version, superseded),) = await _commit_together(ctx, [written])
    except BaseException:
        discard_written(ctx, written)
        raise
    await _committed(ctx, written, complete, version, superseded)
    return version


async def _finish(
    ctx: DataPath, write: QuorumWrite, version: ObjectVersion, pending: list[int]
) -> None:
    """Finish in-flight replicas, then drop the cached version that still shows them pending."""
    if await finish_stragglers(ctx.store, write, version.id, pending):
        await ctx.meta.invalidate_object(version.bucket_id, version.key)
