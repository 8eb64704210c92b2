"""Everything the federation's status is judged from, read in one place.

``collect`` reads the policy in force, the placement census, the backends, the job queue, the
agents holding jobs, the periodic workers and the imports, and judges the colour
(``core.federation_state``). Two readers, one judgement: ``GET /admin/status`` (and
``bulletproof status``) renders it; the ``federation_sampler`` worker turns it into the
``bulletproof_*`` gauges Prometheus scrapes. Read-only; owns no table.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from core.federation_state import FederationState, PlacementTally, judge, tally
from schema.backends import BackendRepository
from schema.imports import ImportRepository
from schema.jobs import JobQueue, QueueSummary
from schema.placement_census import PlacementCensus
from schema.policies import PolicyRepository
from schema.records import BackendRecord
from schema.worker_state import WorkerStateRepository, WorkerStatus

__all__ = ["FederationReport", "collect"]


@dataclass(frozen=True)
class FederationReport:
    verdict: FederationState
    policy_version: int
    placement: PlacementTally
    replica_states: dict[str, int]
    backends: list[BackendRecord]
    queue: list[QueueSummary]
    agents: dict[str, int]
    workers: list[WorkerStatus]
    imports: dict[str, int]


async def collect(conn: asyncpg.Connection) -> FederationReport:
    policy_version, policy = await PolicyRepository().in_force(conn)
    census = PlacementCensus()
    placement = tally(await census.groups(conn), policy)
    backends = await BackendRepository().list(conn)
    queue = await JobQueue().summary(conn)
    workers = await WorkerStateRepository().all(conn)
    verdict = judge(
        placement,
        [b.health_state for b in backends if b.state == "active"],
        dead_jobs=sum(q.dead for q in queue),
        failed_workers=[w.name for w in workers if w.last_error],
    )
    return FederationReport(
        verdict=verdict,
        policy_version=policy_version,
        placement=placement,
        replica_states=await census.replica_states(conn),
        backends=backends,
        queue=queue,
        agents=await JobQueue().lease_holders(conn),
        workers=workers,
        imports=await ImportRepository().runs_by_state(conn),
    )
