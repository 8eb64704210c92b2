"""The gateway's own Ray metrics (``ray.util.metrics``): request admission outcomes.

``bulletproof_admission_total`` counts requests refused or let through by the admission
checks, with the one tag key ``outcome``: ``replayed``, ``throttled``, ``too_slow`` (a body
cut by RequestTimeout), ``uploads_limit``, and ``fail_open`` (admitted unchecked because Redis
was unavailable). Created once per process on first use; recording never raises and records
nothing outside a Ray worker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["OUTCOMES", "count_admission"]

log = logging.getLogger(__name__)

OUTCOMES = ("replayed", "throttled", "too_slow", "uploads_limit", "fail_open")

_lock = threading.Lock()
_counter: list[Any] = []


def _admission_counter() -> Any:
    with _lock:
        if not _counter:
            made: Any = None
            try:
                import ray
                from ray.util import metrics

                if ray.is_initialized():
                    made = metrics.Counter(
                        "bulletproof_admission_total",
                        description="Requests refused or admitted unchecked by admission.",
                        tag_keys=("outcome",),
                    )
            except Exception:  # metrics are an extra; never a reason to fail
                log.debug("admission metrics unavailable", exc_info=True)
            _counter.append(made)
        return _counter[0]


def count_admission(outcome: str) -> None:
    """Count one admission ``outcome`` (one of ``OUTCOMES``)."""
    counter = _admission_counter()
    if counter is None:
        return
    try:
        counter.inc(1.0, tags={"outcome": outcome})
    except Exception:  # export trouble must not fail a request
        log.debug("admission metric not recorded", exc_info=True)
