"""The one way a process creates and records its ``bulletproof_*`` Ray metrics.

Ray wants each metric created once per process (a second object of the same name is another
time series), exports it from the node's metrics agent (Prometheus: ``ray_bulletproof_*``;
the Ray dashboard's metrics view), and a metric cannot be made outside a Ray worker or driver.
So ``metric`` creates on first use, caches by name and returns None outside Ray; ``record``
never raises: a metric that cannot be exported must not fail a request, a repair or a scrub.
Each metric has fixed tag keys, declared where it is created.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["LATENCY_BOUNDARIES", "metric", "record"]

log = logging.getLogger(__name__)

#: Seconds: request and transfer latency histograms.
LATENCY_BOUNDARIES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

_lock = threading.Lock()
_created: dict[str, Any] = {}


def metric(
    kind: str,
    name: str,
    description: str,
    tag_keys: Sequence[str],
    boundaries: Sequence[float] = LATENCY_BOUNDARIES,
) -> Any:
    """The metric ``name`` (``counter``, ``gauge`` or ``histogram``) of this process, created
    on first use; None outside a Ray worker or driver."""
    with _lock:
        if name in _created:
            return _created[name]
        made: Any = None
        try:
            import ray
            from ray.util import metrics

            if ray.is_initialized():
                keys = tuple(tag_keys)
                if kind == "counter":
                    made = metrics.Counter(name, description=description, tag_keys=keys)
                elif kind == "histogram":
                    made = metrics.Histogram(
                        name, description=description, boundaries=list(boundaries), tag_keys=keys
                    )
                else:
                    made = metrics.Gauge(name, description=description, tag_keys=keys)
        except Exception:  # metrics are an extra, never a reason to fail
            log.debug("metric %s unavailable", name, exc_info=True)
        if made is not None:
            _created[name] = made
        return made


def record(target: Any, method: str, value: float, tags: dict[str, str]) -> None:
    """``target.<method>(value, tags=tags)`` (``inc``, ``set``, ``observe``), never raising."""
    if target is None:
        return
    try:
        getattr(target, method)(float(value), tags=tags)
    except Exception:
        log.debug("metric not recorded", exc_info=True)
