"""core/health.py: moving averages and the healthy/degraded/down state with hysteresis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.health import BackendHealth, HealthSample, HealthThresholds, observe

OK = HealthSample(ok=True, rtt_ms=10.0)
FAIL = HealthSample(ok=False, error="ping failed: unreachable")


def run(samples: list[HealthSample], start: BackendHealth | None = None) -> list[str]:
    health = start or BackendHealth()
    states = []
    for sample in samples:
        health = observe(health, sample)
        states.append(health.state)
    return states


def test_down_needs_consecutive_failures_and_up_needs_consecutive_successes() -> None:
    states = run([OK] * 3 + [FAIL] * 3 + [OK] * 2 + [OK] * 20)
    assert states[3:5] == ["degraded", "degraded"]  # one or two failures: not down
    assert states[5] == "down"
    assert states[6:8] == ["down", "down"]  # two good probes: still down
    assert states[8] == "degraded"  # the third lifts it, to degraded first
    assert states[-1] == "healthy"  # the averages recover in time


def test_a_flapping_backend_never_goes_down_and_does_not_thrash() -> None:
    states = run([OK, FAIL] * 30)
    assert "down" not in states
    changes = sum(1 for a, b in zip(states, states[1:], strict=False) if a != b)
    assert changes <= 1  # healthy -> degraded once, then it stays degraded


def test_an_operators_ping_lifts_a_down_backend_at_once() -> None:
    health = BackendHealth()
    for _ in range(3):
        health = observe(health, FAIL)
    assert health.state == "down"
    health = observe(health, HealthSample(ok=True, rtt_ms=5.0, vouched=True))
    assert health.state == "healthy"


def test_error_rate_and_throughput_come_from_the_actor_counters() -> None:
    health = observe(BackendHealth(), HealthSample(ok=True, rtt_ms=5.0, counters={}))
    counters = {"calls": 100.0, "errors": 50.0, "bytes": 10e6, "busy_s": 1.0}
    health = observe(health, HealthSample(ok=True, rtt_ms=5.0, counters=counters))
    assert health.error_rate > 0.1 and health.state == "degraded"
    assert health.throughput_mbps is not None and 70 < health.throughput_mbps < 90
    # An actor restart resets its counters: counted from zero, never negative.
    restarted = {"calls": 10.0, "errors": 0.0, "bytes": 1e6, "busy_s": 0.1}
    health = observe(health, HealthSample(ok=True, rtt_ms=5.0, counters=restarted))
    assert 0 <= health.error_rate < 0.5


def test_rtt_above_twice_the_sla_latency_degrades() -> None:
    health = BackendHealth()
    for _ in range(5):
        health = observe(health, HealthSample(ok=True, rtt_ms=300.0), sla_latency_ms=100.0)
    assert health.state == "degraded"
    for _ in range(20):
        health = observe(health, HealthSample(ok=True, rtt_ms=20.0), sla_latency_ms=100.0)
    assert health.state == "healthy"


def test_json_round_trip_and_tolerance() -> None:
    health = observe(BackendHealth(), FAIL)
    assert BackendHealth.from_json(health.to_json()) == health
    assert BackendHealth.from_json({"state": "weird", "extra": 1}, state="down").state == "down"
    assert BackendHealth.from_json(None) == BackendHealth()


@given(st.lists(st.booleans(), max_size=80))
def test_state_rules_hold_for_any_sequence(oks: list[bool]) -> None:
    t = HealthThresholds()
    health = BackendHealth()
    for ok in oks:
        before = health
        health = observe(health, OK if ok else FAIL)
        assert 0.0 <= health.availability <= 1.0 and 0.0 <= health.error_rate <= 1.0
        if health.state == "down" and before.state != "down":
            assert health.fail_streak >= t.down_after
        if before.state == "down" and health.state != "down":
            assert health.ok_streak >= t.up_after
