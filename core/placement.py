"""The placement engine: redundancy class + constraints + backend views in, target set out.

Invariant kept (architecture invariant 6): a returned ``Placement`` always satisfies its class
and constraints completely, together with the surviving replicas in repair mode:

- ``width`` distinct backends (copies, or ``k + m`` shards), none of them excluded or already
  holding a piece;
- every new target is ``active``, ``healthy``, permitted (tenant allow-list, region lock,
  jurisdiction allow/deny) and has room for its piece (the object for replication,
  ``ceil(size / k)`` for an erasure shard);
- the whole set spans ``min_regions`` distinct regions, lies in one country if
  ``same_country``, and uses distinct providers if ``distinct_providers``.

There is no fallback: when no such set exists the engine raises, and it tells the two cases
apart exactly:

- ``PolicyViolation`` when no valid set exists even if every permitted active backend were
  healthy and had room (a 400: change the policy or register backends);
- ``InsufficientCapacity`` when one would exist then, but not among the backends that are
  healthy and have room now (a 503: wait, heal, or add capacity).

Both messages name the filter or rule that fails, e.g. ``region lock eu: only 1 permitted
backend, class StandardClass needs 3``.

Search: candidates are ranked by preference (see ``preference_key``), then taken greedily in
rank order, each one kept only if an exact feasibility test says the rest can still be
completed from the lower-ranked candidates. The test is exact because the rules have a simple
structure: with distinct providers, ``q`` more regions are reachable iff a provider-region
bipartite matching of size ``q`` exists (Kuhn's augmenting paths), and any remaining slots
take one backend of each further unused provider; same-country is solved per country. So the
engine finds a valid set whenever one exists, and the one it finds is the lexicographically
best set in rank order. Cost: ``O(n)`` feasibility tests of ``O(n + q * e)`` each, where ``n``
backends, ``q <= min_regions`` and ``e <= n`` distinct (region, provider) pairs; well under a
millisecond for 64 backends. Region, country, provider and jurisdiction compare
case-insensitively; the result does not depend on the order backends are given in.

Pure: no I/O, no clocks, no randomness. It does not write, count acknowledgements
(``core.quorum``) or decide when to repair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from core.errors import (
    BulletproofError,
    InsufficientCapacity,
    InvalidInput,
    PolicyViolation,
)
from core.policy import RedundancyClass

__all__ = [
    "RTT_BAND_MS",
    "STATES",
    "THROUGHPUT_BAND_MBPS",
    "BackendView",
    "Placement",
    "PlacementConstraints",
    "explain",
    "piece_bytes",
    "place",
    "place_for_write",
    "preference_key",
    "rejection",
]

STATES = ("active", "draining", "removed")
#: RTTs within the same band count as equal, so throughput and free space can decide and
#: jitter of a few milliseconds does not reshuffle placements.
RTT_BAND_MS = 5.0
#: Likewise for throughput.
THROUGHPUT_BAND_MBPS = 100.0

_MAX_LISTED = 8


def _real(name: str, value: object) -> float:
    """``value`` as a float (ints and Decimals from the database welcome); no NaN, no < 0."""
    if isinstance(value, bool | str | bytes):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number, got {value!r}") from None
    if math.isnan(number) or number < 0:
        raise InvalidInput(f"{name} must be a non-negative number, got {value!r}")
    return number


@dataclass(frozen=True)
class BackendView:
    """What placement needs to know of one backend, as of one moment; validated on creation."""

    name: str
    region: str
    country: str
    jurisdiction: str
    provider: str
    state: str = "active"
    healthy: bool = True
    rtt_ms: float = 0.0
    throughput_mbps: float = 0.0
    capacity_bytes: int | None = None
    used_bytes: int = 0
    #: Designated for audit archives: never holds data (the first policy stage refuses it).
    archive: bool = False

    def __post_init__(self) -> None:
        for name in ("name", "region", "country", "jurisdiction", "provider"):
            value = getattr(self, name)
            if not isinstance(value, str) or (name == "name" and not value):
                raise InvalidInput(f"backend {self.name!r}: {name} must be a string, got {value!r}")
        if self.state not in STATES:
            raise InvalidInput(
                f"backend {self.name!r}: state must be one of "
                f"{', '.join(STATES)}, got {self.state!r}"
            )
        if not isinstance(self.healthy, bool):
            raise InvalidInput(f"backend {self.name!r}: healthy must be a bool")
        for name in ("rtt_ms", "throughput_mbps"):
            object.__setattr__(
                self, name, _real(f"backend {self.name!r}: {name}", getattr(self, name))
            )
        for name in ("capacity_bytes", "used_bytes"):
            value = getattr(self, name)
            if value is None and name == "capacity_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(
                    f"backend {self.name!r}: {name} must be a non-negative integer, got {value!r}"
                )

    @property
    def free_bytes(self) -> float:
        """Bytes still free; ``math.inf`` when unlimited, never negative."""
        if self.capacity_bytes is None:
            return math.inf
        return float(max(0, self.capacity_bytes - self.used_bytes))


def _names(name: str, value: object, *, optional: bool = False) -> frozenset[str] | None:
    if value is None and optional:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput(f"{name} must be a set of strings, got {value!r}")
    items = frozenset(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidInput(f"{name} must hold non-empty strings, got {item!r}")
    return items


@dataclass(frozen=True)
class PlacementConstraints:
    """Where a placement may go, beyond its class; the empty default allows everything.

    ``region_lock`` entries are region prefixes or jurisdiction names ("eu" allows
    ``eu-west`` and any backend of jurisdiction ``EU``); it is the bucket's lock.
    ``tenant_region_lock`` is the tenant's, with the same syntax: a backend must satisfy both
    (each lock is a disjunction of its entries, the two locks a conjunction, so a tenant lock
    cannot be widened by a bucket). ``import_region_lock`` is a third lock of the same syntax,
    an import run's ``--region-lock``: added to the run's writes, and recorded with each version
    they commit so every later move of its pieces obeys it too (``with_import_lock``); it
    narrows, never widens. ``allowed_backends=None`` means no tenant allow-list.
    ``exclude`` names backends never to choose. ``reserved_backends`` names backends that serve
    only other tenants (a backend's tenant list, ``backend_tenants``). Sets given as lists or
    sets are frozen; a bare string is refused (it would be read as a set of letters).
    """

    region_lock: frozenset[str] = frozenset()
    jurisdiction_allow: frozenset[str] = frozenset()
    jurisdiction_deny: frozenset[str] = frozenset()
    allowed_backends: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    tenant_region_lock: frozenset[str] = frozenset()
    import_region_lock: frozenset[str] = frozenset()
    reserved_backends: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in (
            "region_lock",
            "jurisdiction_allow",
            "jurisdiction_deny",
            "exclude",
            "tenant_region_lock",
            "import_region_lock",
            "reserved_backends",
        ):
            object.__setattr__(self, name, _names(name, getattr(self, name)))
        object.__setattr__(
            self,
            "allowed_backends",
            _names("allowed_backends", self.allowed_backends, optional=True),
        )

    def with_import_lock(self, lock: Iterable[str]) -> PlacementConstraints:
        """These constraints with ``lock`` as the import region lock (an import's writes, and
        every later placement of a version that recorded one); an empty lock changes nothing."""
        names = frozenset(lock)
        return replace(self, import_region_lock=names) if names else self

    def describe(self) -> str:
        parts: list[str] = []
        if self.tenant_region_lock:
            parts.append(f"tenant region lock {_join_sorted(self.tenant_region_lock)}")
        if self.region_lock:
            parts.append(f"region lock {_join_sorted(self.region_lock)}")
        if self.import_region_lock:
            parts.append(f"import region lock {_join_sorted(self.import_region_lock)}")
        if self.jurisdiction_allow:
            parts.append(f"jurisdiction allow {_join_sorted(self.jurisdiction_allow)}")
        if self.jurisdiction_deny:
            parts.append(f"jurisdiction deny {_join_sorted(self.jurisdiction_deny)}")
        if self.allowed_backends is not None:
            parts.append(f"tenant allow-list of {len(self.allowed_backends)} backends")
        if self.exclude:
            parts.append(f"exclude {_join_sorted(self.exclude)}")
        if self.reserved_backends:
            parts.append(f"reserved for other tenants {_join_sorted(self.reserved_backends)}")
        return "; ".join(parts) if parts else "none"


@dataclass(frozen=True)
class Placement:
    """Where to write: ``targets`` in preference order; for erasure ``targets[i]`` holds shard i.

    In repair mode (``already_placed`` given) ``targets`` are only the new backends, as many as
    are missing, and ``write_quorum`` is all of them: the repair is done when each has the
    piece. An erasure repair assigns the missing shard numbers, ascending, to ``targets`` in
    order.
    """

    redundancy_class: RedundancyClass
    targets: tuple[str, ...]
    write_quorum: int
    reasons: tuple[str, ...] = ()


# --- normalisation and filters ------------------------------------------------------------


def _region(b: BackendView) -> str:
    return b.region.casefold()


def _country(b: BackendView) -> str:
    return b.country.upper()


def _provider(b: BackendView) -> str:
    return b.provider.casefold()


def _join_sorted(items: Iterable[str]) -> str:
    ordered = sorted(items)
    if len(ordered) > _MAX_LISTED:
        ordered = [*ordered[:_MAX_LISTED], f"and {len(ordered) - _MAX_LISTED} more"]
    return ", ".join(ordered)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def piece_bytes(rc: RedundancyClass, object_size: int) -> int:
    """Bytes each target stores: the object for replication, one ``ceil(size / k)`` shard."""
    if rc.kind == "erasure":
        return -(-object_size // rc.k)
    return object_size


def preference_key(b: BackendView) -> tuple[float, float, float, float, float, str]:
    """Sort key, best first: low RTT band, high throughput band, most free space, then exact
    RTT, exact throughput and name. Total and input-order independent (names are unique).
    Health is not in the key: only healthy backends are ranked at all.
    """
    rtt_band = b.rtt_ms // RTT_BAND_MS if math.isfinite(b.rtt_ms) else math.inf
    tput_band = (
        b.throughput_mbps // THROUGHPUT_BAND_MBPS if math.isfinite(b.throughput_mbps) else math.inf
    )
    return (rtt_band, -tput_band, -b.free_bytes, b.rtt_ms, -b.throughput_mbps, b.name)


_Filter = Callable[[BackendView], str | None]


@dataclass(frozen=True)
class _Stage:
    """One filter on the candidates; ``adjective`` describes what passes it, for messages."""

    label: str
    adjective: str
    reject: _Filter
    suffix: str = ""


def _lock_stage(label: str, entries: frozenset[str]) -> _Stage:
    lock = frozenset(x.casefold() for x in entries)

    def outside_lock(b: BackendView) -> str | None:
        region, jurisdiction = b.region.casefold(), b.jurisdiction.casefold()
        if any(region.startswith(x) or jurisdiction == x for x in lock):
            return None
        return f"outside {label} (region {b.region}, jurisdiction {b.jurisdiction})"

    return _Stage(label, "permitted", outside_lock)


def _policy_stages(c: PlacementConstraints) -> list[_Stage]:
    stages = [
        _Stage("archive", "for data", lambda b: "designated for archives" if b.archive else None),
        _Stage("state", "active", lambda b: None if b.state == "active" else b.state),
    ]
    if c.exclude:
        exclude = c.exclude
        stages.append(
            _Stage("exclude list", "permitted", lambda b: "excluded" if b.name in exclude else None)
        )
    if c.reserved_backends:
        reserved = c.reserved_backends
        stages.append(
            _Stage(
                "backends reserved for other tenants",
                "permitted",
                lambda b: "reserved for other tenants" if b.name in reserved else None,
            )
        )
    if c.allowed_backends is not None:
        allowed = c.allowed_backends
        stages.append(
            _Stage(
                "tenant allow-list",
                "permitted",
                lambda b: None if b.name in allowed else "not in tenant allow-list",
            )
        )
    if c.tenant_region_lock:
        stages.append(
            _lock_stage(
                f"tenant region lock {_join_sorted(c.tenant_region_lock)}", c.tenant_region_lock
            )
        )
    if c.region_lock:
        stages.append(_lock_stage(f"region lock {_join_sorted(c.region_lock)}", c.region_lock))
    if c.import_region_lock:
        label = f"import region lock {_join_sorted(c.import_region_lock)}"
        stages.append(_lock_stage(label, c.import_region_lock))
    if c.jurisdiction_allow:
        allow = frozenset(x.upper() for x in c.jurisdiction_allow)
        label = f"jurisdiction allow {_join_sorted(c.jurisdiction_allow)}"
        stages.append(
            _Stage(
                label,
                "permitted",
                lambda b: (
                    None
                    if b.jurisdiction.upper() in allow
                    else f"jurisdiction {b.jurisdiction} not allowed"
                ),
            )
        )
    if c.jurisdiction_deny:
        deny = frozenset(x.upper() for x in c.jurisdiction_deny)
        label = f"jurisdiction deny {_join_sorted(c.jurisdiction_deny)}"
        stages.append(
            _Stage(
                label,
                "permitted",
                lambda b: (
                    f"jurisdiction {b.jurisdiction} denied"
                    if b.jurisdiction.upper() in deny
                    else None
                ),
            )
        )
    return stages


def rejection(b: BackendView, constraints: PlacementConstraints) -> str | None:
    """Why ``b`` may not hold a piece under ``constraints`` (state, allow-list, locks,
    jurisdiction), or None if it may. Health and room are not checked: this answers "is a
    piece stored here compliant", e.g. for ``explain`` on an existing object."""
    for stage in _policy_stages(constraints):
        why = stage.reject(b)
        if why is not None:
            return why
    return None


def _now_stages(piece: int) -> list[_Stage]:
    def no_room(b: BackendView) -> str | None:
        if b.capacity_bytes is None or b.used_bytes + piece <= b.capacity_bytes:
            return None
        return f"no room ({b.used_bytes} of {b.capacity_bytes} bytes used, piece {piece})"

    return [
        _Stage("health", "healthy", lambda b: None if b.healthy else "unhealthy"),
        _Stage("capacity", "healthy", no_room, f" with room for {piece} bytes"),
    ]


# --- exact feasibility ------------------------------------------------------------------------


def _matching_reaches(edges: dict[str, set[str]], q: int) -> bool:
    """Is there a matching of size ``q`` between regions (keys) and providers (values)?"""
    owner: dict[str, str] = {}

    def augment(region: str, seen: set[str]) -> bool:
        for provider in sorted(edges[region]):
            if provider in seen:
                continue
            seen.add(provider)
            if provider not in owner or augment(owner[provider], seen):
                owner[provider] = region
                return True
        return False

    size = 0
    for region in sorted(edges):
        if augment(region, set()):
            size += 1
            if size >= q:
                return True
    return size >= q


def _feasible_in_country(
    rc: RedundancyClass, sel: Sequence[BackendView], pool: Sequence[BackendView], r: int
) -> bool:
    """Can ``r`` more from ``pool`` complete ``sel``? Country already settled (or free)."""
    if rc.distinct_providers:
        used = {_provider(b) for b in sel}
        pool = [b for b in pool if _provider(b) not in used]
        if len({_provider(b) for b in pool}) < r:
            return False
    elif len(pool) < r:
        return False
    have = {_region(b) for b in sel}
    q = max(0, rc.min_regions - len(have))
    if q > r:
        return False
    if q == 0:
        return True
    fresh = [b for b in pool if _region(b) not in have]
    if not rc.distinct_providers:
        return len({_region(b) for b in fresh}) >= q
    edges: dict[str, set[str]] = {}
    for b in fresh:
        edges.setdefault(_region(b), set()).add(_provider(b))
    return _matching_reaches(edges, q)


def _feasible(
    rc: RedundancyClass, sel: Sequence[BackendView], pool: Sequence[BackendView], r: int
) -> bool:
    """Exact test: do ``r`` distinct backends of ``pool`` exist that, with ``sel``, satisfy
    ``rc``'s rules? ``sel`` and ``pool`` are disjoint."""
    if r < 0 or len(pool) < r:
        return False
    if rc.distinct_providers and len({_provider(b) for b in sel}) < len(sel):
        return False
    if not rc.same_country:
        return _feasible_in_country(rc, sel, pool, r)
    countries = {_country(b) for b in sel}
    if len(countries) > 1:
        return False
    if countries:
        (country,) = countries
        return _feasible_in_country(rc, sel, [b for b in pool if _country(b) == country], r)
    if r == 0:
        return _feasible_in_country(rc, sel, (), 0)
    by_country: dict[str, list[BackendView]] = {}
    for b in pool:
        by_country.setdefault(_country(b), []).append(b)
    return any(_feasible_in_country(rc, sel, group, r) for group in by_country.values())


def _search(
    rc: RedundancyClass, ranked: Sequence[BackendView], fixed: Sequence[BackendView], need: int
) -> tuple[list[BackendView], list[tuple[BackendView, str]]] | None:
    """Greedy with an exact oracle: the lexicographically best valid completion, or None.

    Keeps the invariant "``fixed + chosen`` can still be completed from ``ranked[i:]``"; a
    candidate is taken iff taking it keeps the invariant. Also returns the candidates passed
    over, with why, for ``explain``.
    """
    if not _feasible(rc, fixed, ranked, need):
        return None
    chosen: list[BackendView] = []
    passed: list[tuple[BackendView, str]] = []
    for i, b in enumerate(ranked):
        if len(chosen) == need:
            break
        trial = [*fixed, *chosen, b]
        if _feasible(rc, trial, ranked[i + 1 :], need - len(chosen) - 1):
            chosen.append(b)
        else:
            passed.append((b, _why_not(rc, [*fixed, *chosen], b)))
    assert len(chosen) == need  # guaranteed by the invariant
    return chosen, passed


def _why_not(rc: RedundancyClass, sel: Sequence[BackendView], b: BackendView) -> str:
    if rc.distinct_providers and _provider(b) in {_provider(x) for x in sel}:
        return f"provider {b.provider} is already used"
    if rc.same_country and sel and _country(b) != _country(sel[0]):
        return f"country {b.country} differs from {sel[0].country}"
    return f"taking it would leave {_rules(rc)} unsatisfiable with the rest"


def _rules(rc: RedundancyClass) -> str:
    rules = [f"{rc.width} distinct backends"]
    if rc.min_regions > 1:
        rules.append(f"{rc.min_regions} regions")
    if rc.same_country:
        rules.append("same country")
    if rc.distinct_providers:
        rules.append("distinct providers")
    return " + ".join(rules)


# --- diagnosis ------------------------------------------------------------------------------


def _shortfall(
    rc: RedundancyClass,
    pool: Sequence[BackendView],
    fixed: Sequence[BackendView],
    need: int,
    adjective: str,
    suffix: str = "",
) -> str:
    """Which rule ``pool`` fails (it is known to be infeasible), in words."""
    more = " more" if fixed else ""
    needs = f"class {rc.name} needs {need}{more}"
    if len(pool) < need:
        return f"only {_plural(len(pool), f'{adjective} backend')}{suffix}, {needs}"
    adjective = f"{adjective} backends{suffix}"
    if rc.distinct_providers:
        fixed_providers = [_provider(b) for b in fixed]
        if len(set(fixed_providers)) < len(fixed_providers):
            return "the surviving replicas already share a provider (distinct_providers)"
        providers = {_provider(b) for b in pool} - set(fixed_providers)
        if len(providers) < need:
            word = "unused provider" if fixed else "provider"
            return (
                f"distinct providers: only {_plural(len(providers), word)} "
                f"({_join_sorted(providers) or '-'}) among {adjective}, {needs}"
            )
    if rc.same_country:
        fixed_countries = {_country(b) for b in fixed}
        if len(fixed_countries) > 1:
            return (
                f"same country: the surviving replicas are already in "
                f"{_join_sorted(fixed_countries)}"
            )
        counts: dict[str, int] = {}
        for b in pool:
            counts[_country(b)] = counts.get(_country(b), 0) + 1
        if fixed_countries:
            (country,) = fixed_countries
            if counts.get(country, 0) < need:
                return (
                    f"same country: only {counts.get(country, 0)} of the {adjective} are "
                    f"in {country}, where the surviving replicas are, {needs}"
                )
        else:
            best = max(sorted(counts), key=lambda c: counts[c])
            if counts[best] < need:
                return (
                    f"same country: at most {counts[best]} {adjective} share a "
                    f"country ({best}), {needs} in one country"
                )
    if rc.min_regions > 1:
        regions = {_region(b) for b in pool} | {_region(b) for b in fixed}
        if len(regions) < rc.min_regions:
            return (
                f"min_regions: {adjective} span only "
                f"{_plural(len(regions), 'region')} ({_join_sorted(regions) or '-'}), "
                f"class {rc.name} needs at least {rc.min_regions}"
            )
        if rc.same_country:
            return (
                f"min_regions + same country: no country has {adjective} in "
                f"{rc.min_regions} regions, class {rc.name} needs {rc.width} backends "
                f"in one country across {rc.min_regions} regions"
            )
    return f"no {need}{more} of the {adjective} satisfy {_rules(rc)} together"


def _listing(rejected: Sequence[tuple[BackendView, str]]) -> str:
    shown = [f"{b.name} ({why})" for b, why in rejected[:_MAX_LISTED]]
    if len(rejected) > _MAX_LISTED:
        shown.append(f"and {len(rejected) - _MAX_LISTED} more")
    return ", ".join(shown)


def _apply(
    stages: Sequence[_Stage],
    pool: list[BackendView],
    rc: RedundancyClass,
    fixed: Sequence[BackendView],
    need: int,
    lines: list[str],
    error: type[BulletproofError],
) -> list[BackendView]:
    """Filter ``pool`` stage by stage; raise ``error`` at the first stage that makes the
    placement impossible, naming that stage, its rule and what it filtered out."""
    for stage in stages:
        kept: list[BackendView] = []
        rejected: list[tuple[BackendView, str]] = []
        for b in pool:
            why = stage.reject(b)
            if why is None:
                kept.append(b)
            else:
                rejected.append((b, why))
                lines.append(f"skip {b.name}: {why}")
        if rejected and not _feasible(rc, fixed, kept, need):
            shortfall = _shortfall(rc, kept, fixed, need, stage.adjective, stage.suffix)
            message = f"{stage.label}: {shortfall}"
            raise error(f"{message}; filtered out: {_listing(rejected)}")
        pool = kept
    return pool


# --- the engine -------------------------------------------------------------------------------


def _plan(
    rc: RedundancyClass,
    backends: Sequence[BackendView],
    constraints: PlacementConstraints,
    object_size: int,
    already_placed: Sequence[BackendView],
    lines: list[str],
) -> Placement:
    if not isinstance(rc, RedundancyClass):
        raise InvalidInput(f"rc must be a RedundancyClass, got {type(rc).__name__}")
    if isinstance(object_size, bool) or not isinstance(object_size, int) or object_size < 0:
        raise InvalidInput(f"object_size must be a non-negative integer, got {object_size!r}")
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"backends: duplicate backend names {', '.join(dup)}")
    fixed = sorted(already_placed, key=lambda b: b.name)
    fixed_names = {b.name for b in fixed}
    if len(fixed_names) != len(fixed):
        raise InvalidInput("already_placed: a backend is listed twice")
    piece = piece_bytes(rc, object_size)
    need = rc.width - len(fixed)

    lines.append(f"class {rc.name}: {rc.describe()}")
    lines.append(f"constraints: {constraints.describe()}")
    if fixed:
        lines.append(
            f"repair: {len(fixed)} of {rc.width} surviving on "
            f"{', '.join(b.name for b in fixed)}; placing {max(0, need)} more"
        )
    if need <= 0:
        if not _feasible(rc, fixed, (), 0):
            raise PolicyViolation(
                f"repair: the {len(fixed)} surviving pieces already fill class {rc.name} but "
                f"break {_rules(rc)}; that needs rebalancing, not repair"
            )
        lines.append("nothing to place")
        return Placement(rc, (), 0, tuple(lines))

    pool = sorted((b for b in backends if b.name not in fixed_names), key=lambda b: b.name)
    if not _feasible(rc, fixed, pool, need):
        raise PolicyViolation(
            f"registered backends: {_shortfall(rc, pool, fixed, need, 'registered')}"
        )
    permitted = _apply(_policy_stages(constraints), pool, rc, fixed, need, lines, PolicyViolation)
    eligible = _apply(_now_stages(piece), permitted, rc, fixed, need, lines, InsufficientCapacity)
    ranked = sorted(eligible, key=preference_key)
    lines.append(f"eligible: {len(ranked)} of {len(backends)} backends")
    found = _search(rc, ranked, fixed, need)
    assert found is not None  # _apply raised otherwise
    chosen, passed = found
    for b, why in passed:
        lines.append(f"pass over {b.name}: {why}")
    slot = "shard" if rc.kind == "erasure" else "target"
    for i, b in enumerate(chosen):
        free = "unlimited" if b.capacity_bytes is None else f"{int(b.free_bytes)} bytes"
        lines.append(
            f"{slot} {i}: {b.name} (region {b.region}, country {b.country}, "
            f"provider {b.provider}, rtt {b.rtt_ms:g} ms, {b.throughput_mbps:g} Mbps, "
            f"free {free})"
        )
    if fixed:
        write_quorum = len(chosen)
        lines.append(f"write quorum: all {write_quorum} new pieces (repair)")
    else:
        write_quorum = rc.write_quorum
        lines.append(
            f"write quorum: {write_quorum} of {rc.width}; "
            f"{rc.losses_survivable_at_ack} further loss(es) survivable at "
            f"acknowledgement; reads need {rc.read_quorum}"
        )
    return Placement(rc, tuple(b.name for b in chosen), write_quorum, tuple(lines))


