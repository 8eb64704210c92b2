"""One GREEN / YELLOW / RED for the whole federation, from what an operator must act on.

Pure rules over counts the metadata server already has (``schema/placement_census.py``,
backend health, the job queue), so ``bulletproof status``, the admin API and an alert rule
all judge the same way:

- an object is **fully placed** when every part has as many verified-good pieces as its layout
  is wide (``copies``, or ``k + m`` shards); **at risk** when one more lost piece would make it
  unreadable (or it already is); **degraded** in between;
- RED: any object at risk, or no backend healthy; YELLOW: any object degraded, a backend not
  healthy, dead jobs waiting for an operator, or a periodic worker whose last run failed;
  GREEN otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from core.policy import PolicyDocument

__all__ = [
    "FederationState",
    "PlacementCount",
    "PlacementTally",
    "judge",
    "placement_of",
    "tally",
]

GREEN, YELLOW, RED = "GREEN", "YELLOW", "RED"


def placement_of(ok_pieces: int, width: int, read_quorum: int) -> str:
    """``full``, ``degraded``, ``at_risk`` or ``unreadable`` for one object whose weakest part
    has ``ok_pieces`` good pieces, out of ``width``, of which ``read_quorum`` are needed to read."""
    if ok_pieces >= width:
        return "full"
    if ok_pieces < read_quorum:
        return "unreadable"
    if ok_pieces == read_quorum:
        return "at_risk"
    return "degraded"


@dataclass
class PlacementTally:
    """Objects (versions) and their bytes in each placement state."""

    objects: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("full", "degraded", "at_risk", "unreadable"), 0)
    )
    bytes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("full", "degraded", "at_risk", "unreadable"), 0)
    )

    def add(self, state: str, objects: int, size: int) -> None:
        self.objects[state] += objects
        self.bytes[state] += size


class PlacementCount(Protocol):
    """Objects of one class and erasure layout (``k`` 0: replicated) whose weakest part has
    ``ok_pieces`` good pieces (``schema.placement_census.PlacementGroup``)."""

    @property
    def redundancy_class(self) -> str: ...
    @property
    def k(self) -> int: ...
    @property
    def m(self) -> int: ...
    @property
    def ok_pieces(self) -> int: ...
    @property
    def objects(self) -> int: ...
    @property
    def bytes(self) -> int: ...


def _layout(group: PlacementCount, policy: PolicyDocument) -> tuple[int, int]:
    """(width, read quorum): the erasure code the objects were written with, else their
    class's copies in the policy in force (a class no longer defined: what they have)."""
    if group.k:
        return group.k + group.m, group.k
    rc = policy.classes.get(group.redundancy_class)
    if rc is None or rc.kind != "replication":
        return max(group.ok_pieces, 1), 1
    return rc.copies, 1


def tally(groups: Iterable[PlacementCount], policy: PolicyDocument) -> PlacementTally:
    """Objects and bytes per placement state, judged against ``policy``."""
    result = PlacementTally()
    for group in groups:
        width, read_quorum = _layout(group, policy)
        result.add(placement_of(group.ok_pieces, width, read_quorum), group.objects, group.bytes)
    return result


@dataclass(frozen=True)
class FederationState:
    state: str
    reasons: list[str]


def judge(
    placement: PlacementTally,
    backend_health: Iterable[str],
    *,
    dead_jobs: int,
    failed_workers: Iterable[str],
) -> FederationState:
    """The federation's colour and the reasons for it, worst first."""
    health = list(backend_health)
    red: list[str] = []
    yellow: list[str] = []
    lost = placement.objects["unreadable"]
    risky = placement.objects["at_risk"]
    if lost:
        red.append(f"{lost} objects have fewer pieces than a read needs")
    if risky:
        red.append(f"{risky} objects would be lost with one more failed piece")
    if health and "healthy" not in health:
        red.append("no backend is healthy")
    if placement.objects["degraded"]:
        yellow.append(f"{placement.objects['degraded']} objects are not fully placed")
    unhealthy = sum(1 for state in health if state != "healthy")
    if unhealthy:
        yellow.append(f"{unhealthy} of {len(health)} backends are not healthy")
    if dead_jobs:
        yellow.append(f"{dead_jobs} dead jobs wait for an operator (bulletproof worker retry)")
    failed = sorted(failed_workers)
    if failed:
        yellow.append("last run failed: " + ", ".join(failed))
    state = RED if red else YELLOW if yellow else GREEN
    return FederationState(state, red + yellow)
