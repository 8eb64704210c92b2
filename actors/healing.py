"""What every self-healing process holds: the data-path context (``actors.data_path``: store,
cache, live backends, the policy in force, report-a-bad-replica) plus the healers' own
repositories, the bucket constraints they re-check, and the retry backoff.

Built once per agent, scheduler or CLI run (``HealingContext.connect``), never per job. With
Ray it reaches backends through the named ``BackendActor``s; without it (``use_ray=False``)
through clients built in this process from the sealed credentials and the master key file
(``actors.backend_transport``). Job kinds, keys and priorities live in ``schema.jobs``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Self

from actors.data_path import POLICY_REFRESH_S, DataPath
from core.placement import PlacementConstraints
from core.settings import Settings
from schema.jobs import Backoff, JobQueue
from schema.orphans import OrphanRepository
from schema.records import ObjectVersion
from schema.replicas import ReplicaRepository
from schema.snapshots import SnapshotRepository
from schema.worker_state import WorkerStateRepository

__all__ = ["HealingContext"]


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
        (``PlacementSettings.constraints``). Cached per bucket for ``POLICY_REFRESH_S``, like
        the policy (a repair is re-checked by the placement checker when settings change:
        they mark the objects)."""
        cached = self._constraints.get(version.bucket_id)
        if cached is not None and time.monotonic() - cached[0] <= POLICY_REFRESH_S:
            return cached[1]
        async with self.store.db.connection() as conn:
            settings = await self.policies.placement_settings(conn, version.bucket_id)
        constraints = settings.constraints
        if len(self._constraints) > 10_000:
            self._constraints.clear()
        self._constraints[version.bucket_id] = (time.monotonic(), constraints)
        return constraints

    def describe(self) -> dict[str, Any]:
        return {"transport": type(self.registry.transport).__name__}
