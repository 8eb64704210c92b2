"""Placement engine: every returned placement is valid, every refusal is justified.

The oracle here is written independently of ``core.placement``: plain predicates for each
rule and brute force over all subsets, small enough to run exhaustively.
"""

from __future__ import annotations

import contextlib
import math
import time
from decimal import Decimal
from itertools import combinations
from math import comb

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from core.errors import InsufficientCapacity, InvalidInput, PolicyViolation
from core.placement import (
    BackendView,
    Placement,
    PlacementConstraints,
    explain,
    place,
)
from core.policy import RedundancyClass, builtin_policy

POLICY = builtin_policy()
STANDARD = POLICY.get("StandardClass")
REGIONAL = POLICY.get("RegionalClass")
COLD = POLICY.get("ColdArchiveClass")

REGIONS = ["eu-west", "eu-central", "EU-North", "us-east", "us-west", "ap-south"]
COUNTRIES = ["DE", "FR", "US", "JP", "de"]
JURISDICTIONS = ["EU", "US", "JP", "eu"]
PROVIDERS = ["minio", "aws", "local", "AWS", "wasabi"]
BRUTE_FORCE_LIMIT = 4000


# --- the independent oracle --------------------------------------------------------------


def permitted(b: BackendView, c: PlacementConstraints) -> bool:
    if b.state != "active" or b.name in c.exclude:
        return False
    if c.allowed_backends is not None and b.name not in c.allowed_backends:
        return False
    for lock in (c.region_lock, c.tenant_region_lock):  # each lock must hold on its own
        if lock and not any(
            b.region.lower().startswith(x.lower()) or b.jurisdiction.lower() == x.lower()
            for x in lock
        ):
            return False
    if c.jurisdiction_allow and b.jurisdiction.upper() not in {
        x.upper() for x in c.jurisdiction_allow
    }:
        return False
    return b.jurisdiction.upper() not in {x.upper() for x in c.jurisdiction_deny}


def piece(rc: RedundancyClass, size: int) -> int:
    return math.ceil(size / rc.k) if rc.kind == "erasure" else size


def usable_now(b: BackendView, rc: RedundancyClass, size: int) -> bool:
    room = b.capacity_bytes is None or b.used_bytes + piece(rc, size) <= b.capacity_bytes
    return b.healthy and room


def valid_set(rc: RedundancyClass, chosen: list[BackendView]) -> bool:
    names = [b.name for b in chosen]
    if len(set(names)) != len(names) or len(chosen) != rc.width:
        return False
    if len({b.region.lower() for b in chosen}) < rc.min_regions:
        return False
    if rc.same_country and len({b.country.upper() for b in chosen}) > 1:
        return False
    providers = [b.provider.lower() for b in chosen]
    return not (rc.distinct_providers and len(set(providers)) < len(providers))


def reduce_pool(pool: list[BackendView], need: int) -> list[BackendView]:
    """Keep at most ``need`` backends per (region, country, provider): the rules cannot tell
    backends of one signature apart, so this keeps every answer to 'does a valid set exist'."""
    kept: dict[tuple[str, str, str], list[BackendView]] = {}
    for b in sorted(pool, key=lambda b: b.name):
        group = kept.setdefault((b.region.lower(), b.country.upper(), b.provider.lower()), [])
        if len(group) < need:
            group.append(b)
    return [b for group in kept.values() for b in group]


def exists_valid(
    rc: RedundancyClass, pool: list[BackendView], fixed: list[BackendView], need: int
) -> bool | None:
    """Brute force; None when there are too many subsets to try."""
    pool = reduce_pool(pool, need)
    if comb(len(pool), need) > BRUTE_FORCE_LIMIT:
        event("too many subsets to brute-force")
        return None
    return any(valid_set(rc, [*fixed, *combo]) for combo in combinations(pool, need))


