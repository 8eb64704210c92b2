"""The live view of the federation's backends inside one process (a gateway replica, an agent).

It joins the stored registry (PostgreSQL) with each backend's actor handle and its observed
health. Health is refreshed by pinging the actors periodically and lowered at once when a call
fails (passive detection), so placement avoids a dead backend within one request, not one
sweep. Backends added at run time appear at the next ``refresh()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from actors.backend_actor import BackendSpec, get_or_create_backend_actor
from core.placement import BackendView
from schema.records import BackendRecord
from schema.store import MetadataStore

__all__ = ["BackendHandle", "BackendRegistry"]

log = logging.getLogger(__name__)


@dataclass
class BackendHandle:
    record: BackendRecord
    actor: Any
    healthy: bool
    rtt_ms: float
    failed_at: float = 0.0

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    def view(self) -> BackendView:
        r = self.record
        return BackendView(
            name=r.name,
            region=r.region,
            country=r.country,
            jurisdiction=r.jurisdiction,
            provider=r.provider,
            state=r.state,
            healthy=self.healthy,
            rtt_ms=self.rtt_ms,
            throughput_mbps=r.throughput_mbps,
            capacity_bytes=r.capacity_bytes,
            used_bytes=r.used_bytes,
        )


def spec_of(record: BackendRecord, timeout_s: float) -> BackendSpec:
    return BackendSpec(
        name=record.name,
        kind=record.kind,
        endpoint=record.endpoint,
        bucket=record.bucket,
        path=record.path,
        sealed_credentials=record.sealed_credentials,
        region="us-east-1",
        timeout_s=timeout_s,
    )


class BackendRegistry:
    def __init__(
        self,
        store: MetadataStore,
        master_key_file: str,
        *,
        backend_timeout_s: float = 30.0,
        refresh_interval_s: float = 2.0,
        ping_timeout_s: float = 5.0,
    ) -> None:
        self._store = store
        self._master_key_file = master_key_file
        self._timeout = backend_timeout_s
        self._refresh_interval = refresh_interval_s
        self._ping_timeout = ping_timeout_s
        self._handles: dict[int, BackendHandle] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def all(self) -> list[BackendHandle]:
        return list(self._handles.values())

    def get(self, backend_id: int) -> BackendHandle | None:
        return self._handles.get(backend_id)

    def by_name(self, name: str) -> BackendHandle | None:
        return next((h for h in self._handles.values() if h.name == name), None)

    async def current(self) -> list[BackendHandle]:
        """Handles, reloaded from the database when the last load is older than the interval."""
        if time.monotonic() - self._loaded_at > self._refresh_interval:
            await self.refresh()
        return self.all()

    async def refresh(self) -> None:
        async with self._lock:
            async with self._store.db.connection() as conn:
                records = await self._store.backends.list(conn)
            fresh: dict[int, BackendHandle] = {}
            for record in records:
                old = self._handles.get(record.id)
                if (
                    old is not None
                    and old.record.endpoint == record.endpoint
                    and (old.record.path == record.path)
                ):
                    old.record = record
                    # A call failure lowers health until the next successful ping.
                    if not old.failed_at:
                        old.healthy = record.healthy
                    fresh[record.id] = old
                    continue
                actor = get_or_create_backend_actor(
                    spec_of(record, self._timeout), self._master_key_file
                )
                fresh[record.id] = BackendHandle(
                    record=record, actor=actor, healthy=record.healthy, rtt_ms=record.rtt_ms
                )
            self._handles = fresh
            self._loaded_at = time.monotonic()

    def mark_failed(self, backend_id: int, error: str) -> None:
        handle = self._handles.get(backend_id)
        if handle is not None and handle.healthy:
            log.warning("backend %s marked unhealthy: %s", handle.name, error)
            handle.healthy = False
            handle.failed_at = time.monotonic()

    async def ping_all(self, *, record: bool = True) -> dict[str, dict[str, Any]]:
        """Ping every backend concurrently and record the outcome in memory and, with
        ``record`` (the gateway's sweep), in the database. Self-healing processes keep their
        view to themselves: one slow ping from a busy agent must not mark a backend down for
        every gateway."""
        handles = await self.current()

        async def one(handle: BackendHandle) -> dict[str, Any]:
            try:
                result: dict[str, Any] = await asyncio.wait_for(
                    handle.actor.ping.remote(), timeout=self._ping_timeout
                )
            except Exception as exc:  # an actor crash or timeout is an unhealthy backend
                result = {
                    "healthy": False,
                    "rtt_ms": None,
                    "error": f"ping failed: {type(exc).__name__}",
                }
            handle.healthy = bool(result["healthy"])
            handle.failed_at = 0.0 if handle.healthy else time.monotonic()
            if result["rtt_ms"] is not None:
                handle.rtt_ms = float(result["rtt_ms"])
            return result

        results = await asyncio.gather(*(one(h) for h in handles))
        if not record:
            return {h.name: r for h, r in zip(handles, results, strict=True)}
        with contextlib.suppress(Exception):
            async with self._store.db.transaction() as conn:
                for handle, result in zip(handles, results, strict=True):
                    await self._store.backends.record_health(
                        conn,
                        handle.id,
                        healthy=bool(result["healthy"]),
                        rtt_ms=result["rtt_ms"],
                        error=result["error"],
                    )
                    handle.record = replace(handle.record, healthy=bool(result["healthy"]))
        return {h.name: r for h, r in zip(handles, results, strict=True)}

    async def health_loop(self, interval_s: float) -> None:
        while True:
            try:
                await self.ping_all()
            except Exception:  # keep sweeping; the next round may succeed
                log.exception("health sweep failed")
            await asyncio.sleep(interval_s)
