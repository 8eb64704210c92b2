"""Backend health as Ray metrics (``ray.util.metrics``), shown by the Ray dashboard and
Prometheus.

Every name starts ``bulletproof_backend_``; every metric has the one tag key ``backend`` (the
backend's name). The health recorder (``actors/registry.py``) sets them after each recorded
sweep, so they show the shared state every process acts on. Created once per process on
first use, as Ray wants (``jobs/metrics.py`` does the same for imports); recording never
raises, and outside a Ray worker (``bulletproof agent`` without Ray) it records nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from actors.metric_registry import metric, record
from core.health import HEALTH_STATES, BackendHealth

__all__ = [
    "TAG_KEYS",
    "BackendMetrics",
    "agent_job_finished",
    "backend_metrics",
    "quorum_write",
    "worker_run",
]

log = logging.getLogger(__name__)

#: The tag keys of every backend metric.
TAG_KEYS = ("backend",)

#: (field, name, description) of every backend gauge.
_SPECS = (
    ("state", "state", "Health state: 0 healthy, 1 degraded, 2 down."),
    ("rtt_ms", "rtt_ms", "Moving average of the probe round trip, milliseconds."),
    ("availability", "availability", "Moving average of probes answered (0..1)."),
    ("error_rate", "error_rate", "Moving average of failed calls over all calls (0..1)."),
    ("throughput_mbps", "throughput_mbps", "Moving average of transfer rate, megabits/s."),
)


@dataclass
class BackendMetrics:
    gauges: dict[str, Any]

    def health(self, backend: str, health: BackendHealth) -> None:
        values = {
            "state": float(HEALTH_STATES.index(health.state)),
            "rtt_ms": health.rtt_ms,
            "availability": health.availability,
            "error_rate": health.error_rate,
            "throughput_mbps": health.throughput_mbps,
        }
        for name, value in values.items():
            gauge = self.gauges.get(name)
            if gauge is None or value is None:
                continue
            try:
                gauge.set(float(value), tags={"backend": backend})
            except Exception:  # export trouble must not fail a health sweep
                log.debug("backend metric not recorded", exc_info=True)


_lock = threading.Lock()
_metrics: BackendMetrics | None = None


def backend_metrics() -> BackendMetrics:
    """This process's backend metrics, created on first use (none outside Ray)."""
    global _metrics
    with _lock:
        if _metrics is None:
            gauges: dict[str, Any] = {}
            try:
                import ray
                from ray.util import metrics

                if ray.is_initialized():
                    gauges = {
                        field: metrics.Gauge(
                            f"bulletproof_backend_{name}", description=text, tag_keys=TAG_KEYS
                        )
                        for field, name, text in _SPECS
                    }
            except Exception:  # metrics are an extra; never a reason to fail
                log.debug("backend metrics unavailable", exc_info=True)
            _metrics = BackendMetrics(gauges)
        return _metrics


# -- the data path and the agents (actors/metric_registry.py creates and records) -------------
def quorum_write(outcome: str) -> None:
    """One quorum write ended: ``all`` (every target acknowledged), ``quorum`` (acknowledged
    at the quorum; the rest finish in the background or by repair) or ``failed``."""
    record(
        metric("counter", "bulletproof_quorum_writes", "Quorum writes by outcome.", ("outcome",)),
        "inc", 1, {"outcome": outcome},
    )  # fmt: skip


def agent_job_finished(kind: str, result: str, seconds: float) -> None:
    """A replication agent finished a job (repair, replicate, move, ...): ``done``,
    ``deferred``, ``dead``, ``failed`` or ``lost`` (its lease was taken over)."""
    record(
        metric("counter", "bulletproof_agent_jobs", "Agent jobs by kind and result.",
               ("kind", "result")),
        "inc", 1, {"kind": kind, "result": result},
    )  # fmt: skip
    record(
        metric("histogram", "bulletproof_agent_job_seconds", "Seconds per agent job.", ("kind",)),
        "observe", seconds, {"kind": kind},
    )  # fmt: skip


def worker_run(
    worker: str, report: dict[str, Any] | None, error: str | None, seconds: float
) -> None:
    """A periodic worker's run ended: ``bulletproof_worker_runs`` by result, and every count
    of its report (the scrubber's ``verified``, ``corrupt``, ``missing``; the repairer's jobs
    enqueued...) added to ``bulletproof_worker_items``: the scrub and repair rates."""
    record(
        metric("counter", "bulletproof_worker_runs", "Periodic worker runs by result.",
               ("worker", "result")),
        "inc", 1, {"worker": worker, "result": "failed" if error else "ok"},
    )  # fmt: skip
    record(
        metric("histogram", "bulletproof_worker_run_seconds", "Seconds per worker run.",
               ("worker",)),
        "observe", seconds, {"worker": worker},
    )  # fmt: skip
    items = metric("counter", "bulletproof_worker_items", "Counts from worker run reports.",
                   ("worker", "item"))  # fmt: skip
    for item, value in (report or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            record(items, "inc", value, {"worker": worker, "item": item})


def hedged_read() -> None:
    """A read part was not answered within its backend's p95 latency and was also asked of
    the next replica (``actors/verified_reader.py``)."""
    record(
        metric("counter", "bulletproof_hedged_reads",
               "Part reads also asked of a second replica after the first's p95.", ()),
        "inc", 1, {},
    )  # fmt: skip
