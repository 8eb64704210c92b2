"""The repairer: every stored object gets back to its class.

Invariant it restores: every replica row that is not ``ok`` has an active job that will make it
``ok`` (or move it), and every version has replica rows on as many backends as its class asks
for. It only *enqueues* (the agents do the copying), so it is cheap and safe to run often:

- replicas ``pending`` -> a ``replicate`` job (the write path's key, so a job the write path
  already queued is not doubled); ``corrupt`` or ``missing`` -> a ``repair`` job (the read
  path's key). One job per (version, backend): the agent fixes every bad part of that replica.
- versions whose replica rows span fewer backends than the class's copies (a class redefined
  with more copies, rows dropped) -> an ``add_replica`` job.

It skips what already has an active data job for the same (version, backend), and work whose
job went to the dead letter less than ``dead_job_cooldown_s`` ago (the dead letter is for the
operator to see; after the cool-down the repairer tries again, since a backend may be back).
Erasure-coded shards are treated alike (a backend holds one shard index of every part): the
agent rebuilds them from ``k`` others instead of copying.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jobs.worker import Worker
from schema.jobs import (
    DATA_KINDS,
    PRIORITY,
    JobKind,
    add_replica_key,
    repair_key,
    replicate_key,
)
from schema.replicas import NotOkReplica

__all__ = ["Repairer"]


class Repairer(Worker):
    name = "repairer"

    def __init__(self, ctx: Any, *, page: int = 1000, max_enqueue: int = 20_000) -> None:
        super().__init__(ctx)
        self.page = page
        self.max_enqueue = max_enqueue

    async def run_once(self) -> dict[str, Any]:
        report: dict[str, int] = defaultdict(int)
        await self._bad_replicas(report)
        await self._short_versions(report)
        return dict(report)

    async def _bad_replicas(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        after = 0
        while report["enqueued"] < self.max_enqueue:
            async with ctx.store.db.connection() as conn:
                rows = await ctx.replicas.not_ok(conn, after_id=after, limit=self.page)
            if not rows:
                return
            after = rows[-1].id
            report["not_ok"] += len(rows)
            groups: dict[tuple[int, int], list[NotOkReplica]] = defaultdict(list)
            for row in rows:
                groups[(row.version_pk, row.backend_id)].append(row)
            if groups:
                await self._enqueue_groups(groups, report)

    async def _enqueue_groups(
        self, groups: dict[tuple[int, int], list[NotOkReplica]], report: dict[str, int]
    ) -> None:
        ctx = self.ctx
        work: list[tuple[JobKind, str, dict[str, Any]]] = []
        for (pk, backend), rows in sorted(groups.items()):
            bad = sorted((r for r in rows if r.status != "pending"), key=lambda r: r.part_number)
            if bad:
                first = bad[0]
                work.append(
                    (
                        JobKind.REPAIR,
                        repair_key(pk, backend, first.part_number),
                        {
                            "version_pk": pk,
                            "backend_id": backend,
                            "part_number": first.part_number,
                            "shard_index": first.shard_index,
                            "reason": first.status,
                        },
                    )
                )
            else:
                work.append(
                    (
                        JobKind.REPLICATE,
                        replicate_key(pk, backend),
                        {"version_pk": pk, "target_backend_id": backend, "reason": "pending"},
                    )
                )
        async with ctx.store.db.transaction() as conn:
            active = await ctx.queue.active_targets(conn, [pk for pk, _ in groups], DATA_KINDS)
            cooling = await ctx.queue.recently_dead_keys(
                conn, [key for _, key, _ in work], within_s=ctx.settings.dead_job_cooldown_s
            )
            for kind, key, payload in work:
                target = payload.get("backend_id", payload.get("target_backend_id"))
                if (payload["version_pk"], target) in active:
                    report["skipped_active"] += 1
                    continue
                if key in cooling:
                    report["skipped_dead"] += 1
                    continue
                job = await ctx.queue.enqueue(
                    conn, kind, payload, idempotency_key=key, priority=PRIORITY[kind]
                )
                if job is not None:
                    report["enqueued"] += 1
                    report[f"enqueued_{kind}"] += 1

    async def _short_versions(self, report: dict[str, int]) -> None:
        ctx = self.ctx
        policy = await ctx.current_policy()
        widths = {n: c.width for n, c in policy.classes.items() if c.kind == "replication"}
        after = 0
        while report["enqueued"] < self.max_enqueue:
            async with ctx.store.db.connection() as conn:
                short = await ctx.replicas.short_versions(
                    conn, widths, after_pk=after, limit=self.page
                )
            if not short:
                return
            after = short[-1].version_pk
            report["short"] += len(short)
            async with ctx.store.db.transaction() as conn:
                pks = [s.version_pk for s in short]
                active = {pk for pk, _ in await ctx.queue.active_targets(conn, pks, DATA_KINDS)}
                keys = [add_replica_key(pk) for pk in pks]
                cooling = await ctx.queue.recently_dead_keys(
                    conn, keys, within_s=ctx.settings.dead_job_cooldown_s
                )
                for s in short:
                    if s.version_pk in active:
                        report["skipped_active"] += 1
                        continue
                    if add_replica_key(s.version_pk) in cooling:
                        report["skipped_dead"] += 1
                        continue
                    job = await ctx.queue.enqueue(
                        conn,
                        JobKind.ADD_REPLICA,
                        {
                            "version_pk": s.version_pk,
                            "reason": f"{s.backends} of {widths[s.redundancy_class]} backends",
                        },
                        idempotency_key=add_replica_key(s.version_pk),
                        priority=PRIORITY[JobKind.ADD_REPLICA],
                    )
                    if job is not None:
                        report["enqueued"] += 1
                        report[f"enqueued_{JobKind.ADD_REPLICA}"] += 1
