"""The vacuumer: removes what nothing references, and nothing else.

Invariant: a backend object that a replica row, a garbage row or a snapshot part names is never
deleted by it. What it removes:

1. **Garbage rows** (superseded and deleted versions, failed writes and repairs, moved
   replicas, expired snapshots): deleted from their backend, then the row is forgotten
   (``actors.garbage.collect_garbage``; a locator a replica row names is kept).
2. **Orphans**: objects a backend lists that no row names, left by a crash between backend
   writes and the metadata commit. Each backend is listed; unreferenced locators are recorded
   with the time first seen (``schema/orphans.py``); those unreferenced for longer than
   ``orphan_grace_s`` become garbage in one transaction and go through step 1. The grace
   period must exceed the longest write in flight (a write's objects look like orphans until
   it commits); tests use 0 with no write in flight.
3. **Finished jobs** older than ``job_retention_s`` (dead-lettered ones stay for the operator).

Noncurrent versions and delete markers are not expired here: there are no lifecycle rules
(PutBucketLifecycleConfiguration is 501), so they stay until deleted by version id, and a
version deleted so hands its backend objects to ``garbage`` in its transaction (step 1).
Expired multipart uploads are the upload expirer's (``jobs/upload_expirer.py``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from actors.garbage import collect_garbage
from actors.healing import HealingContext
from core.errors import BackendUnavailable
from jobs.worker import Worker

__all__ = ["Vacuumer"]

log = logging.getLogger(__name__)

_CHUNK = 1000


class Vacuumer(Worker):
    name = "vacuumer"

    def __init__(
        self,
        ctx: HealingContext,
        *,
        grace_s: float | None = None,
        max_garbage_batches: int = 200,
        list_backends: bool = True,
    ) -> None:
        super().__init__(ctx)
        self.grace_s = grace_s if grace_s is not None else ctx.settings.orphan_grace_s
        self.max_batches = max_garbage_batches
        self.list_backends = list_backends

    async def run_once(self) -> dict[str, Any]:
        report: dict[str, int] = defaultdict(int)
        await self._collect(report)
        if self.list_backends:
            await self._orphans(report)
            await self._collect(report)
        async with self.ctx.store.db.connection() as conn:
            report["jobs_purged"] += await self.ctx.queue.purge_finished(
                conn, older_than_s=self.ctx.settings.job_retention_s
            )
        return dict(report)

    async def _collect(self, report: dict[str, int]) -> None:
        for _ in range(self.max_batches):
            resolved, left = await collect_garbage(self.ctx.store, self.ctx.registry)
            report["garbage_deleted"] += resolved
            if resolved == 0:
                report["garbage_left"] = left
                return

    async def _orphans(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        for handle in await ctx.registry.current():
            # an archive backend holds audit segments, which no replica row names
            if not handle.healthy or handle.record.state == "removed" or handle.record.archive:
                continue
            started = await ctx.store.db.now()
            try:
                listing = await ctx.registry.list(handle.id)
            except BackendUnavailable as exc:
                log.info("vacuumer: cannot list %s: %s", handle.name, exc)
                report["unavailable"] += 1
                continue
            report["listed"] += len(listing)
            for i in range(0, len(listing), _CHUNK):
                chunk = listing[i : i + _CHUNK]
                async with ctx.store.db.transaction() as conn:
                    unreferenced = await ctx.orphans.unreferenced(conn, handle.id, chunk)
                    await ctx.orphans.sight(conn, handle.id, unreferenced)
                report["orphans_seen"] += len(unreferenced)
            async with ctx.store.db.transaction() as conn:
                await ctx.orphans.forget_unseen(conn, handle.id, listed_since=started)
                promoted = await ctx.orphans.promote(conn, handle.id, grace_s=self.grace_s)
            if promoted:
                log.warning(
                    "vacuumer: %d orphaned objects on %s go to garbage", len(promoted), handle.name
                )
            report["orphans_collected"] += len(promoted)
