"""The placement checker: objects whose replicas no longer satisfy their class get moved.

Invariant it restores: every stored version's replicas sit on backends that the policy in force
allows (active, inside the bucket's region lock and the region lock recorded with the version
by an import, jurisdiction lists) and that together satisfy
the class (regions, country, providers). A replica that breaks it gets a ``move`` job; the
agent copies it to a backend chosen by placement with the other replicas already placed, then
drops the old one (``actors/replica_repair.py``). The judgement is
``core.compliance.misplaced()``: pure, and every rule in it is the placement engine's own.

What it looks at, cheapest first:

1. ``placement_check`` jobs: marks written by whatever changed where objects may live (a
   policy document, a bucket's or tenant's lock, a backend's location or state: see
   ``schema/policies.py``). Leased like any job, completed once checked.
2. The changelog, incrementally from the last sequence number it processed (kept in
   ``worker_state``): versions written since the last run, which a gateway replica might have
   placed under a policy it had not yet reloaded.
3. A full sweep, resumable across runs (``max_versions`` per run), whenever the backends'
   topology (state, region, country, jurisdiction, provider) differs from the last sweep's,
   or ``full_sweep_s`` after the last one.

Objects short of replicas but otherwise compliant are the repairer's. Erasure-coded versions
are judged the same way (each shard's backend is a holder); the agent moves a shard by
rebuilding it on its new backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from typing import Any

from actors.healing import HealingContext
from core.compliance import misplaced
from core.placement import PlacementConstraints
from jobs.worker import Worker
from schema.jobs import DATA_KINDS, PRIORITY, JobKind, move_key

__all__ = ["PlacementChecker"]

log = logging.getLogger(__name__)


class PlacementChecker(Worker):
    name = "placement_checker"

    def __init__(
        self,
        ctx: HealingContext,
        *,
        max_versions: int = 20_000,
        full_sweep_s: float = 86400.0,
        page: int = 500,
    ) -> None:
        super().__init__(ctx)
        self.max_versions = max_versions
        self.full_sweep_s = full_sweep_s
        self.page = page
        self._owner = f"{self.name}:{id(self):x}"

    async def run_once(self) -> dict[str, Any]:
        report: dict[str, int] = defaultdict(int)
        await self._marked(report)
        await self._changelog(report)
        await self._sweep(report)
        return dict(report)

    # -- sources of versions to check ---------------------------------------------------------
    async def _marked(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        while report["checked"] < self.max_versions:
            async with ctx.store.db.connection() as conn:
                jobs = await ctx.queue.lease(
                    conn,
                    self._owner,
                    kinds=(JobKind.PLACEMENT_CHECK,),
                    lease_s=300,
                    limit=self.page,
                )
            if not jobs:
                return
            pks = []
            for job in jobs:
                try:
                    pks.append(int(job.payload["version_pk"]))
                except (KeyError, TypeError, ValueError):
                    log.error("placement_check job %d has no version_pk", job.id)
            await self._check(pks, report)
            async with ctx.store.db.transaction() as conn:
                for job in jobs:
                    await ctx.queue.complete(conn, job, self._owner)
            report["marks"] += len(jobs)

    async def _changelog(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        async with ctx.store.db.connection() as conn:
            cursor = await ctx.worker_state.cursor(conn, self.name)
        while report["checked"] < self.max_versions:
            async with ctx.store.db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT c.seq, v.id FROM changelog c LEFT JOIN object_versions v"
                    " ON v.bucket_id = c.bucket_id AND v.key = c.key"
                    " AND v.version_id = c.version_id"
                    " WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
                    cursor,
                    self.page,
                )
            if not rows:
                return
            await self._check([r["id"] for r in rows if r["id"] is not None], report)
            cursor = rows[-1]["seq"]
            report["changelog"] += len(rows)
            async with ctx.store.db.connection() as conn:
                await ctx.worker_state.set_cursor(conn, self.name, cursor)

    async def _sweep(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        handles = await ctx.registry.current()
        topology = hashlib.sha256(
            json.dumps(
                sorted(
                    (
                        h.id,
                        h.record.state,
                        h.record.region,
                        h.record.country,
                        h.record.jurisdiction,
                        h.record.provider,
                    )
                    for h in handles
                )
            ).encode()
        ).hexdigest()
        async with ctx.store.db.connection() as conn:
            state = await ctx.worker_state.state(conn, self.name)
        after = int(state.get("sweep_after", 0))
        stale = time.time() - float(state.get("swept_at", 0)) > self.full_sweep_s
        if after == 0 and state.get("topology") == topology and not stale:
            return
        if after == 0:
            report["sweeps_started"] += 1
        while report["checked"] < self.max_versions:
            async with ctx.store.db.connection() as conn:
                pks = await ctx.replicas.version_pks(conn, after_pk=after, limit=self.page)
            if not pks:
                after = 0
                state.update(topology=topology, swept_at=time.time())
                report["sweeps_finished"] += 1
                break
            await self._check(pks, report)
            after = pks[-1]
        state["sweep_after"] = after
        async with ctx.store.db.connection() as conn:
            await ctx.worker_state.set_state(conn, self.name, state)

    # -- the check ----------------------------------------------------------------------------
    async def _check(self, version_pks: list[int], report: dict[str, int]) -> None:
        ctx = self.ctx
        if not version_pks:
            return
        policy = await ctx.current_policy()
        handles = {h.id: h for h in await ctx.registry.current()}
        candidates = [h.view() for h in handles.values()]
        moves: list[tuple[int, int, str]] = []
        constraints_by_bucket: dict[int, PlacementConstraints] = {}
        async with ctx.store.db.connection() as conn:
            locks = await ctx.policies.version_region_locks(conn, version_pks)
            for pk in version_pks:
                version = await ctx.store.versions.get_by_pk(conn, pk)
                report["checked"] += 1
                if version is None or version.is_delete_marker:
                    continue
                rc = policy.classes.get(version.redundancy_class)
                if rc is None:
                    report["unknown_class"] += 1
                    continue
                if version.bucket_id not in constraints_by_bucket:
                    settings = await ctx.policies.placement_settings(conn, version.bucket_id)
                    constraints_by_bucket[version.bucket_id] = settings.constraints
                constraints = constraints_by_bucket[version.bucket_id].with_import_lock(
                    locks.get(pk, ())
                )
                holder_ids = sorted({r.backend_id for r in version.replicas})
                gone = [b for b in holder_ids if b not in handles]  # removed backends
                holders = [handles[b].view() for b in holder_ids if b in handles]
                by_name = {h.name: h.id for h in handles.values()}
                for backend_id in gone:
                    moves.append((pk, backend_id, "backend removed"))
                for view in misplaced(rc, constraints, holders, candidates):
                    moves.append((pk, by_name[view.name], f"{view.name} no longer fits the class"))
        if not moves:
            return
        report["misplaced"] += len(moves)
        async with ctx.store.db.transaction() as conn:
            active = await ctx.queue.active_targets(conn, [pk for pk, _, _ in moves], DATA_KINDS)
            for pk, backend_id, reason in moves:
                if (pk, backend_id) in active:
                    report["skipped_active"] += 1
                    continue
                job = await ctx.queue.enqueue(
                    conn,
                    JobKind.MOVE,
                    {"version_pk": pk, "backend_id": backend_id, "reason": reason},
                    idempotency_key=move_key(pk, backend_id),
                    priority=PRIORITY[JobKind.MOVE],
                )
                report["moves_enqueued"] += job is not None