def place(
    rc: RedundancyClass,
    backends: Sequence[BackendView],
    constraints: PlacementConstraints = PlacementConstraints(),
    *,
    object_size: int = 0,
    already_placed: Sequence[BackendView] = (),
) -> Placement:
    """Choose the backends for one object (or the missing pieces of one, in repair mode).

    Returns ``rc.width - len(already_placed)`` distinct targets that, with ``already_placed``,
    satisfy the class and constraints (see the module docstring). Raises ``PolicyViolation``
    or ``InsufficientCapacity`` (never a weaker placement), ``InvalidInput`` for malformed
    arguments (duplicate backend names, negative size).
    """
    return _plan(rc, backends, constraints, object_size, already_placed, [])


def explain(
    rc: RedundancyClass,
    backends: Sequence[BackendView],
    constraints: PlacementConstraints = PlacementConstraints(),
    *,
    object_size: int = 0,
    already_placed: Sequence[BackendView] = (),
) -> list[str]:
    """The reasoning of ``place`` as lines for ``bulletproof policy explain``; never raises
    for an impossible placement: the last line then says why, as the error would."""
    lines: list[str] = []
    try:
        _plan(rc, backends, constraints, object_size, already_placed, lines)
    except (PolicyViolation, InsufficientCapacity) as exc:
        lines.append(f"cannot place: {type(exc).__name__}: {exc}")
    return lines


