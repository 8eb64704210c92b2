"""Tenant and bucket region locks together, the tenant allow-list, and ``rejection``: what the
gateway builds from stored settings (``constraints_for``) must never be widened by a bucket."""

from __future__ import annotations

import pytest

from core.compliance import misplaced
from core.errors import InsufficientCapacity, PolicyViolation
from core.placement import (
    BackendView,
    PlacementConstraints,
    explain,
    place,
    place_for_write,
    rejection,
)
from core.policy import builtin_policy

POLICY = builtin_policy()
STANDARD = POLICY.get("StandardClass")
REGIONAL = POLICY.get("RegionalClass")
COLD = POLICY.get("ColdArchiveClass")


def fleet(**health: bool) -> list[BackendView]:
    spec = [
        ("b0", "eu-west", "DE", "EU", 1.0),
        ("b1", "eu-central", "FR", "EU", 2.0),
        ("b2", "us-east", "US", "US", 3.0),
        ("b3", "eu-north", "SE", "EU", 4.0),
        ("b4", "eu-west", "DE", "EU", 5.0),
        ("b5", "us-west", "US", "US", 6.0),
    ]
    return [
        BackendView(n, r, c, j, "moto", rtt_ms=rtt, healthy=health.get(n, True))
        for n, r, c, j, rtt in spec
    ]


def test_both_locks_must_hold() -> None:
    both = PlacementConstraints(region_lock=frozenset({"eu"}), tenant_region_lock={"eu-west"})
    with pytest.raises(PolicyViolation, match=r"^tenant region lock eu-west: only 2 permitted"):
        # The tenant lock leaves b0 and b4 (eu-west); the wider bucket lock cannot add b1, b3.
        place(STANDARD, fleet(), both)
    with pytest.raises(PolicyViolation, match=r"^region lock us: only 0 permitted"):
        place(
            REGIONAL, fleet(), PlacementConstraints(region_lock={"us"}, tenant_region_lock={"eu"})
        )
    ok = place(REGIONAL, fleet(), both)
    assert set(ok.targets) == {"b0", "b4"}


def test_tenant_lock_is_named_in_the_refusal() -> None:
    c = PlacementConstraints(tenant_region_lock=frozenset({"ap"}))
    with pytest.raises(PolicyViolation, match=r"^tenant region lock ap: only 0 permitted"):
        place(STANDARD, fleet(), c)
    lines = explain(STANDARD, fleet(), c)
    assert lines[1] == "constraints: tenant region lock ap"
    assert lines[-1].startswith("cannot place: PolicyViolation: tenant region lock ap")


def test_eu_lock_with_every_eu_backend_down_is_a_503_never_a_us_backend() -> None:
    down = fleet(b0=False, b1=False, b3=False, b4=False)
    c = PlacementConstraints(region_lock=frozenset({"eu"}))
    with pytest.raises(InsufficientCapacity, match="^health"):
        place_for_write(STANDARD, down, c)
    # Two EU regions still healthy: the write goes ahead on EU backends only (one pending).
    some = fleet(b0=False, b4=False)
    placement, pending = place_for_write(STANDARD, some, c)
    assert set(placement.targets) <= {"b0", "b1", "b3", "b4"} and len(pending) == 1


def test_allow_list_and_lock_compose() -> None:
    c = PlacementConstraints(
        allowed_backends=frozenset({"b0", "b1", "b2", "b3"}), tenant_region_lock={"eu"}
    )
    assert set(place(STANDARD, fleet(), c).targets) == {"b0", "b1", "b3"}
    with pytest.raises(PolicyViolation, match="tenant allow-list: only 4 permitted"):
        place(COLD, fleet(), c)


def test_rejection_names_the_rule_and_ignores_health() -> None:
    c = PlacementConstraints(region_lock=frozenset({"eu"}), jurisdiction_deny=frozenset({"EU"}))
    b0, _, b2, *_ = fleet(b0=False)
    assert rejection(b2, c) == "outside region lock eu (region us-east, jurisdiction US)"
    assert rejection(b0, c) == "jurisdiction EU denied"
    assert rejection(b0, PlacementConstraints()) is None  # unhealthy, but compliant
    assert "tenant region lock" in PlacementConstraints(tenant_region_lock={"eu"}).describe()


def test_cold_archive_needs_six_distinct_backends() -> None:
    placement = place(COLD, fleet())
    assert len(set(placement.targets)) == 6 and placement.write_quorum == 4
    with pytest.raises(PolicyViolation, match="only 5"):
        place(COLD, fleet()[:5])
    # Three down: 3 healthy shards cannot reach the write quorum of 4.
    with pytest.raises(InsufficientCapacity):
        place_for_write(COLD, fleet(b1=False, b2=False, b3=False))
    # Two down: the write rides through them, their shards committed pending.
    placement, pending = place_for_write(COLD, fleet(b4=False, b5=False))
    assert pending == {"b4", "b5"} and set(placement.targets[-2:]) == {"b4", "b5"}


def test_an_import_lock_recorded_with_a_version_narrows_every_later_placement() -> None:
    bucket = PlacementConstraints(tenant_region_lock=frozenset({"eu", "us"}))
    assert bucket.with_import_lock(()) is bucket
    locked = bucket.with_import_lock(["eu"])
    assert locked.import_region_lock == frozenset({"eu"})
    assert locked.tenant_region_lock == bucket.tenant_region_lock
    assert "import region lock eu" in locked.describe()
    # A repair beside b0 and b1 may choose b2 (US) under the bucket's rules, never under the lock.
    views = {v.name: v for v in fleet()}
    held = [views["b0"], views["b1"]]
    pool = [views["b2"], views["b3"]]
    assert "b2" in {*place(STANDARD, [views["b2"]], bucket, already_placed=held).targets}
    assert place(STANDARD, pool, locked, already_placed=held).targets == ("b3",)
    # The placement checker's judgement: a replica on b2 breaks the lock, not the bucket's rules.
    holders = [views["b0"], views["b1"], views["b2"]]
    assert misplaced(STANDARD, bucket, holders, fleet()) == []
    assert [b.name for b in misplaced(STANDARD, locked, holders, fleet())] == ["b2"]
