"""Deleting backend objects that metadata no longer references.

The ``garbage`` table is the outbox of deletions: rows are written in the same transaction
that drops a reference (overwrite, delete) or by a write that failed before its commit. A
row is forgotten only after its backend confirmed the delete (or reports the object absent),
so a crash loses nothing; and a locator that a replica row or an upload's part still
references is never deleted. That check is the reference count of shared backend objects: a
CopyObject may point its replica rows at its source's objects, so dropping one version hands
its locators to ``garbage`` while another version still needs them. The collector then
forgets the row and keeps the object; the last version to let go queues it again. (A copy
locks its source's row, and every drop locks the row it drops, so no copy can add a reference
to an object whose last holder is being dropped.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from actors.registry import BackendRegistry
from core.errors import BackendNotFound
from schema.store import MetadataStore

__all__ = ["collect_garbage", "discard_write"]

log = logging.getLogger(__name__)


async def collect_garbage(
    store: MetadataStore, registry: BackendRegistry, *, limit: int = 500
) -> tuple[int, int]:
    """Delete one batch of garbage on the backends that are up; returns (rows resolved, rows
    left for a later pass). A row whose locator is still referenced (shared by a copy) or
    already absent on its backend is resolved without a delete; a removed backend's rows wait
    (nothing can delete there now)."""
    healthy = [h.id for h in await registry.current() if h.healthy]
    async with store.db.connection() as conn:
        rows = await store.garbage.take_on(conn, healthy, limit)
        if not rows:
            return 0, 0
        still_used = await store.garbage.referenced(conn, [(b, loc) for _, b, loc in rows])

    async def delete(garbage_id: int, backend_id: int, locator: str) -> int | None:
        if (backend_id, locator) in still_used:
            log.debug("garbage row %d: locator still referenced (shared); kept", garbage_id)
            return garbage_id
        if registry.get(backend_id) is None:
            return None
        try:
            await registry.delete(backend_id, locator)
        except BackendNotFound:
            return garbage_id
        except Exception as exc:  # retried at the next collection
            log.info("garbage delete on backend %d failed: %s", backend_id, exc)
            return None
        return garbage_id

    results = await asyncio.gather(*(delete(*row) for row in rows))
    done = [gid for gid in results if gid is not None]
    if done:
        async with store.db.transaction() as conn:
            await store.garbage.forget(conn, done)
    return len(done), len(rows) - len(done)


async def discard_write(
    store: MetadataStore, registry: BackendRegistry, items: Sequence[tuple[int, str]], reason: str
) -> None:
    """Record what an uncommitted write left on backends, then try to delete it right away."""
    if not items:
        return
    try:
        async with store.db.transaction() as conn:
            await store.garbage.add(conn, items, reason)
    except Exception:  # the vacuumer's backend listing finds these orphans later
        log.exception("could not record %d orphaned backend objects", len(items))
        return
    await collect_garbage(store, registry)
