"""``GET /admin/status``: the federation in one document, for ``bulletproof status``.

The judgement and the facts behind it come from ``schema.federation_report.collect`` (the
same the metrics sampler exports); this adds where to watch it (the Ray dashboard and every
node's Prometheus scrape address) and renders it as JSON. Read-only; viewer role.
"""

from __future__ import annotations

from typing import Any

from actors.ray_cluster_info import dashboard_url, metrics_urls
from gateway.admin.route import AdminCall, operation
from schema.federation_report import collect

__all__ = ["federation_status"]


@operation(body=False)
async def federation_status(call: AdminCall) -> dict[str, Any]:
    async with call.ctx.store.db.connection() as conn:
        report = await collect(conn)
    return {
        "state": report.verdict.state,
        "reasons": report.verdict.reasons,
        "policy_version": report.policy_version,
        "placement": {"objects": report.placement.objects, "bytes": report.placement.bytes},
        "replicas": report.replica_states,
        "backends": [
            {
                "name": b.name,
                "state": b.state,
                "health": b.health_state,
                "region": b.region,
                "jurisdiction": b.jurisdiction,
                "last_error": b.last_error,
            }
            for b in report.backends
        ],
        "queue": [
            {
                "kind": q.kind,
                "queued": q.queued,
                "leased": q.leased,
                "dead": q.dead,
                "oldest_ready_s": q.oldest_ready_s,
            }
            for q in report.queue
        ],
        "agents": [{"name": name, "jobs": n} for name, n in report.agents.items()],
        "workers": [
            {
                "name": w.name,
                "last_finished_at": None
                if w.last_finished_at is None
                else w.last_finished_at.isoformat(),
                "last_error": w.last_error,
                "running_on": w.lease_owner,
            }
            for w in report.workers
        ],
        "imports": report.imports,
        "dashboard_url": dashboard_url(),
        "metrics_urls": metrics_urls(),
    }