#: RTT added to an unhealthy backend in ``place_for_write``'s fallback, so every healthy
#: candidate ranks before it.
_UNHEALTHY_RTT_PENALTY_MS = 1e9


def place_for_write(
    rc: RedundancyClass,
    backends: Sequence[BackendView],
    constraints: PlacementConstraints = PlacementConstraints(),
    *,
    object_size: int = 0,
) -> tuple[Placement, frozenset[str]]:
    """Placement for a new write, tolerating unhealthy backends down to the write quorum.

    Returns the placement and the names of its targets that are unhealthy now. The caller
    writes only to the healthy ones and commits the others as *pending* replicas with their
    replication jobs (they are finished when the backend returns), so a backend that is down
    does not stop writes while the quorum can still be met; this is how "3 copies, quorum 2"
    keeps accepting writes with one of three backends down.

    The first choice is always a fully healthy placement. The fallback ranks every unhealthy
    backend after every healthy one, and never relaxes a rule of the class or of the
    constraints: the targets still satisfy them all, only their health differs. If the
    healthy targets cannot reach the write quorum, the original ``InsufficientCapacity``
    is raised (a 503); ``PolicyViolation`` is never softened.
    """
    try:
        return place(rc, backends, constraints, object_size=object_size), frozenset()
    except InsufficientCapacity as first:
        health = {b.name: b.healthy for b in backends}
        optimistic = [
            b
            if b.healthy
            else replace(b, healthy=True, rtt_ms=b.rtt_ms + _UNHEALTHY_RTT_PENALTY_MS)
            for b in backends
        ]
        try:
            placement = place(rc, optimistic, constraints, object_size=object_size)
        except (InsufficientCapacity, PolicyViolation):
            raise first from None
        down = frozenset(name for name in placement.targets if not health[name])
        if len(placement.targets) - len(down) < placement.write_quorum:
            raise first from None
        return placement, down
