"""Repair and placement-check decisions (``may_hold``, ``misplaced``): pure, every rule the
placement engine's own. Repairs never weaken a class or a region lock."""

from __future__ import annotations

from dataclasses import replace

from core.compliance import may_hold, misplaced
from core.placement import BackendView, PlacementConstraints
from core.policy import builtin_policy

STANDARD = builtin_policy().get("StandardClass")  # 3 copies, >= 2 regions
REGIONAL = builtin_policy().get("RegionalClass")  # 2 copies, one country


def b(name: str, region: str, country: str = "DE", jur: str = "EU", **kw: object) -> BackendView:
    return BackendView(name, region, country, jur, provider=name, **kw)  # type: ignore[arg-type]


B0, B1, B2, B3 = (
    b("b0", "eu-west"),
    b("b1", "eu-central", "FR"),
    b("b2", "us-east", "US", "US"),
    b("b3", "eu-west"),
)
ALL = [B0, B1, B2, B3]
EU = PlacementConstraints(region_lock=frozenset({"eu"}))


def test_a_healthy_compliant_backend_may_keep_its_replica() -> None:
    assert may_hold(STANDARD, PlacementConstraints(), B2, [B0, B1], ALL)


def test_a_down_backend_still_may_hold_it_health_is_not_policy() -> None:
    assert may_hold(STANDARD, PlacementConstraints(), replace(B2, healthy=False), [B0, B1], ALL)


def test_draining_or_removed_backends_may_not() -> None:
    for state in ("draining", "removed"):
        assert not may_hold(
            STANDARD, PlacementConstraints(), replace(B2, state=state), [B0, B1], ALL
        )


def test_region_lock_is_kept_by_repairs() -> None:
    assert not may_hold(STANDARD, EU, B2, [B0, B1], ALL)
    assert may_hold(STANDARD, EU, B3, [B0, B1], ALL)


def test_the_set_must_stay_valid_not_only_the_backend() -> None:
    # Three copies all in eu-west would break min_regions 2.
    only_west = [B0, B3, b("b4", "eu-west")]
    assert not may_hold(STANDARD, PlacementConstraints(), only_west[2], only_west[:2], only_west)
    # Regional: both copies in one country.
    assert not may_hold(REGIONAL, PlacementConstraints(), B1, [B0], ALL)


def test_nothing_misplaced_in_a_valid_set() -> None:
    assert misplaced(STANDARD, PlacementConstraints(), [B0, B1, B2], ALL) == []


def test_draining_backend_is_misplaced() -> None:
    draining = replace(B1, state="draining")
    assert misplaced(
        STANDARD, PlacementConstraints(), [B0, draining, B2], [B0, draining, B2, B3]
    ) == [draining]


def test_backend_that_changed_region_breaks_the_set() -> None:
    # b2 moved into eu-west: now all three holders share one region; one of them must go, and
    # after moving it a valid set exists (b1 is in eu-central).
    moved = replace(B2, region="eu-west", country="DE", jurisdiction="EU")
    holders = [B0, B3, moved]
    wrong = misplaced(STANDARD, PlacementConstraints(), holders, [B0, B1, B3, moved])
    assert len(wrong) == 1 and wrong[0] in holders


def test_region_lock_misplacement() -> None:
    assert misplaced(STANDARD, EU, [B0, B1, B2], ALL) == [B2]


def test_short_but_valid_is_not_misplaced() -> None:
    assert misplaced(STANDARD, PlacementConstraints(), [B0, B1], ALL) == []