def check_against_oracle(
    rc: RedundancyClass,
    backends: list[BackendView],
    c: PlacementConstraints,
    size: int,
    fixed: list[BackendView],
    *,
    must_decide: bool,
) -> None:
    fixed_names = {b.name for b in fixed}
    need = rc.width - len(fixed)
    candidates = [b for b in backends if b.name not in fixed_names]
    policy_pool = [b for b in candidates if permitted(b, c)]
    now_pool = [b for b in policy_pool if usable_now(b, rc, size)]
    try:
        result = place(rc, backends, c, object_size=size, already_placed=fixed)
    except PolicyViolation as exc:
        assert str(exc)
        verdict = exists_valid(rc, policy_pool, fixed, need)
        if must_decide:
            assert verdict is not None
        assert verdict is not True, f"a valid placement exists among permitted backends: {exc}"
        event("PolicyViolation")
        return
    except InsufficientCapacity as exc:
        assert str(exc)
        assert exists_valid(rc, now_pool, fixed, need) is not True, f"one exists now: {exc}"
        verdict = exists_valid(rc, policy_pool, fixed, need)
        if must_decide:
            assert verdict is not None
        assert verdict is not False, f"should have been PolicyViolation: {exc}"
        event("InsufficientCapacity")
        return
    event("placed")
    assert isinstance(result, Placement)
    assert result.redundancy_class == rc
    by_name = {b.name: b for b in backends}
    chosen = [by_name[n] for n in result.targets]
    assert len(result.targets) == need
    assert len(set(result.targets)) == len(result.targets)
    assert not set(result.targets) & fixed_names
    for b in chosen:
        assert b.state == "active" and b.healthy
        assert permitted(b, c), b
        assert usable_now(b, rc, size), b
    assert valid_set(rc, [*fixed, *chosen])
    assert result.write_quorum == (need if fixed else rc.write_quorum)
    assert result.reasons


# --- strategies ---------------------------------------------------------------------------


@st.composite
def backend_sets(draw: st.DrawFn, max_size: int = 20) -> list[BackendView]:
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        capacity = draw(st.one_of(st.none(), st.integers(0, 1000)))
        out.append(
            BackendView(
                name=f"b{i:02d}",
                region=draw(st.sampled_from(REGIONS)),
                country=draw(st.sampled_from(COUNTRIES)),
                jurisdiction=draw(st.sampled_from(JURISDICTIONS)),
                provider=draw(st.sampled_from(PROVIDERS)),
                state=draw(st.sampled_from(["active"] * 6 + ["draining", "removed"])),
                healthy=draw(st.sampled_from([True] * 4 + [False])),
                rtt_ms=draw(
                    st.one_of(
                        st.sampled_from([0.0, 1.0, 4.9, 5.0, 30.0, math.inf]), st.floats(0, 300)
                    )
                ),
                throughput_mbps=draw(st.sampled_from([0.0, 50.0, 100.0, 950.0])),
                capacity_bytes=capacity,
                used_bytes=draw(st.integers(0, 1000)),
            )
        )
    return out


@st.composite
def classes(draw: st.DrawFn) -> RedundancyClass:
    if draw(st.booleans()):
        copies = draw(st.integers(1, 5))
        kind = {
            "kind": "replication",
            "copies": copies,
            "write_quorum": draw(st.integers(1, copies)),
        }
        width = copies
    else:
        k, m = draw(st.integers(1, 4)), draw(st.integers(0, 2))
        kind = {"kind": "erasure", "k": k, "m": m, "write_quorum": draw(st.integers(k, k + m))}
        width = k + m
    rare = st.sampled_from([False, False, True])
    return RedundancyClass(
        name="Random",
        min_regions=draw(st.sampled_from([1, 1, 2, 2, 3, 4]).map(lambda r: min(r, width))),
        same_country=draw(rare),
        distinct_providers=draw(rare),
        **kind,
    )


