"""What every self-healing process holds: the data-path context (``actors.data_path``: store,
cache, live backends, the policy in force, report-a-bad-replica) plus the healers' own
repositories, the bucket constraints they re-check, and the retry backoff.

Built once per agent, scheduler or CLI run (``HealingContext.connect``), never per job. With
Ray it reaches backends through the named ``BackendActor``s; without it (``use_ray=False``)
through clients built in this process from the sealed credentials and the master key file
(``actors.backend_transport``). Job kinds, keys and priorities live in ``schema.jobs``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Self

from actors.data_path import POLICY_REFRESH_S, DataPath
from core.placement import PlacementConstraints
from core.request_context import install_log_record_request_id
from core.settings import Settings
from schema.jobs import Backoff, JobQueue
from schema.orphans import OrphanRepository
from schema.records import ObjectVersion
from schema.replicas import ReplicaRepository
from schema.snapshots import SnapshotRepository
from schema.worker_state import WorkerStateRepository

__all__ = ["HealingContext", "HealingThread"]


@dataclass
class HealingContext(DataPath):
    queue: JobQueue = field(default_factory=JobQueue)
    replicas: ReplicaRepository = field(default_factory=ReplicaRepository)
    orphans: OrphanRepository = field(default_factory=OrphanRepository)
    snapshots: SnapshotRepository = field(default_factory=SnapshotRepository)
    worker_state: WorkerStateRepository = field(default_factory=WorkerStateRepository)
    _constraints: dict[int, tuple[float, PlacementConstraints]] = field(default_factory=dict)

    @classmethod
    async def connect(cls, settings: Settings, *, use_ray: bool, db_pool_size: int = 5) -> Self:
        """Connect to PostgreSQL and Redis and set up backend access (see the module doc)."""
        return await cls.open(settings, use_ray=use_ray, serving=False, db_pool_size=db_pool_size)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.settings.job_backoff_base_s, self.settings.job_backoff_max_s)

    async def constraints(self, version: ObjectVersion) -> PlacementConstraints:
        """Where this version may live beyond its class, exactly as the write path computes it
        (``PlacementSettings.constraints``), plus the region lock recorded with the version
        (an import's, for the version's whole life). The bucket's part is cached per bucket
        for ``POLICY_REFRESH_S``, like the policy (a repair is re-checked by the placement
        checker when settings change: they mark the objects); the version's lock never
        changes, so it is simply read."""
        async with self.store.db.connection() as conn:
            locks = await self.policies.version_region_locks(conn, [version.id])
            cached = self._constraints.get(version.bucket_id)
            if cached is not None and time.monotonic() - cached[0] <= POLICY_REFRESH_S:
                constraints = cached[1]
            else:
                settings = await self.policies.placement_settings(conn, version.bucket_id)
                constraints = settings.constraints
                if len(self._constraints) > 10_000:
                    self._constraints.clear()
                self._constraints[version.bucket_id] = (time.monotonic(), constraints)
        return constraints.with_import_lock(locks.get(version.id, ()))

    def describe(self) -> dict[str, Any]:
        return {"transport": type(self.registry.transport).__name__}


class HealingThread(ABC):
    """The body of a long-lived healing actor (agents, the scheduler): its own thread and event
    loop, so the actor's methods (stats, stop) answer while it works; a context connected
    (retrying with backoff while the database is down, the last error kept in ``_error``) and
    closed around ``serve``; and a thread-safe ``stop``. Subclasses set their fields, then
    call ``super().__init__``, which starts the thread."""

    def __init__(self, settings: Settings, thread_name: str) -> None:
        install_log_record_request_id()  # agents and jobs log under their request id
        self._settings = settings
        self._stop: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._main, name=thread_name, daemon=True)
        self._thread.start()

    @abstractmethod
    async def serve(self, ctx: HealingContext, stop: asyncio.Event) -> None:
        """Work with ``ctx`` until ``stop`` is set."""

    def _main(self) -> None:
        asyncio.run(self._amain())

    async def _amain(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        delay = 1.0
        while not stop.is_set():
            try:
                ctx = await HealingContext.connect(self._settings, use_ray=True)
            except Exception as exc:  # the database may be down: keep trying
                self._error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            try:
                await self.serve(ctx, stop)
            finally:
                await ctx.close()

    def stop(self) -> None:
        if self._event_loop is not None and self._stop is not None:
            self._event_loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
