"""The live view of the federation's backends inside one process: the one backend model.

It joins the stored registry (PostgreSQL) with each backend's connection and its observed
health, and gives the five byte calls (``fetch``, ``store``, ``head``, ``delete``, ``list``)
that raise only our domain errors. The connection is a Ray actor handle or a client built in
this process, depending on the transport (``actors.backend_transport``); everything else -
when to reload, when a backend counts as rebuilt, how health is lowered and raised - is the
same for both, so gateways, agents in Ray and agents outside Ray cannot drift apart.

Health is refreshed by pinging periodically and lowered at once when a call fails (passive
detection), so placement avoids a dead backend within one request, not one sweep. Only the
gateway records ping results in the database (``ping_all(record=True)``): one slow ping from a
busy agent must not mark a backend down for every gateway. Backends added at run time appear
at the next ``refresh()``; a backend whose endpoint, bucket or directory changed gets a new
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from actors.backend_transport import BackendTransport, Fetched, domain_error
from core.errors import BackendUnavailable
from core.placement import BackendView
from schema.records import BackendRecord
from schema.store import MetadataStore

__all__ = ["BackendHandle", "BackendRegistry"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class BackendHandle:
    record: BackendRecord
    #: The connection: a ``BackendActor`` handle (Ray transport) or a client (direct).
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


def _same_backend(old: BackendRecord, new: BackendRecord) -> bool:
    """Whether a stored backend still addresses the same bytes (else: a new connection)."""
    return (old.endpoint, old.bucket, old.path) == (new.endpoint, new.bucket, new.path)


class BackendRegistry:
    def __init__(
        self,
        store: MetadataStore,
        transport: BackendTransport,
        *,
        backend_timeout_s: float = 30.0,
        refresh_interval_s: float = 2.0,
        ping_timeout_s: float = 5.0,
        list_timeout_s: float = 600.0,
    ) -> None:
        self._store = store
        self.transport = transport
        self._timeout = backend_timeout_s
        self._refresh_interval = refresh_interval_s
        self._ping_timeout = ping_timeout_s
        self._list_timeout = list_timeout_s
        self._handles: dict[int, BackendHandle] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    # -- the live set ---------------------------------------------------------------------------
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
                if old is not None and _same_backend(old.record, record):
                    old.record = record
                    # A call failure lowers health until the next successful ping.
                    if not old.failed_at:
                        old.healthy = record.healthy
                    fresh[record.id] = old
                    continue
                fresh[record.id] = BackendHandle(
                    record=record,
                    actor=self.transport.connect(record, self._timeout),
                    healthy=record.healthy,
                    rtt_ms=record.rtt_ms,
                )
            self._handles = fresh
            self._loaded_at = time.monotonic()

    def mark_failed(self, backend_id: int, error: str) -> None:
        handle = self._handles.get(backend_id)
        if handle is not None and handle.healthy:
            log.warning("backend %s marked unhealthy: %s", handle.name, error)
            handle.healthy = False
            handle.failed_at = time.monotonic()

    # -- health ---------------------------------------------------------------------------------
    async def ping_all(self, *, record: bool = False) -> dict[str, dict[str, Any]]:
        """Ping every backend concurrently and keep the outcome in memory and, with ``record``
        (the gateway's sweep), in the database (see the module docstring)."""
        handles = await self.current()

        async def one(handle: BackendHandle) -> dict[str, Any]:
            try:
                result = await asyncio.wait_for(
                    self.transport.ping(handle.actor), timeout=self._ping_timeout
                )
            except Exception as exc:  # a crash or timeout is an unhealthy backend, never ours
                result = {
                    "healthy": False,
                    "rtt_ms": None,
                    "error": f"ping failed: {domain_error(exc)}",
                }
            handle.healthy = bool(result["healthy"])
            handle.failed_at = 0.0 if handle.healthy else time.monotonic()
            if result["rtt_ms"] is not None:
                handle.rtt_ms = float(result["rtt_ms"])
            if handle.healthy:
                handle.record = replace(handle.record, healthy=True)
            return result

        results = await asyncio.gather(*(one(h) for h in handles))
        if record:
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

    async def health_loop(self, interval_s: float, *, record: bool) -> None:
        while True:
            try:
                await self.ping_all(record=record)
            except Exception:  # keep sweeping; the next round may succeed
                log.exception("health sweep failed")
            await asyncio.sleep(interval_s)

    # -- bytes ----------------------------------------------------------------------------------
    def _handle(self, backend_id: int) -> BackendHandle:
        handle = self.get(backend_id)
        if handle is None:
            raise BackendUnavailable(f"backend {backend_id} is not registered (or removed)")
        return handle

    async def _guard(
        self, backend_id: int, call: Callable[[], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        try:
            return await asyncio.wait_for(call(), timeout=timeout_s or self._timeout)
        except Exception as exc:
            error = domain_error(exc)
            if isinstance(error, BackendUnavailable):
                self.mark_failed(backend_id, str(error))
            raise error from None

    async def fetch(self, backend_id: int, locator: str) -> Fetched:
        conn = self._handle(backend_id).actor
        return await self._guard(backend_id, lambda: self.transport.fetch(conn, locator))

    async def store(self, backend_id: int, locator: str, data: Fetched | bytes) -> None:
        conn = self._handle(backend_id).actor
        await self._guard(backend_id, lambda: self.transport.store(conn, locator, data))

    async def head(self, backend_id: int, locator: str) -> int | None:
        conn = self._handle(backend_id).actor
        return await self._guard(backend_id, lambda: self.transport.head(conn, locator))

    async def delete(self, backend_id: int, locator: str) -> None:
        conn = self._handle(backend_id).actor
        await self._guard(backend_id, lambda: self.transport.delete(conn, locator))

    async def list(self, backend_id: int) -> list[str]:
        conn = self._handle(backend_id).actor
        return await self._guard(backend_id, lambda: self.transport.list(conn), self._list_timeout)

    async def close(self) -> None:
        """Forget the connections (actors live on; clients are dropped with this process)."""
        self._handles.clear()
