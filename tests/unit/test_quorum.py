"""Quorum arithmetic, checked exhaustively for small widths against a simulation."""

from __future__ import annotations

from itertools import product

import pytest

from core.errors import InvalidInput
from core.policy import RedundancyClass, builtin_policy
from core.quorum import (
    erasure_quorum,
    have_quorum,
    quorum_still_possible,
    replication_quorum,
)

MAX_WIDTH = 9


def test_replication_quorum_is_a_strict_majority() -> None:
    assert [replication_quorum(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    for copies in range(1, 65):
        q = replication_quorum(copies)
        assert 2 * q > copies  # two quorums always overlap
        assert 2 * (q - 1) <= copies  # and it is the smallest such number
        assert 1 <= q <= copies


def test_erasure_quorum_splits_the_parity() -> None:
    """``k + ceil(m / 2)``: the acknowledged object survives ``ceil(m / 2)`` more losses and
    the write rides through ``floor(m / 2)`` failed targets; Swift's ``k + 1`` for m <= 2."""
    assert erasure_quorum(4, 2) == 5
    assert erasure_quorum(2, 4) == 4  # the built-in ColdArchiveClass
    assert erasure_quorum(4, 0) == 4
    assert erasure_quorum(1, 1) == 2
    for k in range(1, 20):
        for m in range(0, 9):
            q = erasure_quorum(k, m)
            assert k <= q <= k + m
            survives_at_ack, write_tolerates = q - k, k + m - q
            assert survives_at_ack >= write_tolerates >= survives_at_ack - 1
            if m <= 2:
                assert q == min(k + 1, k + m)


def test_one_rule_for_both_kinds() -> None:
    """Replication's majority is the same split with one replica per read."""
    for copies in range(1, 65):
        assert replication_quorum(copies) == 1 + (copies - 1 + 1) // 2


@pytest.mark.parametrize(
    "bad",
    [
        lambda: replication_quorum(0),
        lambda: erasure_quorum(0, 2),
        lambda: erasure_quorum(2, -1),
        lambda: have_quorum(-1, 1),
        lambda: replication_quorum(True),  # type: ignore[arg-type]
        lambda: quorum_still_possible(2, 2, 3, 1),
    ],
)
def test_rejects_nonsense(bad) -> None:
    with pytest.raises(InvalidInput):
        bad()


def test_have_quorum_exhaustive() -> None:
    for acks, needed in product(range(MAX_WIDTH + 1), repeat=2):
        assert have_quorum(acks, needed) is (acks >= needed)


def _can_still_succeed(acks: int, failures: int, width: int, needed: int) -> bool:
    """Simulate: try every outcome of the outstanding writes."""
    outstanding = width - acks - failures
    return any(acks + extra >= needed for extra in range(outstanding + 1))


def test_quorum_still_possible_exhaustive() -> None:
    for width in range(0, MAX_WIDTH + 1):
        for needed in range(0, width + 2):
            for acks in range(width + 1):
                for failures in range(width - acks + 1):
                    expect = _can_still_succeed(acks, failures, width, needed)
                    got = quorum_still_possible(acks, failures, width, needed)
                    assert got is expect, (acks, failures, width, needed)
                    if have_quorum(acks, needed):
                        assert got
                    if acks + failures == width:  # nothing outstanding: decided
                        assert got is have_quorum(acks, needed)


def test_write_is_decided_monotonically() -> None:
    """Along any order of outcomes, 'possible' never comes back once lost."""
    for width in range(1, 7):
        for needed in range(1, width + 1):
            for outcomes in product((True, False), repeat=width):
                acks = failures = 0
                lost = False
                for ok in outcomes:
                    acks += ok
                    failures += not ok
                    possible = quorum_still_possible(acks, failures, width, needed)
                    assert not (lost and possible)
                    lost = not possible
                assert lost is not have_quorum(acks, needed)


def test_reads_and_losses_at_ack() -> None:
    policy = builtin_policy()
    assert policy.get("StandardClass").read_quorum == 1
    cold = policy.get("ColdArchiveClass")
    assert (cold.k, cold.m, cold.width, cold.write_quorum) == (2, 4, 6, 4)
    assert cold.read_quorum == 2  # any 2 of the 6 shards rebuild the object
    assert cold.losses_survivable_at_ack == 2  # and 4 once every shard is stored
    assert cold.width - cold.read_quorum == 4
    assert policy.get("StandardClass").losses_survivable_at_ack == 1
    assert policy.get("RegionalClass").losses_survivable_at_ack == 1
    for k in range(1, 6):
        for m in range(0, 4):
            for wq in range(k, k + m + 1):
                rc = RedundancyClass("E", "erasure", k=k, m=m, write_quorum=wq)
                assert rc.losses_survivable_at_ack == wq - k >= 0
