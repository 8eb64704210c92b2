"""What every process on the data path holds for its lifetime, built once at start-up.

A gateway replica (``gateway.context.GatewayContext`` adds what only it needs), and the
writers, readers and healers that run without an HTTP request in hand, share this one
context: the metadata store and its Redis-cached reader, the live backends, the verified
reader, the policy in force and the erasure layouts, and "report a bad replica". Per-request
set-up (clients, connections, key files) stays out of the hot path.

The policy comes from the ``policies`` table (the built-in policy until a document is applied)
and is re-read when it is older than ``POLICY_REFRESH_S``, on the write path and by a
background loop, like the backend registry: a document applied through another replica is in
force here within a few seconds, and at once on the replica that applied it. If the first
load fails the replica refuses writes (``MetadataUnavailable``, a 503) rather than guess with
the built-in policy; after that a failed refresh keeps the last policy loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from actors.backend_transport import BackendTransport, DirectTransport, RayTransport
from actors.registry import BackendRegistry
from actors.verified_reader import VerifiedReader
from core.errors import MetadataUnavailable
from core.policy import PolicyDocument, builtin_policy
from core.sealing import MasterKey
from core.settings import Settings
from schema.cache import CACHE_MAC_PURPOSE, CachedReader
from schema.jobs import PRIORITY, JobKind, repair_key
from schema.parts import ErasurePart, PartRepository
from schema.policies import PolicyRepository
from schema.records import ObjectVersion, Replica
from schema.store import MetadataReader, MetadataStore

__all__ = ["POLICY_REFRESH_S", "BadReplica", "DataPath", "ReplicaRef"]

log = logging.getLogger(__name__)

#: Seconds a loaded policy is trusted before the version in force is checked again.
POLICY_REFRESH_S = 2.0
#: Erasure layouts kept per replica (a version's parts never change, so no invalidation).
_LAYOUT_CACHE = 4096


class ReplicaRef(Protocol):
    """Which replica a reader found bad, and where its object lives (for the cache)."""

    @property
    def version_pk(self) -> int: ...
    @property
    def bucket_id(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def replica_id(self) -> int: ...
    @property
    def backend_id(self) -> int: ...
    @property
    def part_number(self) -> int: ...
    @property
    def shard_index(self) -> int: ...


@dataclass(frozen=True)
class BadReplica:
    """A ``ReplicaRef`` from plain fields (``schema.replicas.ScrubTarget`` is another)."""

    version_pk: int
    bucket_id: int
    key: str
    replica_id: int
    backend_id: int
    part_number: int
    shard_index: int


@dataclass
class DataPath:
    settings: Settings
    store: MetadataStore
    meta: MetadataReader
    registry: BackendRegistry
    policy: PolicyDocument = field(default_factory=builtin_policy)
    policy_version: int = 0
    policies: PolicyRepository = field(default_factory=PolicyRepository)
    parts: PartRepository = field(default_factory=PartRepository)
    reader: VerifiedReader = field(init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _policy_checked_at: float = 0.0
    _policy_loaded: bool = False
    _policy_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _layouts: OrderedDict[int, list[ErasurePart]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.reader = VerifiedReader(
            self.registry,
            self.report_bad_replica,
            timeout_s=self.settings.backend_timeout_s,
            load_layout=self.erasure_layout,
            hedged=self.settings.hedged_reads,
        )

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        use_ray: bool = True,
        serving: bool = True,
        db_pool_size: int = 20,
        **extra: Any,
    ) -> Self:
        """Connect to PostgreSQL and Redis, load the backends and the policy.

        ``use_ray``: reach backends through their ``BackendActor``s, else with clients built in
        this process (``actors.backend_transport``). ``serving``: a gateway replica, which
        keeps the backends' stored health up to date and refreshes the policy in the
        background; a healer or importer reloads both on use instead. ``extra``: the fields a
        subclass adds (the gateway's master key)."""
        store = await MetadataStore.connect(settings.database_url, max_size=db_pool_size)
        key_file = str(settings.master_key_path.resolve())
        transport: BackendTransport = (
            RayTransport(key_file) if use_ray else DirectTransport(key_file)
        )
        registry = BackendRegistry(
            store,
            transport,
            backend_timeout_s=settings.backend_timeout_s,
            refresh_interval_s=2.0 if serving else 5.0,
            passive_hold_s=max(2.0, 2 * settings.health_interval_s),
            read_threads=settings.backend_read_threads,
        )
        meta = _cached_reader(store, settings, extra.get("master_key"))
        ctx = cls(settings=settings, store=store, meta=meta, registry=registry, **extra)
        if not serving:
            return ctx
        try:
            await registry.refresh()
        except Exception:  # the database may come up later; requests will retry the refresh
            log.exception("initial backend registry load failed")
        try:
            await ctx.refresh_policy()
        except Exception:  # likewise; writes refuse until a load succeeds
            log.exception("initial policy load failed")
        ctx.spawn(registry.health_loop(settings.health_interval_s, record=True))
        ctx.spawn(ctx._policy_loop())
        return ctx

    # -- the policy in force -------------------------------------------------------------------
    async def current_policy(self) -> PolicyDocument:
        """The policy in force, re-checked when older than ``POLICY_REFRESH_S``."""
        if not self._policy_loaded or time.monotonic() - self._policy_checked_at > POLICY_REFRESH_S:
            try:
                await self.refresh_policy()
            except Exception as exc:
                if not self._policy_loaded:
                    raise MetadataUnavailable("the policy in force could not be loaded") from exc
                log.warning(
                    "policy refresh failed; keeping version %d: %r", self.policy_version, exc
                )
        return self.policy

    async def refresh_policy(self) -> None:
        """Load the policy in force if its version differs from the one held (one cheap query
        when nothing changed)."""
        async with self._policy_lock:
            async with self.store.db.connection() as conn:
                version = await self.policies.current_version(conn)
                if version != self.policy_version or not self._policy_loaded:
                    version, document = await self.policies.in_force(conn)
                    self.use_policy(version, document)
            self._policy_checked_at = time.monotonic()
            self._policy_loaded = True

    def use_policy(self, version: int, document: PolicyDocument) -> None:
        """Put a just-applied document in force here without waiting for the refresh."""
        if version < self.policy_version:
            return
        if version != self.policy_version:
            log.info("policy version %d in force", version)
        self.policy, self.policy_version = document, version
        self._policy_loaded = True
        self._policy_checked_at = time.monotonic()

    async def _policy_loop(self) -> None:
        while True:
            await asyncio.sleep(POLICY_REFRESH_S)
            try:
                await self.current_policy()
            except Exception:  # keep trying; writes refuse meanwhile if nothing was ever loaded
                log.exception("policy refresh failed")

    # -- erasure layouts -----------------------------------------------------------------------
    async def erasure_layout(self, version: ObjectVersion) -> Sequence[ErasurePart]:
        """The parts of an erasure-coded version, from an LRU: they never change."""
        cached = self._layouts.get(version.id)
        if cached is not None:
            self._layouts.move_to_end(version.id)
            return cached
        async with self.store.db.connection() as conn:
            parts = await self.parts.of_version(conn, version.id)
        if parts:
            self._layouts[version.id] = parts
            while len(self._layouts) > _LAYOUT_CACHE:
                self._layouts.popitem(last=False)
        return parts

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run background work (stragglers, garbage) without letting it be garbage-collected."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def invalidate(self, bucket_id: int, key: str) -> None:
        """Readers must see changed replica states at once; a Redis outage only delays it (the
        cache's epoch and breaker handle that, see ``schema/cache.py``)."""
        try:
            await self.meta.invalidate_object(bucket_id, key)
        except Exception:  # the cache's own breaker already recorded the miss
            log.warning("cache invalidation failed for bucket %d", bucket_id)

    async def report_bad_replica(
        self, version: ObjectVersion, replica: Replica, status: str
    ) -> None:
        """Mark a replica that failed verification and queue its repair, in one transaction
        (every reader - gateway, scrubber, repairer - reports through here)."""
        await self.mark_bad_many(
            [
                BadReplica(
                    version_pk=version.id,
                    bucket_id=version.bucket_id,
                    key=version.key,
                    replica_id=replica.id,
                    backend_id=replica.backend_id,
                    part_number=replica.part_number,
                    shard_index=replica.shard_index,
                )
            ],
            status,
        )

    async def mark_bad_many(self, targets: Sequence[ReplicaRef], status: str) -> int:
        """Mark replicas ``status`` (``corrupt`` / ``missing``) and queue one repair job per
        replica (version, backend) in one transaction (a backend that came back empty loses
        thousands at once); returns how many changed."""
        changed_rows: list[ReplicaRef] = []
        queued: set[tuple[int, int]] = set()
        async with self.store.db.transaction() as conn:
            for t in sorted(targets, key=lambda t: (t.version_pk, t.backend_id, t.part_number)):
                if not await self.store.replicas.set_status(conn, [t.replica_id], status):
                    continue
                changed_rows.append(t)
                # One job per replica (version, backend): it repairs every bad part of it.
                if (t.version_pk, t.backend_id) not in queued:
                    queued.add((t.version_pk, t.backend_id))
                    await self.store.jobs.enqueue(
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

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.registry.close()
        if isinstance(self.meta, CachedReader):
            await self.meta.close()
        await self.store.close()


def _cached_reader(
    store: MetadataStore, settings: Settings, master: MasterKey | None
) -> MetadataReader:
    """The store behind the Redis cache, whose entries are MACed under a key derived from the
    master key (``schema/cache.py``). A process that cannot read the master key file reads
    PostgreSQL directly: an unauthenticated cache would let whoever writes to Redis choose
    identities and buckets."""
    if master is None:
        try:
            master = MasterKey.from_file_text(settings.master_key_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("master key unreadable (%r): metadata reads bypass the cache", exc)
            return store
    return CachedReader(
        store,
        settings.redis_url,
        mac_keys=master.derive(CACHE_MAC_PURPOSE),
        ttl_s=settings.cache_ttl_s,
    )
