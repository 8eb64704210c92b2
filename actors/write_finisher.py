"""Finishing the replicas a write committed as ``pending`` because they were still in flight.

When every outstanding part of a straggler is acknowledged, its replica rows become ``ok``
and its replication job is completed, in one transaction. If a straggler fails, nothing
changes: the job committed with the version stays queued for the replication agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from schema.store import MetadataStore

__all__ = ["finish_stragglers", "replicate_job_key"]

log = logging.getLogger(__name__)


def replicate_job_key(version_pk: int, backend_id: int) -> str:
    return f"replicate:{version_pk}:{backend_id}"


async def finish_stragglers(
    store: MetadataStore,
    version_pk: int,
    stragglers: Mapping[int, Sequence[asyncio.Future[Any]]],
) -> list[int]:
    """Await each straggler; returns the backend ids whose replica became ``ok``."""

    async def one(backend_id: int, futures: Sequence[asyncio.Future[Any]]) -> int | None:
        results = await asyncio.gather(*futures, return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results):
            return None
        return backend_id

    finished = [
        b for b in await asyncio.gather(*(one(b, f) for b, f in stragglers.items())) if b is not None
    ]
    if finished:
        async with store.db.transaction() as conn:
            for backend_id in finished:
                await store.objects.pending_replicas_done(conn, version_pk, backend_id)
                await store.jobs.complete_by_key(conn, replicate_job_key(version_pk, backend_id))
    return finished
