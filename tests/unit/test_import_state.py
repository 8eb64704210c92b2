"""The import state model: run transitions, GREEN / YELLOW / RED from the rows, destination keys,
progress rates and ETA, the progress line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Conflict, InvalidInput
from core.import_state import (
    ACTIVE_RUN_STATES,
    RUN_STATES,
    Color,
    ImportFacts,
    Progress,
    ProgressMeter,
    ProgressSample,
    check_transition,
    destination_key,
    import_status,
    measure_progress,
)
from jobs.import_progress import format_duration, progress_line


def facts(
    state: str = "done",
    complete: bool = True,
    *,
    degraded: int = 0,
    vanished: int = 0,
    last_error: str | None = None,
    first_error: str | None = None,
    **objects: int,
) -> ImportFacts:
    return ImportFacts(
        state=state,
        manifest_complete=complete,
        objects=objects,
        degraded=degraded,
        vanished=vanished,
        last_error=last_error,
        first_error=first_error,
    )


def test_the_happy_path_and_the_ways_back() -> None:
    path = ["pending", "listing", "running", "verifying", "done"]
    for current, new in zip(path, path[1:], strict=False):
        check_transition(current, new)
    for state in ACTIVE_RUN_STATES:
        check_transition(state, "failed")
        check_transition(state, "cancelled")
        check_transition(state, state)  # a resubmitted driver announces its phase again
    check_transition("failed", "pending")  # import resume
    check_transition("cancelled", "pending")
    check_transition("done", "verifying")  # import verify
    check_transition("verifying", "running")  # a verification failure means a re-copy
    check_transition("listing", "running")


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("done", "running"),
        ("done", "failed"),
        ("done", "cancelled"),
        ("done", "pending"),
        ("failed", "running"),
        ("cancelled", "done"),
        ("pending", "done"),
        ("listing", "verifying"),
        ("running", "listing"),
    ],
)
def test_forbidden_transitions_are_conflicts(current: str, new: str) -> None:
    with pytest.raises(Conflict, match=f"{current!r} cannot become {new!r}"):
        check_transition(current, new)


def test_unknown_states_are_refused() -> None:
    with pytest.raises(InvalidInput):
        check_transition("pending", "paused")
    with pytest.raises(InvalidInput):
        import_status(facts(state="paused"))


def test_green_only_when_done_complete_verified_and_every_replica_ok() -> None:
    green = import_status(facts(verified=990, skipped=10))
    assert green.color is Color.GREEN and "1000" in green.reason
    assert import_status(facts()).color is Color.GREEN  # an empty source imports to GREEN
    assert import_status(facts(verified=5, degraded=1)).color is Color.YELLOW
    assert "replicas" in import_status(facts(verified=5, degraded=2)).reason
    assert import_status(facts(complete=False, verified=5)).color is Color.YELLOW
    not_verified = import_status(facts(verified=5, copied=1))
    assert not_verified.color is Color.YELLOW and "1 objects not verified" in not_verified.reason
    for state in ACTIVE_RUN_STATES:
        assert import_status(facts(state=state, verified=5)).color is Color.YELLOW


def test_red_on_errors_naming_the_reason() -> None:
    failed_run = import_status(facts(state="failed", last_error="source unreachable: refused"))
    assert failed_run.color is Color.RED and "source unreachable" in failed_run.reason
    assert import_status(facts(state="failed")).reason == "the import failed"
    rule = "PolicyViolation: region lock ['eu'] leaves no compliant backend"
    one_failed = import_status(facts(state="running", verified=8, failed=2, first_error=rule))
    assert one_failed.color is Color.RED
    assert one_failed.reason == f"2 of 10 objects failed: {rule}"
    vanished = import_status(facts(verified=3, vanished=1))
    assert vanished.color is Color.RED and "no longer exist" in vanished.reason
    # errors outrank degradation and cancellation
    assert import_status(facts(state="cancelled", failed=1, degraded=3)).color is Color.RED


def test_red_when_the_last_verify_found_problems_naming_one() -> None:
    found = "a/1: part 0 on b1 is corrupt (repair queued)"
    base = facts(verified=9, skipped=1)
    assert import_status(base).color is Color.GREEN
    checked = ImportFacts(**{**base.__dict__, "verify_problems": 2, "first_verify_problem": found})
    status = import_status(checked)
    assert status.color is Color.RED
    assert status.reason == f"verify found problems with 2 of 10 objects: {found}"


def test_cancelled_part_way_is_yellow_with_the_count() -> None:
    status = import_status(facts(state="cancelled", verified=4, pending=6))
    assert status.color is Color.YELLOW and status.reason == "cancelled with 4 of 10 objects done"


def test_destination_keys_follow_rclone_paths() -> None:
    assert destination_key("photos/2024/a.jpg", "photos/", "imported/") == "imported/2024/a.jpg"
    assert destination_key("a b+c%.txt", "", "") == "a b+c%.txt"
    assert destination_key("x", "", "pre/") == "pre/x"
    with pytest.raises(InvalidInput, match="not under"):
        destination_key("other/a", "photos/", "")
    with pytest.raises(InvalidInput, match="empty or too long"):
        destination_key("photos/", "photos/", "")
    with pytest.raises(InvalidInput, match="too long"):
        destination_key("k" * 1000, "", "p" * 25)


def samples(*points: tuple[float, int, int]) -> list[ProgressSample]:
    return [ProgressSample(t, o, b) for t, o, b in points]


def test_rates_and_eta_over_the_window() -> None:
    got = measure_progress(
        samples((0, 0, 0), (10, 100, 1000), (20, 200, 2000)),
        objects_total=1000,
        bytes_total=4000,
    )
    assert got.objects_per_s == 10 and got.bytes_per_s == 100
    # objects need 80 s more, bytes 20 s: the later one is the estimate
    assert got.eta_s == pytest.approx(80)
    windowed = measure_progress(
        samples((0, 0, 0), (100, 100, 100), (110, 200, 200)),
        objects_total=1000,
        bytes_total=1000,
        window_s=10,
    )
    assert windowed.objects_per_s == 10 and windowed.eta_s == pytest.approx(80)


def test_eta_unknown_without_progress_and_zero_when_finished() -> None:
    assert measure_progress([], objects_total=1, bytes_total=1) == Progress(0, 0, None)
    one = samples((5, 1, 1))
    assert measure_progress(one, objects_total=2, bytes_total=2).eta_s is None
    stalled = samples((0, 5, 0), (10, 10, 0))
    assert measure_progress(stalled, objects_total=20, bytes_total=100).eta_s is None
    # empty objects only: no bytes left, so the object rate alone decides
    empties = measure_progress(stalled, objects_total=20, bytes_total=0)
    assert empties.eta_s == pytest.approx(20)
    done = samples((0, 5, 50), (10, 10, 100))
    assert measure_progress(done, objects_total=10, bytes_total=100).eta_s == 0
    backwards = samples((0, 10, 100), (10, 5, 50))
    assert measure_progress(backwards, objects_total=10, bytes_total=100).objects_per_s == 0
    same_time = samples((3, 1, 1), (3, 2, 2))
    assert measure_progress(same_time, objects_total=9, bytes_total=9) == Progress(0, 0, None)


@given(
    st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 100), st.integers(0, 10**9)),
        min_size=2,
        max_size=30,
    ),
    st.integers(0, 200),
    st.integers(0, 2 * 10**9),
)
def test_rates_and_eta_are_never_negative(
    steps: list[tuple[float, int, int]], objects_total: int, bytes_total: int
) -> None:
    meter = ProgressMeter(window_s=30, keep=10)
    at, done_o, done_b = 0.0, 0, 0
    for dt, o, b in steps:
        at, done_o, done_b = at + dt, done_o + o, done_b + b
        meter.add(ProgressSample(at, done_o, done_b))
    got = meter.progress(objects_total=objects_total, bytes_total=bytes_total)
    assert got.objects_per_s >= 0 and got.bytes_per_s >= 0
    assert got.eta_s is None or got.eta_s >= 0


def test_meter_keeps_time_order() -> None:
    meter = ProgressMeter()
    meter.extend(samples((1, 0, 0), (2, 1, 1)))
    with pytest.raises(InvalidInput, match="time order"):
        meter.add(ProgressSample(1.5, 2, 2))


def test_progress_line() -> None:
    line = progress_line(
        objects_done=500,
        objects_total=1000,
        bytes_done=512 * 1024**2,
        bytes_total=1024**3,
        progress=Progress(12.5, 3 * 1024**2, 3725),
        width=10,
    )
    assert line == (
        "[#####.....]  50% 500/1000 objects 512.0 MiB/1.0 GiB 12.5 obj/s 3.0 MiB/s ETA 1h02m"
    )
    empty = progress_line(
        objects_done=3, objects_total=3, bytes_done=0, bytes_total=0, progress=Progress(0, 0, 0)
    )
    assert empty.startswith("[" + "#" * 20 + "] 100% 3/3 objects 0 B/0 B") and "ETA 0s" in empty
    assert [format_duration(s) for s in (0, 42.4, 187, 3725)] == ["0s", "42s", "3m07s", "1h02m"]
    assert "ETA ?" in progress_line(
        objects_done=0, objects_total=0, bytes_done=0, bytes_total=5, progress=Progress(0, 0, None)
    )


def test_every_state_has_a_colour() -> None:
    for state in RUN_STATES:
        assert import_status(facts(state=state, verified=1)).color in set(Color)
