"""What every self-healing process holds: the metadata store, byte access to the backends,
the Redis cache (to invalidate what a repair changes) and the policy in force.

Built once per agent, scheduler or CLI run (``HealingContext.connect``), never per job. With
Ray it reaches backends through the named ``BackendActor``s; without it (``use_ray=False``)
through clients built in this process from the sealed credentials and the master key file.
Job kinds, their idempotency keys and priorities are ``schema/jobs.py``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.backend_pool import BackendPool, DirectBackendPool, RayBackendPool
from actors.registry import BackendRegistry
from core.placement import PlacementConstraints
from core.policy import PolicyDocument
from core.settings import Settings
from schema.cache import CachedReader
from schema.jobs import PRIORITY, Backoff, JobKind, JobQueue, repair_key
from schema.orphans import OrphanRepository
from schema.policies import PlacementSettings, PolicyRepository
from schema.records import ObjectVersion, Replica
from schema.replicas import ScrubTarget
from schema.snapshots import SnapshotRepository
from schema.store import MetadataStore
from schema.worker_state import WorkerStateRepository

__all__ = ["HealingContext", "constraints_of"]

log = logging.getLogger(__name__)

#: Seconds a loaded policy is trusted before the version in force is read again.
POLICY_REFRESH_S = 2.0


def constraints_of(settings: PlacementSettings) -> PlacementConstraints:
    """Placement constraints from a bucket's stored settings (same rule as the write path)."""
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


