"""Everything one gateway replica holds for its lifetime, built once at start-up.

Per-request set-up (clients, connections, key files) stays out of the hot path: the pool,
the cache, the backend registry and the master key live here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from actors.registry import BackendRegistry
from actors.verified_reader import VerifiedReader
from cluster.config import Settings
from cluster.policy import PolicyDocument, builtin_policy
from cluster.sealing import MasterKey
from schema.cache import CachedReader
from schema.records import ObjectVersion, Replica
from schema.store import MetadataReader, MetadataStore

__all__ = ["GatewayContext"]

log = logging.getLogger(__name__)


@dataclass
class GatewayContext:
    settings: Settings
    store: MetadataStore
    meta: MetadataReader
    registry: BackendRegistry
    master_key: MasterKey
    policy: PolicyDocument
    reader: VerifiedReader = field(init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.reader = VerifiedReader(
            self.registry, self.report_bad_replica, timeout_s=self.settings.backend_timeout_s
        )

    @classmethod
    async def start(cls, settings: Settings) -> GatewayContext:
        store = await MetadataStore.connect(settings.database_url, max_size=20)
        master = MasterKey.from_file_text(settings.master_key_path.read_text())
        registry = BackendRegistry(
            store,
            str(settings.master_key_path.resolve()),
            backend_timeout_s=settings.backend_timeout_s,
        )
        meta = CachedReader(store, settings.redis_url, ttl_s=settings.cache_ttl_s)
        ctx = cls(
            settings=settings,
            store=store,
            meta=meta,
            registry=registry,
            master_key=master,
            policy=builtin_policy(),
        )
        try:
            await registry.refresh()
        except Exception:  # the database may come up later; requests will retry the refresh
            log.exception("initial backend registry load failed")
        ctx.spawn(registry.health_loop(settings.health_interval_s))
        return ctx

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run background work (stragglers, garbage) without letting it be garbage-collected."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def report_bad_replica(
        self, version: ObjectVersion, replica: Replica, status: str
    ) -> None:
        """Mark a replica that failed verification and queue its repair, in one transaction."""
        async with self.store.db.transaction() as conn:
            changed = await self.store.objects.set_replica_status(conn, [replica.id], status)
            if changed:
                await self.store.jobs.enqueue(
                    conn,
                    "repair",
                    {
                        "version_pk": version.id,
                        "backend_id": replica.backend_id,
                        "part_number": replica.part_number,
                        "reason": status,
                    },
                    idempotency_key=f"repair:{version.id}:{replica.backend_id}:{replica.part_number}",
                    priority=50,
                )
        await self.meta.invalidate_object(version.bucket_id, version.key)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if isinstance(self.meta, CachedReader):
            await self.meta.close()
        await self.store.close()
