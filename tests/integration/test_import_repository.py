"""The import tables against real PostgreSQL (a private database; no Ray, no gateway): sources
with sealed credentials, runs and their state machine, manifest segments with their objects in
one transaction, counters that always equal the rows (also under concurrent movers), the
GREEN / YELLOW / RED status, copy-only-what-changed on a re-run, and the deletion manifest."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from core.credential_seal import SealOpenFailed, seal
from core.errors import Conflict, InvalidInput, NotFound
from core.import_state import Color
from schema.db import Database
from schema.import_records import ImportRun, KeyRef, ManifestEntry
from schema.imports import ImportRepository
from schema.tenants import TenantRepository
from tests.support.database import private_database
from tests.support.import_rows import destination, stored_version

pytestmark = pytest.mark.integration

R = ImportRepository()
KEYS = [KeyRef("tenant-key", 1)]
SEALED = seal({"access_key": "AK", "secret_key": "SK-never-stored-plain"}, "a long passphrase")


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[Database]:
    async with private_database("bp_imports") as database:
        yield database


async def new_tenant(db: Database) -> int:
    async with db.transaction() as conn:
        tenant = await TenantRepository().create(conn, f"t-{secrets.token_hex(4)}")
    return tenant.id


async def new_source(db: Database, tenant_id: int, **kw: str) -> int:
    async with db.transaction() as conn:
        source = await R.create_source(
            conn,
            tenant_id,
            kw.get("name", f"src-{secrets.token_hex(3)}"),
            endpoint="http://127.0.0.1:9",
            bucket="legacy",
            sealed=SEALED,
        )
    return source.id


async def new_run(db: Database, tenant_id: int, source_id: int, prefix: str = "") -> ImportRun:
    async with db.transaction() as conn:
        return await R.create_run(
            conn, tenant_id, source_id, "dest", recipients=KEYS, dest_prefix=prefix
        )


async def listing(db: Database, run: ImportRun) -> None:
    async with db.transaction() as conn:
        await R.set_state(conn, run.id, "listing")


def entries(*keys: str, size: int = 10, etag: str = "e") -> list[ManifestEntry]:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    return [ManifestEntry(k, size, f"{etag}-{k}", at, None) for k in keys]


async def add(db: Database, run_id: int, seq: int, batch: list[ManifestEntry]) -> tuple[int, int]:
    async with db.transaction() as conn:
        return await R.add_segment(conn, run_id, seq, b"PAR1" + bytes(seq), batch)


async def counters(db: Database, run_id: int) -> tuple[int, int, int, int, int]:
    async with db.connection() as conn:
        run = await R.get_run(conn, run_id)
    return run.objects_total, run.objects_done, run.bytes_total, run.bytes_done, run.errors


async def assert_counters_match_rows(db: Database, run_id: int) -> None:
    before = await counters(db, run_id)
    async with db.transaction() as conn:
        await R.recount(conn, run_id)
    assert await counters(db, run_id) == before


async def any_version(db: Database, tenant_id: int) -> int:
    bucket_id, backend_id = await destination(db, tenant_id)
    return await stored_version(db, tenant_id, bucket_id, backend_id, "any")


# -- sources -------------------------------------------------------------------------------


async def test_sources_hold_only_the_sealed_blob_and_stay_within_their_tenant(
    db: Database,
) -> None:
    alice, bob = await new_tenant(db), await new_tenant(db)
    source_id = await new_source(db, alice, name="wasabi-archive")
    async with db.transaction() as conn:
        source = await R.get_source(conn, source_id, tenant_id=alice)
        assert source.sealed == SEALED and source.prefix == "" and source.region == "us-east-1"
        assert (await R.source_by_name(conn, alice, "wasabi-archive")).id == source_id
        with pytest.raises(NotFound):
            await R.get_source(conn, source_id, tenant_id=bob)
        with pytest.raises(NotFound):
            await R.source_by_name(conn, bob, "wasabi-archive")
        assert [s.id for s in await R.list_sources(conn, tenant_id=bob)] == []
        assert source_id in [s.id for s in await R.list_sources(conn)]  # the admin's view
        rows = await conn.fetch("SELECT * FROM import_sources")
        assert "SK-never-stored-plain" not in json.dumps([dict(r) for r in rows], default=str)
    # the same name again is a conflict for the same tenant only
    with pytest.raises(Conflict):
        await new_source(db, alice, name="wasabi-archive")
    await new_source(db, bob, name="wasabi-archive")
    async with db.transaction() as conn:
        with pytest.raises(SealOpenFailed):
            await R.create_source(conn, alice, "x", endpoint="http://h", bucket="b", sealed="{}")
        with pytest.raises(InvalidInput, match="endpoint"):
            await R.create_source(conn, alice, "y", endpoint="ftp://h", bucket="b", sealed=SEALED)
    newer = seal({"access_key": "AK2", "secret_key": "SK2"}, "another passphrase")
    async with db.transaction() as conn:
        await R.replace_sealed(conn, source_id, alice, newer)
        assert (await R.get_source(conn, source_id)).sealed == newer
        with pytest.raises(NotFound):
            await R.replace_sealed(conn, source_id, bob, newer)
        with pytest.raises(SealOpenFailed):
            await R.replace_sealed(conn, source_id, alice, "not a blob")


# -- runs ----------------------------------------------------------------------------------


async def test_runs_follow_the_state_machine(db: Database) -> None:
    alice, bob = await new_tenant(db), await new_tenant(db)
    source_id = await new_source(db, alice)
    async with db.transaction() as conn:
        with pytest.raises(NotFound):
            await R.create_run(conn, bob, source_id, "dest", recipients=KEYS)
        with pytest.raises(InvalidInput, match="recipient"):
            await R.create_run(conn, alice, source_id, "dest", recipients=[])
        run = await R.create_run(
            conn,
            alice,
            source_id,
            "dest",
            recipients=[KeyRef("k1", 1), KeyRef("k2", 3)],
            dest_prefix="imported/",
            redundancy_class="RegionalClass",
            region_lock=["eu"],
        )
    assert run.state == "pending" and run.recipients == (KeyRef("k1", 1), KeyRef("k2", 3))
    assert run.region_lock == ("eu",) and run.redundancy_class == "RegionalClass"
    assert run.started_at is None and run.finished_at is None
    async with db.transaction() as conn:
        with pytest.raises(NotFound):
            await R.set_state(conn, run.id, "listing", tenant_id=bob)
        with pytest.raises(Conflict, match="'pending' cannot become 'done'"):
            await R.set_state(conn, run.id, "done")
    async with db.transaction() as conn:
        listing_run = await R.set_state(conn, run.id, "listing", tenant_id=alice)
        assert listing_run.started_at is not None
        failed = await R.set_state(conn, run.id, "failed", error="source unreachable")
        assert failed.finished_at is not None and failed.last_error == "source unreachable"
        resumed = await R.set_state(conn, run.id, "pending")
        assert resumed.last_error is None and resumed.finished_at is None
        assert resumed.started_at == listing_run.started_at
        await R.set_state(conn, run.id, "cancelled")
        await R.set_submission(conn, run.id, f"bp-import-{run.id}-1")
    async with db.transaction() as conn:
        other = await R.create_run(conn, alice, source_id, "dest", recipients=KEYS)
    async with db.transaction() as conn:
        with pytest.raises(Conflict):
            await R.set_submission(conn, other.id, f"bp-import-{run.id}-1")
    async with db.connection() as conn:
        assert (await R.get_run(conn, run.id)).submission_id == f"bp-import-{run.id}-1"
        with pytest.raises(NotFound):
            await R.get_run(conn, run.id, tenant_id=bob)
        mine = await R.list_runs(conn, tenant_id=alice)
        assert [r.id for r in mine] == [other.id, run.id]
        assert await R.list_runs(conn, tenant_id=bob) == []
        page = await R.list_runs(conn, tenant_id=alice, before_id=other.id, limit=1)
        assert [r.id for r in page] == [run.id]
        assert {run.id, other.id} <= {r.id for r in await R.list_runs(conn)}


# -- the manifest --------------------------------------------------------------------------


async def test_segments_commit_with_their_objects_in_order_while_listing(db: Database) -> None:
    tenant = await new_tenant(db)
    run = await new_run(db, tenant, await new_source(db, tenant))
    with pytest.raises(Conflict, match="not listing"):
        await add(db, run.id, 0, entries("a"))
    await listing(db, run)
    assert await add(db, run.id, 0, entries("a", "b", "c")) == (3, 0)
    with pytest.raises(Conflict, match="expects manifest segment 1"):
        await add(db, run.id, 0, entries("d"))
    with pytest.raises(Conflict, match="expects manifest segment 1"):
        await add(db, run.id, 2, entries("d"))
    with pytest.raises(Conflict, match="start after"):
        await add(db, run.id, 1, entries("c", "d"))
    with pytest.raises(InvalidInput, match="sorted"):
        await add(db, run.id, 1, entries("e", "d"))
    with pytest.raises(InvalidInput, match="at least one"):
        await add(db, run.id, 1, [])
    assert await add(db, run.id, 1, entries("d", "é", size=0)) == (2, 0)
    async with db.connection() as conn:
        assert await R.next_segment(conn, run.id) == (2, "é")
        segments = await R.segments(conn, run.id)
        assert [(s.seq, s.keys, s.bytes, s.first_key, s.last_key) for s in segments] == [
            (0, 3, 30, "a", "c"),
            (1, 2, 0, "d", "é"),
        ]
        assert await R.segment_parquet(conn, run.id, 1) == b"PAR1\x00"
        with pytest.raises(NotFound):
            await R.segment_parquet(conn, run.id, 7)
        objects = await R.objects(conn, run.id)
        assert [(o.key, o.state, o.etag) for o in objects][:2] == [
            ("a", "pending", "e-a"),
            ("b", "pending", "e-b"),
        ]
        assert [o.key for o in await R.pending_objects(conn, run.id, after="b", limit=2)] == [
            "c",
            "d",
        ]
    assert await counters(db, run.id) == (5, 0, 30, 0, 0)
    # a failure after the segment insert rolls the segment back with its rows
    with pytest.raises(asyncpg.CheckViolationError):
        await add(db, run.id, 2, [ManifestEntry("ê", -1, "x")])
    async with db.connection() as conn:
        assert await R.next_segment(conn, run.id) == (2, "é")
    assert await counters(db, run.id) == (5, 0, 30, 0, 0)
    async with db.transaction() as conn:
        await R.complete_manifest(conn, run.id)
        await R.set_state(conn, run.id, "cancelled")
    with pytest.raises(Conflict, match="cancelled, not listing"):
        await add(db, run.id, 2, entries("z"))
    async with db.transaction() as conn:
        assert (await R.get_run(conn, run.id)).manifest_complete
        with pytest.raises(Conflict):
            await R.complete_manifest(conn, run.id)


# -- objects and counters ------------------------------------------------------------------


async def test_object_moves_keep_the_counters_equal_to_the_rows(db: Database) -> None:
    tenant = await new_tenant(db)
    run = await new_run(db, tenant, await new_source(db, tenant))
    await listing(db, run)
    await add(db, run.id, 0, entries("a", "b", "c", "d", size=100))
    pk = await any_version(db, tenant)
    async with db.transaction() as conn:
        assert await R.mark_copied(conn, run.id, [("a", pk), ("b", pk), ("c", pk)]) == 3
        assert await R.mark_copied(conn, run.id, [("a", pk)]) == 0  # a duplicate report
        assert await R.mark_verified(conn, run.id, ["a", "b", "d"]) == 2  # d was never copied
        assert await R.mark_failed(conn, run.id, [("c", "size 99 != 100")], final=False) == 1
        assert await R.mark_failed(conn, run.id, [("d", "PolicyViolation: eu")], final=True) == 1
    assert await counters(db, run.id) == (4, 2, 400, 200, 1)
    await assert_counters_match_rows(db, run.id)
    async with db.connection() as conn:
        by_key = {o.key: o for o in await R.objects(conn, run.id)}
        assert (by_key["c"].state, by_key["c"].attempts, by_key["c"].error) == (
            "pending",
            2,
            "size 99 != 100",
        )
        assert (by_key["d"].state, by_key["d"].attempts) == ("failed", 1)
        assert by_key["a"].error is None and by_key["a"].attempts == 1
        status = await R.status(conn, run.id)
    assert (
        status.color is Color.RED and status.reason == "1 of 4 objects failed: PolicyViolation: eu"
    )
    async with db.transaction() as conn:
        assert await R.requeue_failed(conn, run.id) == 1
        assert await R.mark_failed(conn, run.id, [("x", "no such key")], final=True) == 0
    assert await counters(db, run.id) == (4, 2, 400, 200, 0)
    async with db.connection() as conn:
        assert [o.error for o in await R.objects(conn, run.id, states=["pending"])] == [
            "size 99 != 100",
            "PolicyViolation: eu",
        ]
        assert (await R.status(conn, run.id)).color is Color.YELLOW
    long = "x" * 5000
    async with db.transaction() as conn:
        await R.mark_failed(conn, run.id, [("c", long)], final=True)
        (c,) = [o for o in await R.objects(conn, run.id) if o.key == "c"]
    assert c.error is not None and len(c.error) == 2000 and c.error.endswith("...")


async def test_concurrent_movers_keep_exact_counters(db: Database) -> None:
    tenant = await new_tenant(db)
    run = await new_run(db, tenant, await new_source(db, tenant))
    await listing(db, run)
    keys = [f"k{i:04d}" for i in range(400)]
    await add(db, run.id, 0, entries(*keys, size=3))
    pk = await any_version(db, tenant)

    async def worker(n: int) -> None:
        # overlapping batches: every key reported by two workers, in different orders
        mine = keys[n * 50 : n * 50 + 100]
        for batch in (mine, list(reversed(mine))):
            async with db.transaction() as conn:
                await R.mark_copied(conn, run.id, [(k, pk) for k in batch[:50]])
            async with db.transaction() as conn:
                await R.mark_verified(conn, run.id, batch[:40])
                await R.mark_failed(conn, run.id, [(k, "boom") for k in batch[40:50]], final=True)

    await asyncio.gather(*(worker(n) for n in range(8)))
    await assert_counters_match_rows(db, run.id)
    total, done, _, done_bytes, errors = await counters(db, run.id)
    assert total == 400 and done_bytes == 3 * done and done + errors <= 400


# -- status --------------------------------------------------------------------------------


async def finish(db: Database, run: ImportRun, versions: dict[str, int]) -> None:
    async with db.transaction() as conn:
        await R.mark_copied(conn, run.id, list(versions.items()))
        await R.mark_verified(conn, run.id, list(versions))
        await R.complete_manifest(conn, run.id)
        for state in ("running", "verifying", "done"):
            await R.set_state(conn, run.id, state)


async def test_green_needs_every_object_verified_and_every_replica_ok(db: Database) -> None:
    tenant = await new_tenant(db)
    bucket_id, backend_id = await destination(db, tenant)
    run = await new_run(db, tenant, await new_source(db, tenant))
    await listing(db, run)
    await add(db, run.id, 0, entries("a", "b"))
    async with db.connection() as conn:
        status = await R.status(conn, run.id)
        assert status.color is Color.YELLOW and "listing" in status.reason
    a = await stored_version(db, tenant, bucket_id, backend_id, "a")
    b = await stored_version(db, tenant, bucket_id, backend_id, "b", status="pending")
    await finish(db, run, {"a": a, "b": b})
    async with db.connection() as conn:
        degraded = await R.status(conn, run.id)
        assert degraded.color is Color.YELLOW and "1 objects have replicas" in degraded.reason
        with pytest.raises(Conflict, match="YELLOW"):
            await R.record_deletion_manifest(conn, run.id)
        await conn.execute("UPDATE replicas SET status = 'ok' WHERE version_pk = $1", b)
        assert (await R.status(conn, run.id)).color is Color.GREEN
        with pytest.raises(NotFound):
            await R.status(conn, run.id, tenant_id=await new_tenant(db))
        assert await R.record_deletion_manifest(conn, run.id, tenant_id=tenant) == 2
        assert await R.record_deletion_manifest(conn, run.id) == 2  # idempotent
        marked = await R.deletion_manifest(conn, run.id)
        assert [(m.key, m.size, m.etag, m.version_pk) for m in marked] == [
            ("a", 10, "e-a", a),
            ("b", 10, "e-b", b),
        ]
        assert (await R.get_run(conn, run.id)).source_marked_at is not None
        # an imported object deleted at the destination turns the import RED
        await conn.execute("DELETE FROM object_versions WHERE id = $1", a)
        vanished = await R.status(conn, run.id)
    assert vanished.color is Color.RED and "no longer exist" in vanished.reason


async def test_a_rerun_copies_only_new_or_changed_objects(db: Database) -> None:
    tenant = await new_tenant(db)
    bucket_id, backend_id = await destination(db, tenant)
    source_id = await new_source(db, tenant)
    first = await new_run(db, tenant, source_id)
    await listing(db, first)
    await add(db, first.id, 0, entries("changed", "failed", "gone", "overwritten", "same"))
    versions = {
        k: await stored_version(db, tenant, bucket_id, backend_id, k)
        for k in ("same", "changed", "gone", "overwritten")
    }
    async with db.transaction() as conn:
        await R.mark_failed(conn, first.id, [("failed", "boom")], final=True)
    await finish(db, first, versions)
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM object_versions WHERE id = $1", versions["gone"])
    await stored_version(db, tenant, bucket_id, backend_id, "overwritten")  # a newer version

    second = await new_run(db, tenant, source_id)
    elsewhere = await new_run(db, tenant, source_id, prefix="other/")
    await listing(db, second)
    await listing(db, elsewhere)
    listed = [
        *entries("changed", etag="new"),
        *entries("failed", "gone", "new", "overwritten", "same"),
    ]
    assert await add(db, second.id, 0, listed) == (6, 1)
    assert await add(db, elsewhere.id, 0, listed) == (6, 0)  # another destination
    async with db.connection() as conn:
        states = {o.key: (o.state, o.version_pk) for o in await R.objects(conn, second.id)}
    assert states == {
        "changed": ("pending", None),
        "failed": ("pending", None),
        "gone": ("pending", None),
        "new": ("pending", None),
        "overwritten": ("pending", None),
        "same": ("skipped", versions["same"]),
    }
    assert await counters(db, second.id) == (6, 1, 60, 10, 0)
    await assert_counters_match_rows(db, second.id)
    # a third run skips what the second verified or skipped
    async with db.transaction() as conn:
        new_pk = await stored_version(db, tenant, bucket_id, backend_id, "new")
        await R.mark_copied(conn, second.id, [("new", new_pk)])
        await R.mark_verified(conn, second.id, ["new"])
    third = await new_run(db, tenant, source_id)
    await listing(db, third)
    assert await add(db, third.id, 0, entries("new", "same")) == (2, 2)