@st.composite
def constraints_for(draw: st.DrawFn, backends: list[BackendView]) -> PlacementConstraints:
    names = [b.name for b in backends]
    maybe_names = st.lists(st.sampled_from(names), unique=True) if names else st.just([])
    if draw(st.booleans()):
        return PlacementConstraints()
    return PlacementConstraints(
        region_lock=frozenset(
            draw(
                st.one_of(
                    st.just([]),
                    st.lists(st.sampled_from(["eu", "us", "EU", "ap", "jp"]), max_size=2),
                )
            )
        ),
        jurisdiction_allow=frozenset(
            draw(st.one_of(st.just([]), st.lists(st.sampled_from(["EU", "US", "jp"]), max_size=2)))
        ),
        jurisdiction_deny=frozenset(
            draw(st.one_of(st.just([]), st.lists(st.sampled_from(["EU", "us", "JP"]), max_size=1)))
        ),
        allowed_backends=draw(st.one_of(st.none(), st.none(), maybe_names.map(frozenset))),
        exclude=frozenset(draw(st.one_of(st.just([]), maybe_names))),
        tenant_region_lock=frozenset(
            draw(
                st.one_of(
                    st.just([]),
                    st.just([]),
                    st.lists(st.sampled_from(["eu", "eu-west", "us", "EU"]), max_size=2),
                )
            )
        ),
    )


@st.composite
def scenarios(
    draw: st.DrawFn, max_size: int = 20
) -> tuple[RedundancyClass, list[BackendView], PlacementConstraints, int]:
    backends = draw(backend_sets(max_size))
    return (
        draw(classes()),
        backends,
        draw(constraints_for(backends)),
        draw(st.sampled_from([0, 0, 1, 100, 400, 2000])),
    )


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_size=20))
def test_place_is_sound_and_refusals_are_justified(scenario) -> None:
    rc, backends, c, size = scenario
    check_against_oracle(rc, backends, c, size, [], must_decide=False)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_size=9))
def test_small_sets_decided_exactly_by_brute_force(scenario) -> None:
    rc, backends, c, size = scenario
    check_against_oracle(rc, backends, c, size, [], must_decide=True)


@settings(max_examples=150, deadline=None)
@given(scenarios(max_size=9), st.data())
def test_nearly_all_healthy_often_places(scenario, data) -> None:
    """Same check with healthy, active, unconstrained backends, so most cases place."""
    rc, backends, _, size = scenario
    backends = [
        BackendView(
            b.name,
            b.region,
            b.country,
            b.jurisdiction,
            b.provider,
            rtt_ms=b.rtt_ms,
            capacity_bytes=None,
        )
        for b in backends
    ]
    check_against_oracle(rc, backends, PlacementConstraints(), size, [], must_decide=True)


def _outcome(rc, backends, c, size, fixed=()):
    try:
        return place(rc, backends, c, object_size=size, already_placed=fixed)
    except (PolicyViolation, InsufficientCapacity) as exc:
        return (type(exc), str(exc))


@settings(max_examples=120, deadline=None)
@given(scenarios(max_size=20), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_input_order(scenario, rnd) -> None:
    rc, backends, c, size = scenario
    first = _outcome(rc, backends, c, size)
    assert _outcome(rc, backends, c, size) == first
    shuffled = list(backends)
    rnd.shuffle(shuffled)
    assert _outcome(rc, shuffled, c, size) == first


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_size=12), st.data())
def test_repair_completes_the_class_without_breaking_a_rule(scenario, data) -> None:
    rc, backends, c, size = scenario
    assume(backends)
    fixed_names = data.draw(
        st.lists(st.sampled_from([b.name for b in backends]), unique=True, max_size=rc.width - 1)
    )
    fixed = [b for b in backends if b.name in fixed_names]
    check_against_oracle(rc, backends, c, size, fixed, must_decide=False)


@settings(max_examples=100, deadline=None)
@given(scenarios(max_size=10), st.data())
def test_repair_of_a_fresh_placement_after_losses(scenario, data) -> None:
    """Place, lose some pieces, repair: the repaired set is a valid full placement."""
    rc, backends, c, size = scenario
    mostly_healthy = st.sampled_from([True] * 5 + [False])
    backends = [
        BackendView(
            b.name,
            b.region,
            b.country,
            b.jurisdiction,
            b.provider,
            rtt_ms=b.rtt_ms,
            healthy=data.draw(mostly_healthy),
        )
        for b in backends
    ]
    try:
        first = place(rc, backends, c, object_size=size)
    except (PolicyViolation, InsufficientCapacity):
        return
    by_name = {b.name: b for b in backends}
    lost = set(data.draw(st.lists(st.sampled_from(first.targets), unique=True, min_size=1)))
    fixed = [by_name[n] for n in first.targets if n not in lost]
    repair_constraints = PlacementConstraints(
        c.region_lock,
        c.jurisdiction_allow,
        c.jurisdiction_deny,
        c.allowed_backends,
        c.exclude | lost,
    )
    check_against_oracle(rc, backends, repair_constraints, size, fixed, must_decide=False)


