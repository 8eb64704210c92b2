"""The federation sampler: the status the operator sees, as gauges Prometheus can alert on.

Every ``metrics_interval_s`` (one holder at a time, under the worker's run lease, so the
gauges come from one process and never fight) it reads ``schema.federation_report.collect``
-- the same judgement ``bulletproof status`` prints -- and sets:

- ``bulletproof_federation_state``: 0 GREEN, 1 YELLOW, 2 RED;
- ``bulletproof_objects`` / ``bulletproof_object_bytes`` (``placement``: full, degraded,
  at_risk, unreadable);
- ``bulletproof_replicas`` (``state``: ok, pending, corrupt, missing, deleting);
- ``bulletproof_queue_jobs`` (``kind``, ``state``: queued, leased, dead) and
  ``bulletproof_queue_oldest_ready_seconds`` (``kind``).
"""

from __future__ import annotations

from typing import Any

from jobs.metrics import federation_gauges
from jobs.worker import Worker
from schema.federation_report import collect

__all__ = ["FederationSampler"]


class FederationSampler(Worker):
    name = "federation_sampler"

    async def run_once(self) -> dict[str, Any]:
        async with self.ctx.store.db.connection() as conn:
            report = await collect(conn)
        federation_gauges(report)
        return {"state": report.verdict.state, "queue_kinds": len(report.queue)}
