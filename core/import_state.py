"""The state model of a bucket import: run and object states, GREEN / YELLOW / RED, progress.

An import run moves ``pending -> listing -> running -> verifying -> done`` (transfers start
while the listing is still going on: ``listing`` means the manifest is incomplete, ``running``
that it is complete and copies remain, ``verifying`` that every object was copied and the last
checks run). Any active state may go to ``failed`` or ``cancelled``; ``import resume`` takes
those back to ``pending`` and ``import verify`` takes ``done`` back to ``verifying``. Entering
the state a run is already in is allowed (a resubmitted driver announces its phase again).

Each object of a run is ``pending`` (listed, not yet stored), ``copied`` (stored, not yet
checked against the source), ``verified``, ``failed`` (given up, with its reason) or
``skipped`` (identical -- key, ETag, size -- to an object a previous run of the same source and
destination verified, and still stored). Only ``verified`` and ``skipped`` count as done.

The colour, from what the rows say (``ImportFacts``), first rule that matches:

- **RED**: the run failed (source unreachable, bad credentials, ...), or some object failed
  (the reason of one is named: e.g. the region-lock rule that no backend satisfies), or the
  last ``import verify`` found a problem with some object (its source changed or vanished, a
  stored replica or shard no longer matches its checksum: one is named), or some object the
  import stored no longer exists at the destination.
- **GREEN**: the run is ``done``, its manifest complete, every object verified or skipped, and
  every replica or shard of every stored version ``ok``.
- **YELLOW**: anything else -- listing, copying, verifying, cancelled part-way, or done with
  replicas still ``pending``/``corrupt``/``missing`` (degraded; the healers are on it).

Rates and the ETA come from samples of the done counters (``ProgressMeter``). Everything here
is pure: no clock is read (callers pass times), no I/O.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.errors import Conflict, InvalidInput

__all__ = [
    "ACTIVE_RUN_STATES",
    "DONE_OBJECT_STATES",
    "FINAL_RUN_STATES",
    "MAX_KEY_BYTES",
    "OBJECT_STATES",
    "RUN_STATES",
    "Color",
    "ImportFacts",
    "ImportStatus",
    "Progress",
    "ProgressMeter",
    "ProgressSample",
    "check_transition",
    "destination_key",
    "import_status",
    "may_enter",
    "measure_progress",
]

RUN_STATES = ("pending", "listing", "running", "verifying", "done", "failed", "cancelled")
ACTIVE_RUN_STATES = ("pending", "listing", "running", "verifying")
FINAL_RUN_STATES = ("done", "failed", "cancelled")
OBJECT_STATES = ("pending", "copied", "verified", "failed", "skipped")
DONE_OBJECT_STATES = ("verified", "skipped")
#: S3's limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024

_ENTERED_FROM: dict[str, frozenset[str]] = {
    "pending": frozenset({"pending", "failed", "cancelled"}),
    "listing": frozenset({"pending", "listing"}),
    "running": frozenset({"pending", "listing", "running", "verifying"}),
    "verifying": frozenset({"pending", "running", "verifying", "done"}),
    "done": frozenset({"verifying", "done"}),
    "failed": frozenset(ACTIVE_RUN_STATES) | {"failed"},
    "cancelled": frozenset(ACTIVE_RUN_STATES) | {"cancelled"},
}


def may_enter(new: str) -> frozenset[str]:
    """The states from which a run may enter ``new``."""
    try:
        return _ENTERED_FROM[new]
    except KeyError:
        raise InvalidInput(f"unknown import state {new!r}") from None


def check_transition(current: str, new: str) -> None:
    """Conflict unless a run in ``current`` may enter ``new``."""
    if current not in may_enter(new):
        raise Conflict(f"an import in state {current!r} cannot become {new!r}")


def destination_key(source_key: str, source_prefix: str, dest_prefix: str) -> str:
    """Where a source object lands: its key relative to the source prefix, under the
    destination prefix (as ``rclone copy src:b/p dst:b/q`` maps paths)."""
    if not source_key.startswith(source_prefix):
        raise InvalidInput(f"key {source_key!r} is not under the source prefix")
    key = dest_prefix + source_key[len(source_prefix) :]
    if not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(f"destination key for {source_key!r} is empty or too long")
    return key


class Color(enum.StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


@dataclass(frozen=True)
class ImportFacts:
    """What the rows of one run say. ``objects`` counts objects per state (missing states are
    zero); ``degraded`` counts done objects with a replica or shard not ``ok``; ``vanished``
    done objects whose stored version no longer exists; ``first_error`` is one failed object's
    reason."""

    state: str
    manifest_complete: bool
    objects: Mapping[str, int]
    degraded: int = 0
    vanished: int = 0
    last_error: str | None = None
    first_error: str | None = None
    #: Objects the last ``import verify`` found a problem with, and one of them (key: problem).
    verify_problems: int = 0
    first_verify_problem: str | None = None

    def count(self, *states: str) -> int:
        return sum(self.objects.get(s, 0) for s in states)

    @property
    def total(self) -> int:
        return self.count(*OBJECT_STATES)


@dataclass(frozen=True)
class ImportStatus:
    color: Color
    reason: str


def import_status(facts: ImportFacts) -> ImportStatus:
    """The colour of a run and why (module docstring: the rules, first match wins)."""
    if facts.state not in RUN_STATES:
        raise InvalidInput(f"unknown import state {facts.state!r}")
    failed, done, total = facts.count("failed"), facts.count(*DONE_OBJECT_STATES), facts.total
    if facts.state == "failed":
        return ImportStatus(Color.RED, facts.last_error or "the import failed")
    if failed:
        first = f": {facts.first_error}" if facts.first_error else ""
        return ImportStatus(Color.RED, f"{failed} of {total} objects failed{first}")
    if facts.verify_problems:
        first = f": {facts.first_verify_problem}" if facts.first_verify_problem else ""
        return ImportStatus(
            Color.RED,
            f"verify found problems with {facts.verify_problems} of {total} objects{first}",
        )
    if facts.vanished:
        return ImportStatus(
            Color.RED, f"{facts.vanished} imported objects no longer exist at the destination"
        )
    unfinished = total - done
    if facts.state == "done" and facts.manifest_complete and not unfinished and not facts.degraded:
        return ImportStatus(Color.GREEN, f"all {total} objects stored and verified")
    if facts.state == "cancelled":
        return ImportStatus(Color.YELLOW, f"cancelled with {done} of {total} objects done")
    if facts.degraded:
        return ImportStatus(
            Color.YELLOW, f"{facts.degraded} objects have replicas or shards not yet ok"
        )
    if not facts.manifest_complete:
        return ImportStatus(Color.YELLOW, f"listing the source: {done} of {total} listed done")
    if facts.state == "done":  # done but rows disagree: say so rather than claim GREEN
        return ImportStatus(Color.YELLOW, f"{unfinished} objects not verified")
    return ImportStatus(Color.YELLOW, f"{facts.state}: {done} of {total} objects done")


# -- progress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressSample:
    """The done counters at ``at_s`` seconds (any monotonic clock)."""

    at_s: float
    objects_done: int
    bytes_done: int


@dataclass(frozen=True)
class Progress:
    objects_per_s: float
    bytes_per_s: float
    #: Seconds until both counters reach their totals at the current rates; None if unknown
    #: (fewer than two samples, or no progress in a dimension with work left).
    eta_s: float | None


def measure_progress(
    samples: Sequence[ProgressSample],
    *,
    objects_total: int,
    bytes_total: int,
    window_s: float = 60.0,
) -> Progress:
    """Rates over the samples of the last ``window_s`` seconds (oldest to newest in that
    window), and the ETA as the later of the two dimensions: the object count (per-object
    overhead) and the bytes (bandwidth) must both finish. Counters that went backwards (a
    requeue) count as no progress, never as negative speed."""
    if len(samples) < 2:
        return Progress(0.0, 0.0, None)
    newest = samples[-1]
    oldest = next(s for s in samples if s.at_s >= newest.at_s - window_s)
    elapsed = newest.at_s - oldest.at_s
    if elapsed <= 0:
        return Progress(0.0, 0.0, None)
    objects_rate = max(0, newest.objects_done - oldest.objects_done) / elapsed
    bytes_rate = max(0, newest.bytes_done - oldest.bytes_done) / elapsed
    eta: float | None = 0.0
    for remaining, rate in (
        (objects_total - newest.objects_done, objects_rate),
        (bytes_total - newest.bytes_done, bytes_rate),
    ):
        if remaining <= 0:
            continue
        if rate <= 0:
            eta = None
            break
        eta = max(eta or 0.0, remaining / rate)
    return Progress(objects_rate, bytes_rate, eta)


class ProgressMeter:
    """The last ``keep`` samples of one run, for ``import status --watch`` and the job's log."""

    def __init__(self, *, window_s: float = 60.0, keep: int = 600) -> None:
        self.window_s = window_s
        self._samples: deque[ProgressSample] = deque(maxlen=keep)

    def add(self, sample: ProgressSample) -> None:
        if self._samples and sample.at_s < self._samples[-1].at_s:
            raise InvalidInput("progress samples must come in time order")
        self._samples.append(sample)

    def extend(self, samples: Iterable[ProgressSample]) -> None:
        for sample in samples:
            self.add(sample)

    def progress(self, *, objects_total: int, bytes_total: int) -> Progress:
        return measure_progress(
            list(self._samples),
            objects_total=objects_total,
            bytes_total=bytes_total,
            window_s=self.window_s,
        )