# --- examples -----------------------------------------------------------------------------


def B(
    name: str,
    region: str,
    country: str = "DE",
    jurisdiction: str = "EU",
    provider: str = "minio",
    **kw,
) -> BackendView:
    return BackendView(name, region, country, jurisdiction, provider, **kw)


def test_standard_class_spreads_over_two_regions_by_rtt() -> None:
    backends = [
        B("a", "eu-west", rtt_ms=1),
        B("b", "eu-west", rtt_ms=2),
        B("c", "eu-west", rtt_ms=3),
        B("d", "us-east", "US", "US", rtt_ms=80),
    ]
    p = place(STANDARD, backends)
    assert p.targets == ("a", "b", "d")
    assert p.write_quorum == 2
    assert any("pass over c" in line for line in p.reasons)


def test_unhealthy_other_region_is_insufficient_capacity_not_a_weaker_class() -> None:
    backends = [
        B("a", "eu-west"),
        B("b", "eu-west"),
        B("c", "eu-west"),
        B("d", "us-east", "US", "US", healthy=False),
    ]
    with pytest.raises(InsufficientCapacity, match=r"health: min_regions.*d \(unhealthy\)"):
        place(STANDARD, backends)


def test_draining_other_region_is_a_policy_violation() -> None:
    backends = [
        B("a", "eu-west"),
        B("b", "eu-west"),
        B("c", "eu-west"),
        B("d", "us-east", "US", "US", state="draining"),
    ]
    with pytest.raises(PolicyViolation, match="state: min_regions"):
        place(STANDARD, backends)


def test_region_lock_message_names_the_lock() -> None:
    backends = [B("a", "eu-west"), B("b", "us-east", "US", "US"), B("c", "us-west", "US", "US")]
    with pytest.raises(
        PolicyViolation,
        match="region lock eu: only 1 permitted backend, class StandardClass needs 3",
    ):
        place(STANDARD, backends, PlacementConstraints(region_lock=frozenset({"eu"})))


def test_region_lock_matches_prefix_or_jurisdiction_case_insensitively() -> None:
    backends = [
        B("a", "EU-west"),
        B("b", "frankfurt", "DE", "eu"),
        B("c", "us-east", "US", "US"),
        B("d", "europe-north", "FI", "EU"),
    ]
    p = place(
        REGIONAL.__class__("Two", "replication", copies=3),
        backends,
        PlacementConstraints(region_lock=frozenset({"Eu"})),
    )
    assert set(p.targets) == {"a", "b", "d"}


def test_full_backend_is_insufficient_capacity() -> None:
    backends = [B("a", "de-1", capacity_bytes=100, used_bytes=50), B("b", "de-1")]
    place(REGIONAL, backends, object_size=50)
    with pytest.raises(InsufficientCapacity, match="capacity: .*a \\(no room"):
        place(REGIONAL, backends, object_size=51)


def test_erasure_room_is_checked_per_shard() -> None:
    """A shard is ceil(size / k) bytes: k=2 for the built-in ColdArchiveClass."""
    backends = [B(f"n{i}", f"r{i % 3}", capacity_bytes=100) for i in range(6)]
    assert len(place(COLD, backends, object_size=200).targets) == 6
    with pytest.raises(InsufficientCapacity):
        place(COLD, backends, object_size=201)
    four_two = RedundancyClass("Archive4p2", "erasure", k=4, m=2)
    assert len(place(four_two, backends, object_size=400).targets) == 6
    with pytest.raises(InsufficientCapacity):
        place(four_two, backends, object_size=401)