@dataclass
class HealingContext:
    settings: Settings
    store: MetadataStore
    pool: BackendPool
    cache: CachedReader | None = None
    queue: JobQueue = field(default_factory=JobQueue)
    orphans: OrphanRepository = field(default_factory=OrphanRepository)
    snapshots: SnapshotRepository = field(default_factory=SnapshotRepository)
    worker_state: WorkerStateRepository = field(default_factory=WorkerStateRepository)
    policies: PolicyRepository = field(default_factory=PolicyRepository)
    _policy: PolicyDocument | None = None
    _policy_at: float = 0.0
    _constraints: dict[int, tuple[float, PlacementConstraints]] = field(default_factory=dict)

    @classmethod
    async def connect(
        cls, settings: Settings, *, use_ray: bool, db_pool_size: int = 5
    ) -> HealingContext:
        """Connect to PostgreSQL and Redis and set up backend access (see the module doc)."""
        store = await MetadataStore.connect(settings.database_url, max_size=db_pool_size)
        key_file = str(Path(settings.master_key_path).resolve())
        pool: BackendPool
        if use_ray:
            registry = BackendRegistry(
                store, key_file, backend_timeout_s=settings.backend_timeout_s
            )
            pool = RayBackendPool(registry, timeout_s=settings.backend_timeout_s)
        else:
            pool = DirectBackendPool(store, key_file, timeout_s=settings.backend_timeout_s)
        cache = CachedReader(store, settings.redis_url, ttl_s=settings.cache_ttl_s)
        return cls(settings=settings, store=store, pool=pool, cache=cache)

    async def close(self) -> None:
        await self.pool.close()
        if self.cache is not None:
            await self.cache.close()
        await self.store.close()

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.settings.job_backoff_base_s, self.settings.job_backoff_max_s)

    async def policy(self) -> PolicyDocument:
        """The policy in force (``policies`` table; the built-in classes before any document
        is applied), re-read when older than ``POLICY_REFRESH_S`` like the gateway does."""
        if self._policy is None or time.monotonic() - self._policy_at > POLICY_REFRESH_S:
            async with self.store.db.connection() as conn:
                _, self._policy = await self.policies.in_force(conn)
            self._policy_at = time.monotonic()
        return self._policy

    async def constraints(self, version: ObjectVersion) -> PlacementConstraints:
        """Where this version may live beyond its class, exactly as the write path computes it
        (``gateway/s3/handlers/object_put.constraints_for``): the bucket's region lock and the
        tenant's region lock, jurisdiction lists and backend allow-list, all at once. Cached per
        bucket for ``POLICY_REFRESH_S``, like the policy (a repair is re-checked by the
        placement checker when settings change: they mark the objects)."""
        cached = self._constraints.get(version.bucket_id)
        if cached is not None and time.monotonic() - cached[0] <= POLICY_REFRESH_S:
            return cached[1]
        async with self.store.db.connection() as conn:
            settings = await self.policies.placement_settings(conn, version.bucket_id)
        constraints = constraints_of(settings)
        if len(self._constraints) > 10_000:
            self._constraints.clear()
        self._constraints[version.bucket_id] = (time.monotonic(), constraints)
        return constraints

    async def invalidate(self, bucket_id: int, key: str) -> None:
        """Readers must see a repair's new replica states; a Redis outage only delays it (the
        cache's epoch and breaker handle that, see ``schema/cache.py``)."""
        if self.cache is not None:
            try:
                await self.cache.invalidate_object(bucket_id, key)
            except Exception:  # the cache's own breaker already recorded the miss
                log.warning("cache invalidation failed for bucket %d", bucket_id)

    async def report_bad(self, version: ObjectVersion, replica: Replica, status: str) -> None:
        """Mark a replica that failed verification and queue its repair, in one transaction
        (the same rows and job the gateway's read path writes)."""
        await self.mark_bad(
            version_pk=version.id,
            bucket_id=version.bucket_id,
            key=version.key,
            replica_id=replica.id,
            backend_id=replica.backend_id,
            part_number=replica.part_number,
            shard_index=replica.shard_index,
            status=status,
        )

    async def mark_bad(
        self,
        *,
        version_pk: int,
        bucket_id: int,
        key: str,
        replica_id: int,
        backend_id: int,
        part_number: int,
        shard_index: int,
        status: str,
    ) -> bool:
        """``report_bad`` from plain fields; True if the replica's status changed."""
        async with self.store.db.transaction() as conn:
            changed = await self.store.replicas.set_status(conn, [replica_id], status)
            if changed:
                await self.queue.enqueue(
                    conn,
                    JobKind.REPAIR,
                    {
                        "version_pk": version_pk,
                        "backend_id": backend_id,
                        "part_number": part_number,
                        "shard_index": shard_index,
                        "reason": status,
                    },
                    idempotency_key=repair_key(version_pk, backend_id, part_number),
                    priority=PRIORITY[JobKind.REPAIR],
                )
        if changed:
            await self.invalidate(bucket_id, key)
        return bool(changed)

    async def mark_bad_many(self, targets: Sequence[ScrubTarget], status: str) -> int:
        """``mark_bad`` for many replicas in one transaction (a backend that came back empty
        loses thousands at once); returns how many changed."""
        changed_rows: list[ScrubTarget] = []
        queued: set[tuple[int, int]] = set()
        async with self.store.db.transaction() as conn:
            for t in sorted(targets, key=lambda t: (t.version_pk, t.backend_id, t.part_number)):
                if not await self.store.replicas.set_status(conn, [t.replica_id], status):
                    continue
                changed_rows.append(t)
                # One job per replica (version, backend): it repairs every bad part of it.
                if (t.version_pk, t.backend_id) not in queued:
                    queued.add((t.version_pk, t.backend_id))
                    await self.queue.enqueue(
                        conn,
                        JobKind.REPAIR,
                        {
                            "version_pk": t.version_pk,
                            "backend_id": t.backend_id,
                            "part_number": t.part_number,
                            "shard_index": t.shard_index,
                            "reason": status,
                        },
                        idempotency_key=repair_key(t.version_pk, t.backend_id, t.part_number),
                        priority=PRIORITY[JobKind.REPAIR],
                    )
        for key in {(t.bucket_id, t.key) for t in changed_rows}:
            await self.invalidate(*key)
        return len(changed_rows)

    def describe(self) -> dict[str, Any]:
        return {"pool": type(self.pool).__name__}
