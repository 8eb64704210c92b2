"""Hedged replica reads in ``VerifiedReader.read_part``, without services: a fake registry
serves each backend's bytes, or never answers (a frozen backend), or answers wrong bytes.

The frozen backend's read never completes, so a read that waited for it would never return:
each read runs under a generous ``wait_for`` whose expiry fails the test (a guard, not a
measurement). Nothing here asserts on time."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from actors.read_lanes import ReadLatency
from actors.verified_reader import VerifiedReader
from core.errors import BackendUnavailable
from schema.records import ObjectVersion, Replica

DATA = b"ciphertext bytes of one part" * 100
GUARD_S = 20.0


@dataclass
class FakeRecord:
    state: str = "active"


@dataclass
class FakeHandle:
    id: int
    behaviour: str  # "ok" | "frozen" | "corrupt" | "down"
    healthy: bool = True
    rtt_ms: float = 1.0
    record: FakeRecord = field(default_factory=FakeRecord)
    latency: ReadLatency = field(default_factory=ReadLatency)
    lane_full: bool = False
    read_slow: bool = False

    @property
    def name(self) -> str:
        return f"b{self.id}"


class FakeRegistry:
    def __init__(self, behaviours: list[str]) -> None:
        self.handles = {i: FakeHandle(i, b) for i, b in enumerate(behaviours)}
        self.asked: list[int] = []
        self.overtaken_ids: list[int] = []
        self.failed: list[int] = []
        self.never = asyncio.Event()

    def get(self, backend_id: int) -> FakeHandle | None:
        return self.handles.get(backend_id)

    async def read(self, backend_id: int, locator: str) -> memoryview:
        self.asked.append(backend_id)
        behaviour = self.handles[backend_id].behaviour
        if behaviour == "frozen":
            await self.never.wait()  # never set: the call hangs like a SIGSTOPped server
        if behaviour == "down":
            self.failed.append(backend_id)
            raise BackendUnavailable("down")
        await asyncio.sleep(0)
        data = DATA if behaviour == "ok" else DATA[:-1] + b"!"
        self.handles[backend_id].latency.observe(len(data), 0.001)
        return memoryview(data)

    def overtaken(self, backend_id: int) -> None:
        self.overtaken_ids.append(backend_id)

    def mark_failed(self, backend_id: int, error: str) -> None:
        self.failed.append(backend_id)


def version_on(count: int) -> ObjectVersion:
    replicas = tuple(
        Replica(
            id=i + 1,
            backend_id=i,
            locator=f"00/{i:032x}",
            part_number=0,
            shard_index=-1,
            size=len(DATA),
            sha256=hashlib.sha256(DATA).digest(),
            status="ok",
        )
        for i in range(count)
    )
    return ObjectVersion(
        id=1, tenant_id=1, bucket_id=1, key="k", version_id="v", is_latest=True,
        is_delete_marker=False, size=len(DATA), etag="e", sha256=None, content_type=None,
        user_metadata={}, redundancy_class="StandardClass", part_size=len(DATA), part_count=1,
        encrypted=False, wrapped_key=None, key_id=None, key_version=None, wrap_alg=None,
        content_id=None, created_at=datetime.now(UTC), replicas=replicas,
    )  # fmt: skip


def in_replica_order(reader: VerifiedReader, registry: FakeRegistry) -> None:
    """Candidates in replica order (backend 0 first), not the random order among near
    replicas, so a test can put the frozen backend first."""
    reader.candidates = lambda version, part: [  # type: ignore[method-assign]
        (r, registry.handles[r.backend_id]) for r in version.parts(part)  # type: ignore[misc]
    ]


def read(registry: FakeRegistry, *, hedged: bool = True) -> tuple[bytes, list[tuple[int, str]]]:
    bad: list[tuple[int, str]] = []

    async def report(v: ObjectVersion, replica: Replica, status: str) -> None:
        bad.append((replica.backend_id, status))

    reader = VerifiedReader(registry, report, hedged=hedged)  # type: ignore[arg-type]

    async def run() -> bytes:
        in_replica_order(reader, registry)
        view = await asyncio.wait_for(reader.read_part(version_on(3), 0), GUARD_S)
        return bytes(view)

    return asyncio.run(run()), bad


def test_a_frozen_first_replica_is_overtaken_and_the_next_one_answers() -> None:
    registry = FakeRegistry(["frozen", "ok", "ok"])
    got, bad = read(registry)
    assert got == DATA
    assert registry.asked[:2] == [0, 1]
    assert registry.overtaken_ids == [0]
    assert bad == []


def test_without_hedging_a_frozen_replica_holds_the_read() -> None:
    """The guard shows the test above can fail: the same read without hedging never ends."""
    registry = FakeRegistry(["frozen", "ok", "ok"])
    with pytest.raises(TimeoutError):

        async def run() -> None:
            reader = VerifiedReader(registry, _ignore, hedged=False)  # type: ignore[arg-type]
            in_replica_order(reader, registry)
            await asyncio.wait_for(reader.read_part(version_on(3), 0), 1.0)

        asyncio.run(run())


async def _ignore(v: ObjectVersion, replica: Replica, status: str) -> None:
    return None


def test_a_corrupt_answer_never_wins_the_race() -> None:
    registry = FakeRegistry(["corrupt", "frozen", "ok"])
    got, bad = read(registry)
    assert got == DATA
    assert bad == [(0, "corrupt")]
    assert 2 in registry.asked


def test_every_replica_down_is_unavailable_not_a_hang() -> None:
    registry = FakeRegistry(["down", "down", "down"])
    with pytest.raises(BackendUnavailable):
        read(registry)
    assert sorted(registry.asked) == [0, 1, 2]


def test_a_full_lane_is_asked_last() -> None:
    registry = FakeRegistry(["ok", "ok", "ok"])
    registry.handles[0].lane_full = True
    bad: list[tuple[int, str]] = []

    async def report(v: ObjectVersion, replica: Replica, status: str) -> None:
        bad.append((replica.backend_id, status))

    async def run() -> bytes:
        reader = VerifiedReader(registry, report)  # type: ignore[arg-type]
        in_replica_order(reader, registry)
        return bytes(await asyncio.wait_for(reader.read_part(version_on(3), 0), GUARD_S))

    assert asyncio.run(run()) == DATA
    assert registry.asked == [1]


def test_hedge_delay_is_the_backends_p95_per_size_class() -> None:
    latency = ReadLatency()
    assert latency.hedge_after(4096) == 0.5  # no samples yet: the fallback
    for ms in range(1, 21):
        latency.observe(4096, ms / 1000)
    assert latency.hedge_after(4096) == 0.02  # p95 of 1..20 ms is the 20 ms sample
    assert latency.hedge_after(64 * 1024 * 1024) == 64 * 1024 * 1024 / 10e6  # another class
    assert latency.overtaken() == 1 and latency.overtaken() == 2
    latency.observe(4096, 0.001)
    assert latency.slow_streak == 0


def test_an_overtaken_backend_is_asked_last_by_reads_but_stays_healthy_for_writes() -> None:
    """The read circuit (``BackendRegistry.overtaken``) never lowers health: with one backend
    frozen, a second one merely slow must stay placeable, or writes lose their quorum."""
    from actors.registry import BackendHandle, BackendRegistry
    from schema.records import BackendRecord

    registry = BackendRegistry(None, None, passive_hold_s=60.0)  # type: ignore[arg-type]
    record = BackendRecord(
        id=1, name="b1", kind="s3", endpoint="http://127.0.0.1:9", bucket="b",
        path=None, sealed_credentials=b"x", region="eu", country="DE", jurisdiction="EU",
        provider="p", state="active", healthy=True, rtt_ms=1.0, throughput_mbps=0.0,
        capacity_bytes=None, used_bytes=0,
    )  # fmt: skip
    handle = BackendHandle(record=record, actor=None, healthy=True, rtt_ms=1.0)
    registry._handles[1] = handle
    registry.overtaken(1)
    registry.overtaken(1)
    assert not handle.read_slow
    registry.overtaken(1)
    assert handle.read_slow and handle.healthy and handle.state == "healthy"
    handle.latency.observe(4096, 0.001)  # a late answer ends the streak
    assert handle.latency.slow_streak == 0


def test_a_large_part_is_not_hedged_before_it_could_have_arrived() -> None:
    latency = ReadLatency()
    part = 8 * 1024 * 1024
    for _ in range(20):
        latency.observe(part, 0.01)  # a fast backend: p95 10 ms
    assert latency.hedge_after(part) == part / 20e6  # ~0.42 s, not 10 ms
