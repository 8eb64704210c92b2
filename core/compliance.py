"""Compliance: may a backend keep a piece of an object, and which holders must move.

Pure questions about an object already stored, answered by the placement engine (no rule is
re-implemented here): the repairer asks ``may_hold`` before it keeps or adds a replica, the
placement checker and the write path ask ``misplaced`` (which holders break the object's class,
region lock or jurisdiction today). Health and free space never matter: they are not policy.
"""

from __future__ import annotations

from dataclasses import replace

from core.errors import InsufficientCapacity, PolicyViolation
from core.placement import BackendView, PlacementConstraints, place, preference_key
from core.policy import RedundancyClass

__all__ = ["may_hold", "misplaced"]

#: A one-copy class: placing it onto one backend alone asks "is this backend permitted?".
_PROBE = RedundancyClass("Probe", "replication", copies=1, write_quorum=1)


def may_hold(
    rc: RedundancyClass,
    constraints: PlacementConstraints,
    backend: BackendView,
    others: list[BackendView],
    candidates: list[BackendView],
) -> bool:
    """Does the policy allow ``backend`` to keep a replica, beside the ``others`` holders?

    Two questions, both answered by the placement engine (no rule is re-implemented here):
    is the backend itself permitted (state, region lock, jurisdiction: a one-copy probe
    placement onto it alone), and can the holders with it still form a valid set, completed
    if need be from ``candidates`` (a repair-mode placement with all of them already placed).
    Health and free space do not matter (``InsufficientCapacity`` means the set is valid).
    """
    return _permitted(backend, constraints) and _completable(
        rc, constraints, [*others, backend], candidates
    )


def _permitted(backend: BackendView, constraints: PlacementConstraints) -> bool:
    try:
        place(_PROBE, [replace(backend, healthy=True)], constraints)
    except (PolicyViolation, InsufficientCapacity):
        return False
    return True


def _completable(
    rc: RedundancyClass,
    constraints: PlacementConstraints,
    holders: list[BackendView],
    candidates: list[BackendView],
) -> bool:
    names = {b.name for b in holders}
    pool = [replace(c, healthy=True) for c in candidates if c.name not in names]
    try:
        place(rc, pool, constraints, already_placed=holders)
    except PolicyViolation:
        return False
    except InsufficientCapacity:
        return True
    return True


def misplaced(
    rc: RedundancyClass,
    constraints: PlacementConstraints,
    holders: list[BackendView],
    candidates: list[BackendView],
) -> list[BackendView]:
    """Holders whose replica must move for the object to satisfy its class again.

    First every holder that is itself not permitted (draining or removed, outside the region
    lock or the jurisdiction lists). Then, if the permitted rest cannot be completed into a valid
    set (e.g. a backend changed region and now two copies share one), the one holder whose
    removal makes it completable, least preferred first; the next check finds the next one if
    more must go. An object with fewer holders than its class but otherwise valid is the
    repairer's (``add_replica``), not a misplacement. Pure: placement decides every rule.
    """
    bad = [b for b in holders if not _permitted(b, constraints)]
    good = [b for b in holders if b not in bad]
    if _completable(rc, constraints, good, candidates):
        return bad
    for victim in sorted(good, key=preference_key, reverse=True):
        rest = [b for b in good if b is not victim]
        if _completable(rc, constraints, rest, candidates):
            return [*bad, victim]
    return bad
