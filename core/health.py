"""A backend's health as one state with hysteresis, from a stream of probe samples.

Every probe of a backend (``BackendActor.ping``: is the bucket there, how long did it take,
and the actor's cumulative call counters) becomes a ``HealthSample``; ``observe`` folds it into
``BackendHealth``: exponential moving averages of RTT, availability (probes that succeeded),
error rate (failed calls and probes over all calls and probes) and throughput, and the state
that placement and reads act on:

- ``healthy``: every average inside its band;
- ``degraded``: still written to and read from, but something is off (availability or error
  rate past the degrade threshold, or RTT above twice the declared SLA latency);
- ``down``: excluded from writes and tried last for reads.

Hysteresis, so a flapping backend does not thrash placement: ``down`` needs ``down_after``
failed probes in a row and is left only after ``up_after`` good probes in a row (then to
``degraded`` until the averages recover); ``degraded`` is entered past one threshold and left
only inside a stricter one (``recover_*``). A backend failing every other probe never goes
down (it stays degraded and placeable), and one that comes back does not flip on its first
answer. An operator's explicit probe (``vouched``) that succeeds counts as ``up_after`` good
probes: the operator saw it work.

Pure: no clock, no I/O. ``BackendHealth`` round-trips through JSON (``to_json``/``from_json``)
so the one recorder (the gateway replica holding the health lease) keeps it in the database
and every process reads the same state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = [
    "HEALTH_STATES",
    "BackendHealth",
    "HealthSample",
    "HealthThresholds",
    "observe",
]

HEALTH_STATES = ("healthy", "degraded", "down")

#: Counters the actor reports cumulatively; the recorder keeps the last values to diff.
_COUNTERS = ("calls", "errors", "bytes", "busy_s")
#: Least busy time and bytes between two probes for a throughput sample to count.
_MIN_BUSY_S = 0.05
_MIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class HealthThresholds:
    """The bands of the state machine (see the module docstring)."""

    alpha: float = 0.3  # weight of the newest sample in every moving average
    down_after: int = 3  # failed probes in a row: down
    up_after: int = 3  # good probes in a row: out of down
    degrade_availability: float = 0.90
    recover_availability: float = 0.98
    degrade_error_rate: float = 0.10
    recover_error_rate: float = 0.02
    degrade_latency_factor: float = 2.0  # RTT average above factor x SLA latency: degraded
    recover_latency_factor: float = 1.5


@dataclass(frozen=True)
class HealthSample:
    """One probe. ``counters``: the actor's cumulative calls, errors, bytes moved and seconds
    busy moving them (empty when the transport keeps none)."""

    ok: bool
    rtt_ms: float | None = None
    error: str | None = None
    counters: dict[str, float] = field(default_factory=dict)
    #: An operator's explicit probe (``POST /admin/backends/ping``).
    vouched: bool = False


@dataclass(frozen=True)
class BackendHealth:
    state: str = "healthy"
    rtt_ms: float | None = None
    availability: float = 1.0
    error_rate: float = 0.0
    throughput_mbps: float | None = None
    ok_streak: int = 0
    fail_streak: int = 0
    samples: int = 0
    last_error: str | None = None
    #: The actor's counters as of the last sample (to diff the next one against).
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def down(self) -> bool:
        return self.state == "down"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, *, state: str = "healthy") -> BackendHealth:
        """What was stored; unknown or malformed fields fall back to the defaults (a stored
        document is ours, but a newer writer may have added fields)."""
        known = {f: v for f, v in (data or {}).items() if f in cls.__dataclass_fields__}
        try:
            health = cls(**known)
        except TypeError:
            health = cls()
        if health.state not in HEALTH_STATES:
            health = replace(health, state=state if state in HEALTH_STATES else "healthy")
        return health


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else old + alpha * (new - old)


def _deltas(before: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """Counter increments since ``before``; a counter that went down (the actor restarted)
    counts from zero."""
    out: dict[str, float] = {}
    for name in _COUNTERS:
        value = now.get(name)
        if value is None or not math.isfinite(value):
            continue
        prior = before.get(name, 0.0)
        out[name] = value - prior if value >= prior else value
    return out


def _latency_bad(rtt: float | None, sla_ms: float | None, factor: float) -> bool:
    return rtt is not None and sla_ms is not None and rtt > factor * sla_ms


def observe(
    health: BackendHealth,
    sample: HealthSample,
    *,
    sla_latency_ms: float | None = None,
    thresholds: HealthThresholds = HealthThresholds(),
) -> BackendHealth:
    """``health`` after ``sample`` (see the module docstring for the rules)."""
    t = thresholds
    a = t.alpha
    delta = _deltas(health.counters, sample.counters)
    calls = delta.get("calls", 0.0) + 1.0  # the probe is a call too
    errors = delta.get("errors", 0.0) + (0.0 if sample.ok else 1.0)
    error_rate = _ewma(health.error_rate if health.samples else None, min(1.0, errors / calls), a)
    availability = _ewma(
        health.availability if health.samples else None, 1.0 if sample.ok else 0.0, a
    )
    rtt = health.rtt_ms
    if sample.ok and sample.rtt_ms is not None and math.isfinite(sample.rtt_ms):
        rtt = _ewma(rtt, max(0.0, sample.rtt_ms), a)
    throughput = health.throughput_mbps
    busy, moved = delta.get("busy_s", 0.0), delta.get("bytes", 0.0)
    if busy >= _MIN_BUSY_S and moved >= _MIN_BYTES:
        throughput = _ewma(throughput, moved * 8 / 1e6 / busy, a)
    ok_streak = health.ok_streak + 1 if sample.ok else 0
    fail_streak = 0 if sample.ok else health.fail_streak + 1
    if sample.ok and sample.vouched:
        ok_streak = max(ok_streak, t.up_after)

    state = health.state
    if fail_streak >= t.down_after:
        state = "down"
    elif state == "down" and ok_streak >= t.up_after:
        state = "degraded"
        if sample.vouched:  # the operator's probe lifts it; the averages start afresh
            availability, error_rate = 1.0, 0.0
    if state == "healthy" and (
        availability < t.degrade_availability
        or error_rate > t.degrade_error_rate
        or _latency_bad(rtt, sla_latency_ms, t.degrade_latency_factor)
    ):
        state = "degraded"
    elif state == "degraded" and (
        availability >= t.recover_availability
        and error_rate <= t.recover_error_rate
        and not _latency_bad(rtt, sla_latency_ms, t.recover_latency_factor)
    ):
        state = "healthy"
    return BackendHealth(
        state=state,
        rtt_ms=rtt,
        availability=availability,
        error_rate=error_rate,
        throughput_mbps=throughput,
        ok_streak=ok_streak,
        fail_streak=fail_streak,
        samples=health.samples + 1,
        last_error=None if sample.ok else sample.error,
        counters={
            **health.counters,
            **{k: v for k, v in sample.counters.items() if k in _COUNTERS},
        },
    )
