"""An import's Ray metrics (``ray.util.metrics``), shown by the Ray dashboard and Prometheus.

Every name starts ``bulletproof_import_``; every metric has the one tag key ``run_id``, so a
dashboard query never meets a metric whose tags vary. Ray wants each metric created once per
process (a second ``Counter`` of the same name is another time series object, and creating
one per object costs more than the copy), so ``import_metrics()`` builds them on first use
and returns the same ``ImportMetrics`` after that. Recording never raises: a metric that
cannot be exported must not fail a transfer.

Workers count what they finish (``objects``, ``bytes``, ``errors``, per-object seconds, bytes
in flight); the driver sets the run's totals and ETA from the database counters, which are
the truth (counters in a restarted worker start again from zero; the gauges do not).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ray.util import metrics

from actors.metric_registry import metric, record
from schema.federation_report import FederationReport

__all__ = ["TAG_KEYS", "ImportMetrics", "federation_gauges", "import_metrics"]

log = logging.getLogger(__name__)

#: The tag keys of every import metric.
TAG_KEYS = ("run_id",)


@dataclass
class ImportMetrics:
    objects: Any
    bytes: Any
    errors: Any
    object_seconds: Any
    bytes_in_flight: Any
    objects_done: Any
    objects_total: Any
    bytes_done: Any
    bytes_total: Any
    eta_seconds: Any

    # -- workers ------------------------------------------------------------------------------
    def copied(self, run_id: int, objects: int, size: int, seconds: float) -> None:
        tags = _tags(run_id)
        _safely(self.objects.inc, float(objects), tags)
        _safely(self.bytes.inc, float(size), tags)
        if objects:
            _safely(self.object_seconds.observe, seconds / objects, tags)

    def failed(self, run_id: int, objects: int) -> None:
        _safely(self.errors.inc, float(objects), _tags(run_id))

    def in_flight(self, run_id: int, size: int) -> None:
        _safely(self.bytes_in_flight.set, float(size), _tags(run_id))

    # -- the driver ---------------------------------------------------------------------------
    def progress(
        self,
        run_id: int,
        *,
        objects_done: int,
        objects_total: int,
        bytes_done: int,
        bytes_total: int,
        eta_s: float | None,
    ) -> None:
        tags = _tags(run_id)
        _safely(self.objects_done.set, float(objects_done), tags)
        _safely(self.objects_total.set, float(objects_total), tags)
        _safely(self.bytes_done.set, float(bytes_done), tags)
        _safely(self.bytes_total.set, float(bytes_total), tags)
        _safely(self.eta_seconds.set, -1.0 if eta_s is None else float(eta_s), tags)


def _tags(run_id: int) -> dict[str, str]:
    return {"run_id": str(run_id)}


def _safely(record: Any, value: float, tags: dict[str, str]) -> None:
    try:
        record(value, tags=tags)
    except Exception:  # export trouble must not fail an import
        log.debug("import metric not recorded", exc_info=True)


#: (field, kind, name, description) of every import metric.
_SPECS = (
    ("objects", "counter", "copied_objects", "Objects copied, verified and committed by workers."),
    ("bytes", "counter", "copied_bytes", "Plaintext bytes copied by import workers."),
    ("errors", "counter", "failed_objects", "Objects an import gave up on (failed, with reason)."),
    ("object_seconds", "histogram", "object_seconds", "Seconds per copied object (batch mean)."),
    ("bytes_in_flight", "gauge", "bytes_in_flight", "Bytes of objects one worker is copying."),
    ("objects_done", "gauge", "done_objects", "Objects of the run verified or skipped."),
    ("objects_total", "gauge", "listed_objects", "Objects listed in the run's manifest so far."),
    ("bytes_done", "gauge", "done_bytes", "Bytes of the run verified or skipped."),
    ("bytes_total", "gauge", "listed_bytes", "Bytes listed in the run's manifest so far."),
    ("eta_seconds", "gauge", "eta_seconds", "Estimated seconds to finish the run (-1: unknown)."),
)
_SECONDS = [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600]


def _metric(kind: str, name: str, description: str) -> Any:
    full = f"bulletproof_import_{name}"
    if kind == "counter":
        return metrics.Counter(full, description=description, tag_keys=TAG_KEYS)
    if kind == "histogram":
        return metrics.Histogram(
            full, description=description, boundaries=_SECONDS, tag_keys=TAG_KEYS
        )
    return metrics.Gauge(full, description=description, tag_keys=TAG_KEYS)


_lock = threading.Lock()
_metrics: ImportMetrics | None = None


def import_metrics() -> ImportMetrics:
    """This process's import metrics, created on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = ImportMetrics(
                **{field: _metric(kind, name, text) for field, kind, name, text in _SPECS}
            )
        return _metrics


# -- the federation's status as gauges (jobs/federation_sampler.py) ---------------------------
_STATE_VALUES = {"GREEN": 0.0, "YELLOW": 1.0, "RED": 2.0}


def federation_gauges(report: FederationReport) -> None:
    """Set the federation gauges from one report (see ``jobs/federation_sampler.py``)."""
    record(
        metric("gauge", "bulletproof_federation_state", "0 GREEN, 1 YELLOW, 2 RED.", ()),
        "set", _STATE_VALUES[report.verdict.state], {},
    )  # fmt: skip
    objects = metric("gauge", "bulletproof_objects", "Stored objects by placement state.",
                     ("placement",))  # fmt: skip
    size = metric("gauge", "bulletproof_object_bytes", "Stored bytes by placement state.",
                  ("placement",))  # fmt: skip
    for placement, n in report.placement.objects.items():
        record(objects, "set", n, {"placement": placement})
        record(size, "set", report.placement.bytes[placement], {"placement": placement})
    replicas = metric("gauge", "bulletproof_replicas", "Stored pieces by state.", ("state",))
    for state in ("ok", "pending", "corrupt", "missing", "deleting"):
        record(replicas, "set", report.replica_states.get(state, 0), {"state": state})
    jobs = metric("gauge", "bulletproof_queue_jobs", "Jobs by kind and state.", ("kind", "state"))
    oldest = metric("gauge", "bulletproof_queue_oldest_ready_seconds",
                    "Age of the oldest job ready to run, by kind.", ("kind",))  # fmt: skip
    for q in report.queue:
        for state, n in (("queued", q.queued), ("leased", q.leased), ("dead", q.dead)):
            record(jobs, "set", n, {"kind": q.kind, "state": state})
        record(oldest, "set", q.oldest_ready_s, {"kind": q.kind})
