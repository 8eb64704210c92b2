"""The federation's colour: placement states per object and the judgement over them."""

from __future__ import annotations

import pytest

from core.federation_state import PlacementTally, judge, placement_of


@pytest.mark.parametrize(
    ("ok", "width", "read", "expected"),
    [
        (3, 3, 1, "full"),
        (2, 3, 1, "degraded"),
        (1, 3, 1, "at_risk"),
        (0, 3, 1, "unreadable"),
        (6, 6, 2, "full"),
        (3, 6, 2, "degraded"),
        (2, 6, 2, "at_risk"),
        (1, 6, 2, "unreadable"),
        (1, 1, 1, "full"),
    ],
)
def test_placement_of(ok: int, width: int, read: int, expected: str) -> None:
    assert placement_of(ok, width, read) == expected


def _tally(**objects: int) -> PlacementTally:
    tally = PlacementTally()
    for state, n in objects.items():
        tally.add(state, n, n * 10)
    return tally


def test_green_only_when_everything_is_placed_and_healthy() -> None:
    verdict = judge(_tally(full=5), ["healthy"] * 3, dead_jobs=0, failed_workers=[])
    assert verdict.state == "GREEN" and verdict.reasons == []


@pytest.mark.parametrize(
    ("tally", "health", "dead", "failed"),
    [
        (_tally(full=5, degraded=1), ["healthy"] * 3, 0, []),
        (_tally(full=5), ["healthy", "healthy", "down"], 0, []),
        (_tally(full=5), ["healthy", "degraded"], 0, []),
        (_tally(full=5), ["healthy"], 2, []),
        (_tally(full=5), ["healthy"], 0, ["scrubber"]),
    ],
)
def test_yellow(tally: PlacementTally, health: list[str], dead: int, failed: list[str]) -> None:
    verdict = judge(tally, health, dead_jobs=dead, failed_workers=failed)
    assert verdict.state == "YELLOW" and verdict.reasons


@pytest.mark.parametrize(
    ("tally", "health"),
    [
        (_tally(full=5, at_risk=1), ["healthy"] * 3),
        (_tally(full=5, unreadable=1), ["healthy"] * 3),
        (_tally(full=5), ["down", "down"]),
    ],
)
def test_red(tally: PlacementTally, health: list[str]) -> None:
    verdict = judge(tally, health, dead_jobs=0, failed_workers=[])
    assert verdict.state == "RED"
    # red reasons come first
    assert "objects" in verdict.reasons[0] or "no backend" in verdict.reasons[0]
