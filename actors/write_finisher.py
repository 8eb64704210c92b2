"""Finishing the replicas a write committed as ``pending`` because they were still in flight.

When every outstanding part of a straggler is acknowledged, its replica rows become ``ok``
and its replication job is completed, in one transaction. If a straggler fails, nothing
changes: the job committed with the version stays queued for the replication agents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from actors.quorum_writer import QuorumWrite
from schema.jobs import replicate_key
from schema.store import MetadataStore

__all__ = ["finish_stragglers"]


async def finish_stragglers(
    store: MetadataStore, write: QuorumWrite, version_pk: int, pending: Collection[int]
) -> list[int]:
    """Settle each target committed as pending; returns the ids whose replica became ``ok``.

    ``pending`` is exactly the set committed as pending (decided at commit time), so a
    straggler that finished between the commit and this call is still recorded.
    """
    live = set(write.live_backends())
    outcomes = await asyncio.gather(*(write.settle(b) for b in pending if b in live))
    finished = [b for b, ok in zip([b for b in pending if b in live], outcomes, strict=True) if ok]
    if finished:
        async with store.db.transaction() as conn:
            for backend_id in finished:
                await store.replicas.pending_done(conn, version_pk, backend_id)
                await store.jobs.complete_by_key(conn, replicate_key(version_pk, backend_id))
    return finished
