"""The scrubber: stored replicas are re-read and proven intact, on a rate-limited schedule.

Invariant it keeps: a replica row that says ``ok`` was verified (length and SHA-256 of the
bytes on its backend) no longer ago than the scrub cycle; one that fails is marked ``corrupt``
or ``missing`` and gets its ``repair`` job in the same transaction (the read path's rule), so
the agents rebuild it. It never changes bytes itself.

Two passes per run:

1. **Listing audit** (cheap, per backend, at most every ``scrub_listing_interval_s``): list
   the backend once and compare with the ``ok`` rows committed before the listing started; a
   row whose object is absent (confirmed by a HEAD) is ``missing``. This finds a backend that
   came back empty, or lost objects, in one LIST instead of one GET per object.
2. **Byte verification**: up to ``scrub_batch`` ``ok`` replicas, least recently verified first
   (never-verified first of all), each read and hashed (``actors.verified_reader.check_piece``,
   the check ``import verify`` makes too), throttled to ``scrub_bytes_per_s``.
   A backend that cannot be reached is skipped (that is health, not integrity).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from actors.healing import HealingContext
from actors.verified_reader import check_piece
from core.errors import BackendUnavailable
from jobs.worker import Worker
from schema.replicas import ScrubTarget

__all__ = ["Scrubber"]

log = logging.getLogger(__name__)


class Scrubber(Worker):
    name = "scrubber"

    def __init__(
        self,
        ctx: HealingContext,
        *,
        batch: int | None = None,
        bytes_per_s: int | None = None,
        listing_interval_s: float | None = None,
    ) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.batch = batch if batch is not None else s.scrub_batch
        self.bytes_per_s = bytes_per_s if bytes_per_s is not None else s.scrub_bytes_per_s
        self.listing_interval_s = (
            listing_interval_s if listing_interval_s is not None else s.scrub_listing_interval_s
        )

    async def run_once(self) -> dict[str, Any]:
        report: dict[str, int] = defaultdict(int)
        await self._listing_audit(report)
        await self._verify_bytes(report)
        return dict(report)

    # -- 1. listing audit ---------------------------------------------------------------------
    async def _listing_audit(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        async with ctx.store.db.connection() as conn:
            state = await ctx.worker_state.state(conn, self.name)
        listed: dict[str, float] = dict(state.get("listed", {}))
        now = time.time()
        for handle in await ctx.registry.current():
            # an archive backend holds no replicas (audit segments are checked by audit verify)
            if not handle.healthy or handle.record.state == "removed" or handle.record.archive:
                continue
            if now - listed.get(str(handle.id), 0.0) < self.listing_interval_s:
                continue
            started = await ctx.store.db.now()
            try:
                present = set(await ctx.registry.list(handle.id))
            except BackendUnavailable as exc:
                log.info("scrubber: cannot list %s: %s", handle.name, exc)
                report["unavailable"] += 1
                continue
            report["listed_backends"] += 1
            after = 0
            while True:
                async with ctx.store.db.connection() as conn:
                    rows = await ctx.store.replicas.ok_on_backend(
                        conn, handle.id, before=started, after_id=after, limit=5000
                    )
                if not rows:
                    break
                after = rows[-1].replica_id
                report["listing_checked"] += len(rows)
                absent = [row for row in rows if row.locator not in present]
                if absent:
                    gone = await self._confirm_absent(handle.id, absent, report)
                    if gone:
                        log.warning("scrubber: %d replicas missing on %s", len(gone), handle.name)
                        report["missing"] += await ctx.mark_bad_many(gone, "missing")
            listed[str(handle.id)] = now
        async with ctx.store.db.connection() as conn:
            await ctx.worker_state.set_state(conn, self.name, {**state, "listed": listed})

    async def _confirm_absent(
        self, backend_id: int, rows: list[ScrubTarget], report: dict[str, int]
    ) -> list[ScrubTarget]:
        """The rows whose object a HEAD confirms absent (a listing is only a hint)."""
        gate = asyncio.Semaphore(16)

        async def head(row: ScrubTarget) -> ScrubTarget | None:
            async with gate:
                try:
                    size = await self.ctx.registry.head(backend_id, row.locator)
                except BackendUnavailable:
                    report["unavailable"] += 1
                    return None
            return row if size is None else None

        found = await asyncio.gather(*(head(r) for r in rows))
        return [r for r in found if r is not None]

    # -- 2. byte verification -----------------------------------------------------------------
    async def _verify_bytes(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        if self.batch <= 0:
            return
        handles = {h.id: h for h in await ctx.registry.current()}
        reachable = [h.id for h in handles.values() if h.healthy]
        async with ctx.store.db.connection() as conn:
            targets = await ctx.store.replicas.least_recently_verified(
                conn, limit=self.batch, backend_ids=reachable
            )
        verified: list[int] = []
        start = time.monotonic()
        read = 0
        for target in targets:
            handle = handles.get(target.backend_id)
            if handle is None or not handle.healthy:
                report["skipped_unhealthy"] += 1
                continue
            outcome, length = await check_piece(
                ctx.registry, target.backend_id, target.locator, target.size, target.sha256
            )
            read += length
            if outcome == "unavailable":
                report["unavailable"] += 1
                continue
            if outcome != "ok":
                report[outcome] += await self._mark(target, outcome)
            else:
                verified.append(target.replica_id)
                report["verified"] += 1
            if len(verified) >= 200:
                await self._touch(verified)
                verified = []
            if self.bytes_per_s > 0:  # throttle: never faster than the configured rate
                ahead = read / self.bytes_per_s - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await self._touch(verified)
        report["verified_bytes"] += read

    async def _touch(self, replica_ids: list[int]) -> None:
        if replica_ids:
            async with self.ctx.store.db.connection() as conn:
                await self.ctx.store.replicas.touch_verified(conn, replica_ids)

    async def _mark(self, target: ScrubTarget, status: str) -> int:
        log.warning(
            "scrubber: replica %d (version %d part %d) on backend %d is %s",
            target.replica_id,
            target.version_pk,
            target.part_number,
            target.backend_id,
            status,
        )
        return await self.ctx.mark_bad_many([target], status)
