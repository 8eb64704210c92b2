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

__all__ = ["TAG_KEYS", "ImportMetrics", "import_metrics"]

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


_lock = threading.Lock()
_metrics: ImportMetrics | None = None


def import_metrics() -> ImportMetrics:
    """This process's import metrics, created on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = ImportMetrics(
                objects=metrics.Counter(
                    "bulletproof_import_copied_objects",
                    description="Objects copied, verified and committed by import workers.",
                    tag_keys=TAG_KEYS,
                ),
                bytes=metrics.Counter(
                    "bulletproof_import_copied_bytes",
                    description="Plaintext bytes copied by import workers.",
                    tag_keys=TAG_KEYS,
                ),
                errors=metrics.Counter(
                    "bulletproof_import_failed_objects",
                    description="Objects an import gave up on (failed with a reason).",
                    tag_keys=TAG_KEYS,
                ),
                object_seconds=metrics.Histogram(
                    "bulletproof_import_object_seconds",
                    description="Seconds per copied object (batch average).",
                    boundaries=[0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600],
                    tag_keys=TAG_KEYS,
                ),
                bytes_in_flight=metrics.Gauge(
                    "bulletproof_import_bytes_in_flight",
                    description="Plaintext bytes of objects being copied by one worker.",
                    tag_keys=TAG_KEYS,
                ),
                objects_done=metrics.Gauge(
                    "bulletproof_import_done_objects",
                    description="Objects of the run verified or skipped.",
                    tag_keys=TAG_KEYS,
                ),
                objects_total=metrics.Gauge(
                    "bulletproof_import_listed_objects",
                    description="Objects listed in the run's manifest so far.",
                    tag_keys=TAG_KEYS,
                ),
                bytes_done=metrics.Gauge(
                    "bulletproof_import_done_bytes",
                    description="Bytes of the run verified or skipped.",
                    tag_keys=TAG_KEYS,
                ),
                bytes_total=metrics.Gauge(
                    "bulletproof_import_listed_bytes",
                    description="Bytes listed in the run's manifest so far.",
                    tag_keys=TAG_KEYS,
                ),
                eta_seconds=metrics.Gauge(
                    "bulletproof_import_eta_seconds",
                    description="Estimated seconds to finish the run (-1: unknown).",
                    tag_keys=TAG_KEYS,
                ),
            )
        return _metrics
