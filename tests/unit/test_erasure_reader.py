"""The erasure-coded read path of ``VerifiedReader`` without services: fake backend actors
serve shards (or fail: missing, corrupt, unreachable), and every read either returns exactly
the object's bytes or raises; bad shards are reported, unreachable ones are not; a rebuilt
shard equals the one written."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from actors.verified_reader import VerifiedReader, is_erasure_coded
from core import erasure
from core.errors import BackendNotFound, BackendUnavailable, IntegrityError
from schema.parts import ErasurePart
from schema.records import ObjectVersion, Replica

K, M, PART = 4, 2, 100_000


@dataclass
class FakeActor:
    blobs: dict[str, bytes]
    fail: str | None = None  # "missing" | "unavailable"
    reads: list[str] = field(default_factory=list)

    @property
    def get(self) -> Any:
        return self

    def remote(self, locator: str, request_id: str | None = None) -> Any:
        self.reads.append(locator)

        async def answer() -> np.ndarray:
            await asyncio.sleep(0)
            if self.fail == "missing":
                raise BackendNotFound(locator)
            if self.fail == "unavailable":
                raise BackendUnavailable("down")
            return np.frombuffer(self.blobs[locator], dtype=np.uint8)

        return answer()


@dataclass
class FakeRecord:
    state: str = "active"


@dataclass
class FakeHandle:
    id: int
    actor: FakeActor
    healthy: bool = True
    rtt_ms: float = 1.0
    record: FakeRecord = field(default_factory=FakeRecord)

    @property
    def name(self) -> str:
        return f"b{self.id}"


class FakeRegistry:
    def __init__(self, handles: dict[int, FakeHandle]) -> None:
        self.handles = handles
        self.failed: list[int] = []

    def get(self, backend_id: int) -> FakeHandle | None:
        return self.handles.get(backend_id)

    def mark_failed(self, backend_id: int, error: str) -> None:
        self.failed.append(backend_id)
        self.handles[backend_id].healthy = False


def coded_object(data: bytes) -> tuple[ObjectVersion, list[ErasurePart], FakeRegistry]:
    """``data`` coded 4 + 2 per ``PART`` bytes, shard i of every part on backend i."""
    replicas, layouts = [], []
    handles = {i: FakeHandle(i, FakeActor({}), rtt_ms=1.0 + i) for i in range(K + M)}
    for number, start in enumerate(range(0, max(len(data), 1), PART)):
        chunk = data[start : start + PART]
        shards = erasure.encode(chunk, K, M).shards
        for i, shard in enumerate(shards):
            locator = f"{number:02x}/{i:032x}"
            handles[i].actor.blobs[locator] = shard
            replicas.append(
                Replica(
                    id=len(replicas) + 1,
                    backend_id=i,
                    locator=locator,
                    part_number=number,
                    shard_index=i,
                    size=len(shard),
                    sha256=hashlib.sha256(shard).digest(),
                    status="ok",
                )
            )
        layouts.append(ErasurePart(number, len(chunk), hashlib.sha256(chunk).digest(), K, M))
    version = ObjectVersion(
        id=7,
        tenant_id=1,
        bucket_id=1,
        key="k",
        version_id="v",
        is_latest=True,
        is_delete_marker=False,
        size=len(data),
        etag="e",
        sha256=None,
        content_type=None,
        user_metadata={},
        redundancy_class="ColdArchiveClass",
        part_size=PART,
        part_count=len(layouts),
        encrypted=False,
        wrapped_key=None,
        key_id=None,
        key_version=None,
        wrap_alg=None,
        content_id=None,
        created_at=datetime.now(UTC),
        replicas=tuple(replicas),
    )
    return version, layouts, FakeRegistry(handles)


def reader(
    version: ObjectVersion,
    layouts: list[ErasurePart],
    registry: FakeRegistry,
    bad: list[tuple[int, str]],
) -> VerifiedReader:
    async def report(v: ObjectVersion, replica: Replica, status: str) -> None:
        bad.append((replica.shard_index, status))

    async def layout(v: ObjectVersion) -> list[ErasurePart]:
        return layouts

    return VerifiedReader(registry, report, load_layout=layout)  # type: ignore[arg-type]


async def read_all(r: VerifiedReader, version: ObjectVersion) -> bytes:
    return b"".join([chunk async for chunk in r.stream(version, 0, version.size - 1)])


DATA = os.urandom(3 * PART + 777)


def test_healthy_read_uses_the_data_shards_only() -> None:
    version, layouts, registry = coded_object(DATA)
    assert is_erasure_coded(version)
    bad: list[tuple[int, str]] = []
    assert asyncio.run(read_all(reader(version, layouts, registry, bad), version)) == DATA
    assert bad == [] and not registry.handles[4].actor.reads and not registry.handles[5].actor.reads


@pytest.mark.parametrize(
    "faults",
    [
        {0: "unavailable", 2: "unavailable"},
        {1: "missing", 3: "corrupt"},
        {0: "corrupt", 5: "unavailable"},
        {4: "missing", 5: "corrupt"},
    ],
)
def test_up_to_m_bad_shards_are_read_around(faults: dict[int, str]) -> None:
    version, layouts, registry = coded_object(DATA)
    for index, fault in faults.items():
        actor = registry.handles[index].actor
        if fault == "corrupt":
            actor.blobs = {
                loc: bytes([blob[0] ^ 1]) + blob[1:] for loc, blob in actor.blobs.items()
            }
        else:
            actor.fail = fault
    bad: list[tuple[int, str]] = []
    r = reader(version, layouts, registry, bad)
    assert asyncio.run(read_all(r, version)) == DATA
    reported = {index for index, _ in bad}
    # Bad shards are reported (once per part read) only if they were tried: with data shards
    # preferred, a fault on a parity shard may never be touched.
    expected = {i for i, f in faults.items() if f != "unavailable"}
    assert reported <= expected and ({i for i in expected if i < K} <= reported)
    assert all(status == faults[i] for i, status in bad)
    down = {i for i, f in faults.items() if f == "unavailable"}
    assert {i for i in down if i < K} <= set(registry.failed) <= down  # health only


@pytest.mark.parametrize(
    ("fault", "error"), [("unavailable", BackendUnavailable), ("missing", IntegrityError)]
)
def test_more_than_m_bad_shards_fail_cleanly(fault: str, error: type[Exception]) -> None:
    version, layouts, registry = coded_object(DATA)
    for index in (0, 3, 5):
        registry.handles[index].actor.fail = fault
    with pytest.raises(error):
        asyncio.run(read_all(reader(version, layouts, registry, []), version))


def test_rebuild_shards_reproduces_what_was_written() -> None:
    version, layouts, registry = coded_object(DATA)
    registry.handles[1].actor.fail = "unavailable"
    r = reader(version, layouts, registry, [])
    rebuilt = asyncio.run(r.rebuild_shards(version, 2, [1, 5]))
    originals = {rep.shard_index: rep for rep in version.parts(2)}
    for index, shard in rebuilt.items():
        assert hashlib.sha256(shard).digest() == originals[index].sha256
    assert not any(loc.startswith("02/") for loc in registry.handles[5].actor.reads)
    # A shard recorded with another checksum is not handed back as if it were right.
    forged = [
        rep
        if rep.shard_index != 5 or rep.part_number != 2
        else Replica(**{**rep.__dict__, "sha256": b"\0" * 32})
        for rep in version.replicas
    ]
    tampered = ObjectVersion(**{**version.__dict__, "replicas": tuple(forged)})
    with pytest.raises(IntegrityError, match="rebuilt shard 5"):
        asyncio.run(r.rebuild_shards(tampered, 2, [5]))