def test_greedy_first_choice_would_dead_end() -> None:
    """The fastest backend must be skipped: its provider is the only one in region r2."""
    rc = RedundancyClass("Spread", "replication", copies=3, min_regions=3, distinct_providers=True)
    backends = [
        B("x1", "r1", provider="pA", rtt_ms=0),
        B("x2", "r2", provider="pA", rtt_ms=30),
        B("x3", "r3", provider="pB", rtt_ms=30),
        B("y", "r1", provider="pC", rtt_ms=60),
    ]
    p = place(rc, backends)
    assert set(p.targets) == {"x2", "x3", "y"}
    assert any(line.startswith("pass over x1") for line in p.reasons)


def test_same_country_picks_a_country_that_works() -> None:
    backends = [
        B("fr1", "eu-west", "FR", rtt_ms=0),
        B("de1", "eu-central", "DE", rtt_ms=10),
        B("de2", "eu-central", "DE", rtt_ms=10),
    ]
    assert set(place(REGIONAL, backends).targets) == {"de1", "de2"}


def test_repair_keeps_the_region_rule() -> None:
    survivors = [B("a", "eu-west"), B("b", "eu-west")]
    backends = [*survivors, B("c", "eu-west", rtt_ms=0), B("d", "us-east", "US", "US", rtt_ms=90)]
    p = place(STANDARD, backends, already_placed=survivors)
    assert p.targets == ("d",)
    assert p.write_quorum == 1


def test_repair_never_fixes_what_cannot_be_fixed_by_adding() -> None:
    survivors = [B("a", "eu-west", "DE"), B("b", "eu-west", "FR")]
    with pytest.raises(PolicyViolation, match="same country"):
        place(
            REGIONAL.__class__("R3", "replication", copies=3, same_country=True),
            [B("c", "eu-west", "DE")],
            already_placed=survivors,
        )
    full = [B("a", "eu-west"), B("b", "eu-west"), B("c", "eu-west")]
    with pytest.raises(PolicyViolation, match="rebalancing"):
        place(STANDARD, [], already_placed=full)
    ok = [B("a", "eu-west"), B("b", "eu-west"), B("c", "us-east")]
    assert place(STANDARD, [], already_placed=ok).targets == ()


def test_invalid_inputs() -> None:
    with pytest.raises(InvalidInput, match="duplicate"):
        place(STANDARD, [B("a", "r"), B("a", "s")])
    with pytest.raises(InvalidInput, match="object_size"):
        place(STANDARD, [], object_size=-1)
    with pytest.raises(InvalidInput, match="state"):
        B("a", "r", state="gone")
    with pytest.raises(InvalidInput, match="rtt_ms"):
        B("a", "r", rtt_ms=float("nan"))
    assert B("a", "r", rtt_ms=Decimal("2.5")).rtt_ms == 2.5  # NUMERIC columns from asyncpg
    with pytest.raises(InvalidInput, match="throughput_mbps"):
        B("a", "r", throughput_mbps=-1)
    with pytest.raises(InvalidInput, match="region_lock"):
        PlacementConstraints(region_lock="eu")  # type: ignore[arg-type]
    assert PlacementConstraints(exclude={"a"}).exclude == frozenset({"a"})  # type: ignore[arg-type]


def test_explain_reports_the_refusal() -> None:
    lines = explain(STANDARD, [B("a", "eu-west")])
    assert lines[-1].startswith("cannot place: PolicyViolation: registered backends: only 1")
    lines = explain(COLD, [B(f"n{i}", f"r{i}") for i in range(6)])
    assert any(line.startswith("shard 5: ") for line in lines)
    assert lines[-1].startswith("write quorum: 4 of 6; 2 further loss")


def test_fast_for_64_backends() -> None:
    backends = [
        B(
            f"b{i:02d}",
            f"region-{i % 7}",
            ["DE", "FR", "US"][i % 3],
            "EU",
            f"p{i % 5}",
            rtt_ms=float(64 - i),
            healthy=i % 9 != 0,
        )
        for i in range(64)
    ]
    hard = RedundancyClass(
        "Hard", "erasure", k=4, m=1, min_regions=5, same_country=True, distinct_providers=True
    )
    start = time.perf_counter()
    for rc in (STANDARD, REGIONAL, COLD, hard):
        for _ in range(10):
            with contextlib.suppress(PolicyViolation, InsufficientCapacity):
                place(rc, backends)
    assert (time.perf_counter() - start) / 40 < 0.05
