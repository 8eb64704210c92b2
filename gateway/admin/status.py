"""``GET /admin/status``: the federation in one document, for ``bulletproof status``.

One colour (``core.federation_state``) from policy compliance (objects fully placed /
degraded / at risk, judged against the class definitions in force, erasure layouts as they
were written), backend health, dead jobs and failed workers; then the pieces behind it:
backends, the job queue per kind with its oldest ready job, the agents holding jobs, the
periodic workers' last runs, imports by state, and where to watch (the Ray dashboard and
every node's Prometheus scrape address). Read-only; viewer role.
"""

from __future__ import annotations

from typing import Any

from actors.ray_cluster_info import dashboard_url, metrics_urls
from core.federation_state import PlacementTally, judge, placement_of
from core.policy import PolicyDocument
from gateway.admin.route import AdminCall, operation
from schema.imports import ImportRepository
from schema.placement_census import PlacementCensus, PlacementGroup
from schema.policies import PolicyRepository
from schema.worker_state import WorkerStateRepository

__all__ = ["federation_status"]


def _layout(group: PlacementGroup, policy: PolicyDocument) -> tuple[int, int]:
    """(width, read quorum) of a group: its recorded erasure code, else its class's copies in
    the policy in force (a class no longer defined: what its objects have is all they need)."""
    if group.k:
        return group.k + group.m, group.k
    rc = policy.classes.get(group.redundancy_class)
    if rc is None or rc.kind != "replication":
        return max(group.ok_pieces, 1), 1
    return rc.copies, 1


def placement_tally(groups: list[PlacementGroup], policy: PolicyDocument) -> PlacementTally:
    tally = PlacementTally()
    for group in groups:
        width, read_quorum = _layout(group, policy)
        tally.add(placement_of(group.ok_pieces, width, read_quorum), group.objects, group.bytes)
    return tally


@operation(body=False)
async def federation_status(call: AdminCall) -> dict[str, Any]:
    ctx = call.ctx
    async with ctx.store.db.connection() as conn:
        policy_version, policy = await PolicyRepository().in_force(conn)
        groups = await PlacementCensus().groups(conn)
        backends = await ctx.store.backends.list(conn)
        queue = await ctx.store.jobs.summary(conn)
        agents = await ctx.store.jobs.lease_holders(conn)
        workers = await WorkerStateRepository().all(conn)
        imports = await ImportRepository().runs_by_state(conn)
    tally = placement_tally(groups, policy)
    verdict = judge(
        tally,
        [b.health_state for b in backends if b.state == "active"],
        dead_jobs=sum(q.dead for q in queue),
        failed_workers=[w.name for w in workers if w.last_error],
    )
    return {
        "state": verdict.state,
        "reasons": verdict.reasons,
        "policy_version": policy_version,
        "placement": {"objects": tally.objects, "bytes": tally.bytes},
        "backends": [
            {
                "name": b.name,
                "state": b.state,
                "health": b.health_state,
                "region": b.region,
                "jurisdiction": b.jurisdiction,
                "last_error": b.last_error,
            }
            for b in backends
        ],
        "queue": [
            {
                "kind": q.kind,
                "queued": q.queued,
                "leased": q.leased,
                "dead": q.dead,
                "oldest_ready_s": q.oldest_ready_s,
            }
            for q in queue
        ],
        "agents": [{"name": name, "jobs": n} for name, n in agents.items()],
        "workers": [
            {
                "name": w.name,
                "last_finished_at": None
                if w.last_finished_at is None
                else w.last_finished_at.isoformat(),
                "last_error": w.last_error,
                "running_on": w.lease_owner,
            }
            for w in workers
        ],
        "imports": imports,
        "dashboard_url": dashboard_url(),
        "metrics_urls": metrics_urls(),
    }
