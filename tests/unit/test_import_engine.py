"""The pure parts of the import engine: checking streamed bytes against a source's ETag and
checksum, cutting manifest segments into copy batches, the byte budget, which failures are
final, and the import region lock in placement."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from core.errors import InsufficientCapacity, InvalidInput, PolicyViolation
from core.import_source import SourceObjectChanged, SourceUnreachable
from core.placement import BackendView, PlacementConstraints, place
from core.policy import RedundancyClass
from jobs.import_transfer import SourceDigest, VerificationFailed
from jobs.import_workers import ByteBudget, final_reason
from jobs.importer import BATCH_BYTES, BATCH_OBJECTS, batches
from schema.jobs import import_copy_key


def feed(digest: SourceDigest, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        digest.update(data[i : i + step])


def test_single_part_etag_is_the_md5() -> None:
    data = bytes(range(256)) * 1000
    digest = SourceDigest(len(data), hashlib.md5(data).hexdigest())
    feed(digest, data, 4096)
    digest.check()
    bad = SourceDigest(len(data), hashlib.md5(data + b"x").hexdigest())
    feed(bad, data, 4096)
    with pytest.raises(VerificationFailed, match="MD5"):
        bad.check()


def test_multipart_etag_rule_whatever_the_read_windows() -> None:
    part = 5 * 1024
    data = bytes(i % 251 for i in range(3 * part + 17))
    pieces = [data[i : i + part] for i in range(0, len(data), part)]
    etag = (
        hashlib.md5(b"".join(hashlib.md5(p).digest() for p in pieces)).hexdigest()
        + f"-{len(pieces)}"
    )
    for step in (1000, part, 7777, len(data)):
        digest = SourceDigest(len(data), etag, part_size=part)
        feed(digest, data, step)
        digest.check()
    wrong = SourceDigest(len(data), etag, part_size=part + 1024)
    feed(wrong, data, 4096)
    with pytest.raises(VerificationFailed, match="multipart"):
        wrong.check()
    with pytest.raises(InvalidInput):
        SourceDigest(len(data), etag)


def test_size_and_checksum_are_checked_and_odd_etags_are_not() -> None:
    data = b"hello world"
    value = base64.b64encode(hashlib.sha256(data).digest()).decode()
    digest = SourceDigest(len(data), "not-an-md5-etag", checksum=("SHA256", value))
    digest.update(data)
    digest.check()
    short = SourceDigest(len(data) + 1, hashlib.md5(data).hexdigest())
    short.update(data)
    with pytest.raises(VerificationFailed, match="bytes"):
        short.check()
    other = SourceDigest(len(data), "", checksum=("SHA256", value))
    other.update(b"hello w0rld")
    with pytest.raises(VerificationFailed, match="checksum"):
        other.check()
    empty = SourceDigest(0, "d41d8cd98f00b204e9800998ecf8427e")
    empty.check()


def test_batches_are_deterministic_and_bounded() -> None:
    rows = [(f"k{i:04d}", 10) for i in range(200)]
    cut = batches(rows)
    assert cut == batches(rows)
    assert [len(b) for b in cut] == [BATCH_OBJECTS] * 3 + [200 - 3 * BATCH_OBJECTS]
    assert [k for b in cut for k in b] == [k for k, _ in rows]
    big = [("a", BATCH_BYTES), ("b", 1), ("c", BATCH_BYTES // 2), ("d", BATCH_BYTES // 2)]
    assert batches(big) == [["a"], ["b", "c", "d"]]
    assert import_copy_key(7, "a") == import_copy_key(7, "a") != import_copy_key(8, "a")
    assert import_copy_key(7, "x" * 1024).startswith("import_copy:7:")


def test_byte_budget_bounds_what_is_in_flight() -> None:
    async def scenario() -> int:
        budget = ByteBudget(100)
        peak = 0

        async def use(size: int) -> None:
            nonlocal peak
            async with budget.reserve(size):
                peak = max(peak, budget.used)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(use(s) for s in (60, 60, 30, 500, 10)))
        assert budget.used == 0
        return peak

    assert asyncio.run(scenario()) <= 100


def test_final_failures() -> None:
    assert "import region lock" in (
        final_reason(PolicyViolation("no backend satisfies import region lock mars")) or ""
    )
    assert final_reason(SourceObjectChanged("changed")) == "changed"
    assert final_reason(InvalidInput("key too long")) is not None
    assert final_reason(SourceUnreachable("down")) is None
    assert final_reason(InsufficientCapacity("busy")) is None
    assert final_reason(RuntimeError("boom")) is None


def test_import_region_lock_narrows_placement_and_names_itself() -> None:
    views = [
        BackendView("b0", "eu-west", "DE", "EU", "p0"),
        BackendView("b1", "eu-central", "FR", "EU", "p1"),
        BackendView("b2", "us-east", "US", "US", "p2"),
    ]
    rc = RedundancyClass("Two", "replication", copies=2, write_quorum=2)
    placed = place(rc, views, PlacementConstraints(import_region_lock=frozenset({"eu"})))
    assert set(placed.targets) == {"b0", "b1"}
    with pytest.raises(PolicyViolation, match="import region lock mars"):
        place(rc, views, PlacementConstraints(import_region_lock=frozenset({"mars"})))
    assert (
        "import region lock eu"
        in PlacementConstraints(import_region_lock=frozenset({"eu"})).describe()
    )
