"""The live view of the federation's backends inside one process: the one backend model.

It joins the stored registry (PostgreSQL) with each backend's connection and its observed
health, and gives the five byte calls (``fetch``, ``store``, ``head``, ``delete``, ``list``)
that raise only our domain errors. The connection is a Ray actor handle or a client built in
this process, depending on the transport (``actors.backend_transport``); everything else -
when to reload, when a backend counts as rebuilt, how health is lowered and raised - is the
same for both, so gateways, agents in Ray and agents outside Ray cannot drift apart.

Health has two layers:

- **Shared** (the stored ``health_state``: healthy / degraded / down, ``core.health``): one
  *recorder* - the gateway replica holding the ``health_recorder`` run lease, or an operator's
  explicit ping - folds each probe into the stored moving averages under a row lock and
  writes the state; every process reads it on ``refresh()``. Hysteresis lives there, so a
  flapping backend does not thrash placement. When a backend leaves ``down`` the recorder
  makes the work it owes due at once in the same transaction: its queued replicate/repair
  jobs run now, and its pending replicas without a job get one.
- **Local and passive**: a call that fails marks the backend unusable in this process at once
  (placement avoids a dead backend within one request, not one sweep), for ``passive_hold_s``;
  a failed ping does the same. The mark is lifted by a good ping after the hold, or at once by
  an operator's ping.

A backend is usable when its shared state is not ``down`` and it is not marked here. Backends
added at run time appear at the next ``refresh()``; a backend whose endpoint, bucket,
directory or connection settings changed gets a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from actors.backend_transport import BackendTransport, Fetched, domain_error, spec_of
from actors.metrics import backend_metrics
from actors.read_lanes import ReadLane, ReadLatency
from core.errors import BackendUnavailable
from core.health import BackendHealth, HealthSample, observe
from core.placement import BackendView
from schema.jobs import DATA_KINDS, PRIORITY, JobKind, replicate_key
from schema.records import BackendRecord
from schema.store import MetadataStore
from schema.worker_state import WorkerStateRepository

__all__ = ["HEALTH_LEASE", "BackendHandle", "BackendRegistry"]

#: The run lease (``worker_state``) whose holder records health sweeps.
HEALTH_LEASE = "health_recorder"

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class BackendHandle:
    record: BackendRecord
    #: The connection: a ``BackendActor`` handle (Ray transport) or a client (direct).
    actor: Any
    healthy: bool
    rtt_ms: float
    #: Until when a local failure keeps this backend unusable here (monotonic clock).
    hold_until: float = 0.0
    #: Recent read latencies here: the hedge delay and the slow streak (``read_lanes``).
    latency: ReadLatency = field(default_factory=ReadLatency)
    #: This process's own read client, built on first read (None: reads use the transport).
    lane: ReadLane | None = None
    lane_built: bool = False
    #: Until when reads rank this backend last: overtaken too often (``overtaken``).
    slow_until: float = 0.0

    @property
    def read_slow(self) -> bool:
        """Reads ask it last for now: hedges kept overtaking it (a read circuit, not health)."""
        return time.monotonic() < self.slow_until

    @property
    def lane_full(self) -> bool:
        """Its read lane has no free thread: a read now would wait behind stuck calls."""
        return self.lane is not None and self.lane.full

    @property
    def state(self) -> str:
        """healthy / degraded / down as this process acts on it."""
        return "down" if not self.healthy else self.record.health_state

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
            archive=r.archive,
        )


def _same_backend(old: BackendRecord, new: BackendRecord) -> bool:
    """Whether a stored backend is still reached the same way (else: a new connection)."""
    return spec_of(old, 0.0) == spec_of(new, 0.0)


def _usable(record: BackendRecord) -> bool:
    return record.health_state != "down"


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
        passive_hold_s: float = 10.0,
        read_threads: int = 16,
    ) -> None:
        self._store = store
        self.transport = transport
        self._timeout = backend_timeout_s
        self._refresh_interval = refresh_interval_s
        self._ping_timeout = ping_timeout_s
        self._list_timeout = list_timeout_s
        self._hold = passive_hold_s
        self._read_threads = read_threads
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
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
                    if time.monotonic() >= old.hold_until:  # a local failure mark wins
                        old.healthy = _usable(record)
                    fresh[record.id] = old
                    continue
                fresh[record.id] = BackendHandle(
                    record=record,
                    actor=self.transport.connect(record, self._timeout),
                    healthy=_usable(record),
                    rtt_ms=record.rtt_ms,
                )
            for backend_id, old in self._handles.items():
                if fresh.get(backend_id) is not old and old.lane is not None:
                    old.lane.close()  # removed, or reached another way now
            self._handles = fresh
            self._loaded_at = time.monotonic()

    def mark_failed(self, backend_id: int, error: str) -> None:
        """A call failed: unusable here for ``passive_hold_s`` (see the module docstring)."""
        handle = self._handles.get(backend_id)
        if handle is None:
            return
        if handle.healthy:
            log.warning("backend %s marked unhealthy: %s", handle.name, error)
        handle.healthy = False
        handle.hold_until = time.monotonic() + self._hold

    # -- health ---------------------------------------------------------------------------------
    async def ping_all(
        self, *, record: bool = False, vouched: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Ping every backend concurrently. ``record``: fold the results into the shared health
        (the recorder's sweep, see the module docstring); ``vouched``: an operator's explicit
        ping, whose successes lift local marks and a ``down`` state at once."""
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
            return result

        results = await asyncio.gather(*(one(h) for h in handles))
        now = time.monotonic()
        for handle, result in zip(handles, results, strict=True):
            if not result["healthy"]:
                self.mark_failed(handle.id, str(result["error"]))
                continue
            if result["rtt_ms"] is not None:
                handle.rtt_ms = float(result["rtt_ms"])
            if vouched:
                handle.hold_until = 0.0
            if now >= handle.hold_until:
                handle.healthy = vouched or _usable(handle.record)
        if record:
            with contextlib.suppress(Exception):
                await self._record(handles, results, vouched=vouched)
        return {
            h.name: {**{k: v for k, v in r.items() if k != "counters"}, "state": h.state}
            for h, r in zip(handles, results, strict=True)
        }

    async def _record(
        self,
        handles: list[BackendHandle],
        results: list[dict[str, Any]],
        *,
        vouched: bool,
    ) -> None:
        """Fold one sweep into the stored health under row locks (one transaction)."""
        came_back: list[BackendHandle] = []
        async with self._store.db.transaction() as conn:
            stored = await self._store.backends.health_documents(conn, [h.id for h in handles])
            for handle, result in zip(handles, results, strict=True):
                if handle.id not in stored:
                    continue  # removed meanwhile
                state, document = stored[handle.id]
                before = BackendHealth.from_json(document, state=state)
                if before.samples == 0 and state != before.state:
                    before = replace(before, state=state)
                sample = HealthSample(
                    ok=bool(result["healthy"]),
                    rtt_ms=result.get("rtt_ms"),
                    error=result.get("error"),
                    counters=dict(result.get("counters") or {}),
                    vouched=vouched,
                )
                after = observe(before, sample, sla_latency_ms=handle.record.sla_latency_ms)
                await self._store.backends.record_health(
                    conn,
                    handle.id,
                    healthy=not after.down,
                    rtt_ms=after.rtt_ms,
                    error=after.last_error,
                    state=after.state,
                    health=after.to_json(),
                    throughput_mbps=after.throughput_mbps,
                )
                if after.state != before.state:
                    log.warning(
                        "backend %s: %s -> %s (availability %.2f, error rate %.2f, %s)",
                        handle.name,
                        before.state,
                        after.state,
                        after.availability,
                        after.error_rate,
                        after.last_error or "ok",
                    )
                if before.down and not after.down:
                    await self._owed_work(conn, handle)
                    came_back.append(handle)
                handle.record = replace(
                    handle.record,
                    health_state=after.state,
                    health=after.to_json(),
                    healthy=not after.down,
                )
                if time.monotonic() >= handle.hold_until:
                    handle.healthy = not after.down
                backend_metrics().health(handle.name, after)
        for handle in came_back:
            log.info("backend %s is back; its pending work is due now", handle.name)

    async def _owed_work(self, conn: Any, handle: BackendHandle) -> None:
        """A backend left ``down``: its deferred replicate/repair jobs are due now, and each
        version with a pending piece on it and no job for it gets a replicate job."""
        jobs = self._store.jobs
        woken = await jobs.wake_backend(conn, handle.id)
        pending = await self._store.replicas.pending_versions(conn, handle.id)
        active = await jobs.active_targets(conn, pending, DATA_KINDS)
        todo = [pk for pk in pending if (pk, handle.id) not in active]
        added = await jobs.enqueue_many(
            conn,
            JobKind.REPLICATE,
            [
                (
                    {"version_pk": pk, "target_backend_id": handle.id, "reason": "backend back"},
                    replicate_key(pk, handle.id),
                )
                for pk in todo
            ],
            priority=PRIORITY[JobKind.REPLICATE],
        )
        log.info(
            "backend %s back: %d jobs woken, %d replicate jobs added",
            handle.name,
            woken,
            len(added),
        )

    async def health_loop(self, interval_s: float, *, record: bool) -> None:
        """Sweep every ``interval_s``; with ``record``, the replica holding the health lease
        records (one recorder at a time, so the moving averages see one sample per sweep)."""
        lease_s = max(3 * interval_s, 5.0)
        leases = WorkerStateRepository()
        while True:
            try:
                holder = False
                if record:
                    async with self._store.db.connection() as conn:
                        holder = await leases.take_run_lease(
                            conn, HEALTH_LEASE, self._owner, lease_s=lease_s
                        )
                await self.ping_all(record=holder)
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

    async def read(self, backend_id: int, locator: str) -> memoryview:
        """A stored object's bytes for serving: through this process's read lane when the
        transport gives one (no actor, no object store), else ``fetch``. Times every answer
        into the backend's latency (the hedge delay)."""
        handle = self._handle(backend_id)
        lane = await self._lane(handle)
        start = time.perf_counter()
        if lane is None:
            data = (await self.fetch(backend_id, locator)).data
        else:
            raw = await self._guard(backend_id, lambda: lane.get(locator))
            data = memoryview(raw)
        handle.latency.observe(len(data), time.perf_counter() - start)
        return data

    async def _lane(self, handle: BackendHandle) -> ReadLane | None:
        """The handle's read lane, built on first use (a client costs tens of ms to build,
        so in a thread, and only for backends that are read)."""
        if not handle.lane_built:
            handle.lane_built = True
            try:
                client = await asyncio.to_thread(
                    self.transport.reader, handle.record, self._timeout
                )
            except Exception:  # no lane is slower, never wrong: reads go through the transport
                log.exception("backend %s: no read lane", handle.name)
                client = None
            if client is not None:
                handle.lane = ReadLane(handle.name, client, self._read_threads)
        return handle.lane

    def overtaken(self, backend_id: int, streak_limit: int = 3) -> None:
        """A hedged read was answered by another replica while this backend had not: after
        ``streak_limit`` in a row (no answer of its own in between, even a late one), reads
        rank it last for the passive hold (circuit breaking for reads).

        Why reads only, and not its health: slowness is not failure. A slow backend still
        stores what it is sent, and writes never wait for a slow member once their quorum is
        in; lowering its health would take it out of placement, and with one backend frozen
        and another merely slow under load that refused writes (measured: 503s in the
        frozen-backend bench). A backend that stops answering altogether is lowered by its
        calls' timeouts and the health sweep, as before."""
        handle = self._handles.get(backend_id)
        if handle is None or handle.latency.overtaken() < streak_limit:
            return
        if not handle.read_slow:
            log.warning("backend %s: reads overtaken %dx in a row; asked last", handle.name,
                        streak_limit)
        handle.slow_until = time.monotonic() + self._hold

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
        for handle in self._handles.values():
            if handle.lane is not None:
                handle.lane.close()
        self._handles.clear()
