"""Retry delays of the job queue: exponential, capped, jittered, never below half a step."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from schema.jobs import Backoff, backoff_delay


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.01, max_value=100),
    cap=st.floats(min_value=0.01, max_value=10_000),
    seed=st.integers(),
)
def test_delay_is_within_half_a_step_and_the_cap(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    step = min(cap, base * 2.0 ** min(attempt - 1, 62))
    delay = backoff_delay(attempt, Backoff(base, cap), random.Random(seed))
    assert step / 2 <= delay <= step
    assert delay <= cap


def test_delays_grow_exponentially_until_the_cap() -> None:
    backoff = Backoff(base_s=1.0, max_s=60.0)
    lows = [backoff_delay(n, backoff, random.Random(0)) for n in range(1, 10)]
    assert lows[0] <= 1.0 and lows[3] >= 4.0 and lows[-1] <= 60.0
    assert all(backoff_delay(50, backoff, random.Random(s)) <= 60.0 for s in range(100))


def test_jitter_spreads_jobs_that_failed_together() -> None:
    rng = random.Random(1)
    delays = {round(backoff_delay(5, Backoff(2.0, 600.0), rng), 3) for _ in range(50)}
    assert len(delays) > 40
