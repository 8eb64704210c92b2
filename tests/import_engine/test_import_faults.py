"""Imports under real faults, against a whole federation (moto backends, PostgreSQL, Redis,
Ray) with the import driver ``python -m jobs.importer`` as a process:

- the Ray worker process of an ``ImportWorker`` SIGKILLed while it holds a copy job whose
  objects it partly committed: the run still ends GREEN, one version per key (the destination
  bucket is versioned, so a second write would show), no key missing;
- the machine's PostgreSQL restarted mid-run: the driver and its workers wait it out and the
  run ends GREEN, one version per key, no key missing;
- ``import verify``: a replica corrupted on its moto backend, a source object changed and one
  deleted after GREEN are all found (RED, named per key), the bad replica is marked and
  repaired, and a verification after the repair (source restored) is GREEN again;
- an import's ``--region-lock eu`` binds its objects for life: the placement checker flags a
  replica moved outside the lock (the bucket's rules alone would allow it), and a drained
  backend's replicas are moved only onto an EU backend, waiting for one rather than using the
  US backend the bucket's rules allow.

Each source is 200-odd small objects plus one object uploaded in parts (ETag ``...-3``) whose
ciphertext goes through the multipart data path. Waits are bounded; nothing is timed."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from actors.healing import HealingContext
from core.import_state import Color
from jobs.placement_checker import PlacementChecker
from tests.support.cluster import MOTO_KEY, MOTO_SECRET, Federation, start_cluster
from tests.support.database import PG_RESTART_SKIPPED, restart_postgres
from tests.support.import_runs import (
    IMPORT_OVERRIDES,
    SOURCE_BUCKET,
    R,
    Tenant,
    db_call,
    driver,
    hold_passphrase,
    new_run,
    run_driver,
    source_s3,
    status,
    wait_green,
)
from tests.support.processes import MotoServer

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SMALL = {f"obj/{i:03d}": os.urandom(200 + i * 37) for i in range(200)}
BIG_KEY = "big/12MiB-in-parts.bin"
VERIFY = {f"v/{i:02d}": os.urandom(1000 + i) for i in range(12)}
LOCKED = {f"eu/{i}": os.urandom(500 + i) for i in range(4)}
#: The keys of a whole-bucket import (every prefix but the region-locked test's own).
WHOLE = sorted({*SMALL, BIG_KEY, *VERIFY, *LOCKED})


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    # Ciphertext over 8 MiB goes through the multipart data path (the 12 MiB object does).
    overrides = {**IMPORT_OVERRIDES, "BP_MAX_OBJECT_SIZE": str(8 * MiB)}
    extra, spare = MotoServer(), MotoServer()
    with start_cluster(tmp_path_factory.mktemp("bp-import-faults"), overrides=overrides) as run:
        try:
            extra.start()
            spare.start()
            # A third EU backend: an EU-locked StandardClass object (3 copies, >= 2 regions)
            # can live on b0, b1 and b3. The spare joins as b4 (EU) in the region-lock test.
            run.add_moto_backend("b3", extra, "eu-north", "SE", "EU")
            run.motos = [*run.motos, extra, spare]
            from cluster.bootstrap import start_self_healing

            start_self_healing(run.settings)
            yield run
        finally:
            extra.stop()
            spare.stop()


@pytest.fixture(scope="module")
def source() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        client = source_s3(server)
        client.create_bucket(Bucket=SOURCE_BUCKET)
        for key, body in {**SMALL, **VERIFY, **LOCKED}.items():
            client.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
        client.upload_fileobj(
            io.BytesIO(os.urandom(12 * MiB)),
            SOURCE_BUCKET,
            BIG_KEY,
            Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
        )
        assert client.head_object(Bucket=SOURCE_BUCKET, Key=BIG_KEY)["ETag"].endswith('-3"')
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tenant(fed: Federation) -> Tenant:
    return Tenant(fed)


# -- helpers ----------------------------------------------------------------------------------
def versioned_bucket(tenant: Tenant, name: str) -> None:
    """A destination whose every write is a new version: a duplicate copy would show."""
    tenant.s3.create_bucket(Bucket=name)
    tenant.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def committed(fed: Federation, bucket: str) -> int:
    return int(
        fed.sql(
            "SELECT count(*) AS n FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
            " WHERE b.name = $1",
            bucket,
        )[0]["n"]
    )


def assert_every_key_once(fed: Federation, bucket: str, keys: list[str]) -> None:
    rows = fed.sql(
        "SELECT v.key, count(*) AS n, bool_or(v.is_delete_marker) AS marker FROM object_versions v"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 GROUP BY v.key",
        bucket,
    )
    assert {r["key"] for r in rows} == set(keys), "keys missing or extra"
    assert [r for r in rows if r["n"] != 1 or r["marker"]] == [], "a key has several versions"


def import_run(fed: Federation, tenant: Tenant, source: MotoServer, bucket: str, **kw: Any) -> int:
    run_id = new_run(fed, tenant, source, bucket, **kw)
    hold_passphrase(fed, run_id)
    return run_id


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 600) -> int:
    """The driver's exit code (bounded wait; killed if it does not end)."""
    try:
        return proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def heal_once(fed: Federation, work: Any) -> Any:
    """Run ``work(ctx)`` with a healing context of this process (the test owns Ray)."""

    async def run() -> Any:
        ctx = await HealingContext.connect(fed.settings, use_ray=True, db_pool_size=2)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(run())


def verify(fed: Federation, run_id: int, log: Path) -> Any:
    """What ``import verify`` does (``ImportService.verify``): the done run recounted and set
    ``verifying``, the passphrase held, the driver run; returns the run's status."""

    async def to_verifying(conn: Any) -> None:
        await R.recount(conn, run_id)
        await R.set_state(conn, run_id, "verifying")

    db_call(fed, to_verifying)
    hold_passphrase(fed, run_id)
    assert run_driver(run_id, log, timeout_s=300) == 0, log.read_text()
    assert f"import {run_id} verified:" in log.read_text()
    return status(fed, run_id)


def backend(fed: Federation, name: str) -> Any:
    """A client of moto backend ``name`` (``b<index>``: ``fed.motos[index]``), straight to it."""
    return boto3.client(
        "s3",
        endpoint_url=fed.motos[int(name[1:])].endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name="us-east-1",
    )


def problems(fed: Federation, run_id: int) -> dict[str, str]:
    rows = fed.sql(
        "SELECT key, verify_problem FROM import_objects WHERE run_id = $1"
        " AND verify_problem IS NOT NULL",
        run_id,
    )
    return {r["key"]: r["verify_problem"] for r in rows}


# -- 3. the run's region lock binds its objects for life --------------------------------------
def _holders(fed: Federation, bucket: str) -> dict[str, set[str]]:
    rows = fed.sql(
        "SELECT v.key, b.name FROM replicas r JOIN object_versions v ON v.id = r.version_pk"
        " JOIN buckets k ON k.id = v.bucket_id JOIN backends b ON b.id = r.backend_id"
        " WHERE k.name = $1 AND r.status <> 'deleting'",
        bucket,
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["key"], set()).add(r["name"])
    return out


def test_region_lock_binds_repairs_moves_and_the_placement_checker(
    fed: Federation, tenant: Tenant, source: MotoServer, tmp_path: Path
) -> None:
    tenant.s3.create_bucket(Bucket="eulocked")  # the bucket itself allows every backend
    run_id = import_run(fed, tenant, source, "eulocked", prefix="eu/", region_lock=("eu",))
    assert run_driver(run_id, tmp_path / "driver.log") == 0
    wait_green(fed, run_id)
    assert all(h == {"b0", "b1", "b3"} for h in _holders(fed, "eulocked").values())
    locks = fed.sql(
        "SELECT l.region_lock, l.origin FROM version_region_locks l"
        " JOIN object_versions v ON v.id = l.version_pk JOIN buckets k ON k.id = v.bucket_id"
        " WHERE k.name = 'eulocked'"
    )
    assert locks == [{"region_lock": ["eu"], "origin": f"import:{run_id}"}] * len(LOCKED)

    # A replica put outside the lock (on b2, which the bucket's rules allow) is flagged.
    (moved,) = fed.sql(
        "SELECT r.id, r.version_pk, r.locator FROM replicas r JOIN object_versions v"
        " ON v.id = r.version_pk JOIN backends b ON b.id = r.backend_id"
        " JOIN buckets k ON k.id = v.bucket_id"
        " WHERE k.name = 'eulocked' AND v.key = '0' AND b.name = 'b3'"
    )
    stored = backend(fed, "b3").get_object(Bucket="store-b3", Key=moved["locator"])
    backend(fed, "b2").put_object(  # the same bytes under the same locator, on b2
        Bucket="store-b2", Key=moved["locator"], Body=stored["Body"].read()
    )
    fed.sql(
        "UPDATE replicas SET backend_id = (SELECT id FROM backends WHERE name = 'b2')"
        " WHERE id = $1",
        moved["id"],
    )

    async def mark_and_check(ctx: HealingContext) -> dict[str, Any]:
        async with ctx.store.db.transaction() as conn:
            await ctx.policies.mark_version(conn, moved["version_pk"], "test: check it")
        return await PlacementChecker(ctx).run_once()

    report = heal_once(fed, mark_and_check)
    assert report.get("misplaced", 0) >= 1, report
    flagged = fed.sql(
        "SELECT (payload->>'backend_id')::bigint AS backend_id FROM jobs WHERE kind = 'move'"
        " AND (payload->>'version_pk')::bigint = $1",
        moved["version_pk"],
    )
    assert [j["backend_id"] for j in flagged] == [
        fed.sql("SELECT id FROM backends WHERE name = 'b2'")[0]["id"]
    ]
    fed.wait_for(
        lambda: _holders(fed, "eulocked")["0"] == {"b0", "b1", "b3"},
        timeout_s=120,
        what="the flagged replica moved back inside the lock",
    )

    # b3 drained: the only backend its replicas could move to under the bucket's rules is b2
    # (US); the lock forbids it, so they wait on b3 ...
    fed.sql("UPDATE backends SET state = 'draining' WHERE name = 'b3'")
    try:
        heal_once(fed, lambda ctx: PlacementChecker(ctx).run_once())

        def refused() -> bool:
            jobs = fed.sql(
                "SELECT last_error FROM jobs WHERE kind = 'move' AND last_error IS NOT NULL"
                " AND (payload->>'backend_id')::bigint = (SELECT id FROM backends"
                " WHERE name = 'b3')"
            )
            return len([j for j in jobs if "import region lock eu" in j["last_error"]]) > 0

        fed.wait_for(refused, timeout_s=120, what="a move refused by the import region lock")
        assert all("b2" not in h for h in _holders(fed, "eulocked").values())
        # ... until an EU backend joins: then they move there, never to b2.
        fed.add_moto_backend("b4", fed.motos[4], "eu-south", "IT", "EU")
        heal_once(fed, lambda ctx: PlacementChecker(ctx).run_once())
        fed.wait_for(
            lambda: all(h == {"b0", "b1", "b4"} for h in _holders(fed, "eulocked").values()),
            timeout_s=180,
            what="the locked objects moved off b3 onto the new EU backend",
        )
    finally:
        fed.sql("UPDATE backends SET state = 'active' WHERE name = 'b3'")


# -- 2. import verify re-reads the source and the stored bytes ---------------------------------
def test_verify_finds_a_corrupt_replica_and_a_changed_source_object(
    fed: Federation, tenant: Tenant, source: MotoServer, tmp_path: Path
) -> None:
    tenant.s3.create_bucket(Bucket="verified")
    run_id = import_run(fed, tenant, source, "verified", prefix="v/")
    assert run_driver(run_id, tmp_path / "driver.log") == 0
    wait_green(fed, run_id)
    assert verify(fed, run_id, tmp_path / "verify-1.log").color is Color.GREEN

    # One replica altered on its backend (same length), one source object changed.
    corrupt_key, changed_key = "v/03", "v/07"
    row = fed.sql(
        "SELECT r.id, r.locator, r.size, b.name AS backend FROM replicas r"
        " JOIN object_versions v ON v.id = r.version_pk JOIN buckets k ON k.id = v.bucket_id"
        " JOIN backends b ON b.id = r.backend_id WHERE k.name = 'verified' AND v.key = $1"
        " ORDER BY b.name LIMIT 1",
        corrupt_key.removeprefix("v/"),  # the source prefix is not part of the destination key
    )[0]
    backend(fed, row["backend"]).put_object(
        Bucket=f"store-{row['backend']}", Key=row["locator"], Body=os.urandom(row["size"])
    )
    client = source_s3(source)
    client.put_object(Bucket=SOURCE_BUCKET, Key=changed_key, Body=b"changed at the source")
    gone_key = "v/11"  # the last key: found missing after the listing ended
    client.delete_object(Bucket=SOURCE_BUCKET, Key=gone_key)

    result = verify(fed, run_id, tmp_path / "verify-2.log")
    assert result.color is Color.RED
    assert "verify found problems with 3 of 12 objects" in result.reason
    found = problems(fed, run_id)
    assert set(found) == {corrupt_key, changed_key, gone_key}, found
    assert found[gone_key] == "the source object no longer exists"
    assert f"on {row['backend']} is corrupt (repair queued)" in found[corrupt_key]
    assert "changed since it was imported" in found[changed_key]
    # The replica was marked and its repair queued (the agents may have repaired it already) ...
    repairs = fed.sql(
        "SELECT payload->>'reason' AS reason FROM jobs WHERE kind = 'repair'"
        " AND (payload->>'version_pk')::bigint = (SELECT version_pk FROM replicas WHERE id = $1)"
        " AND (payload->>'backend_id')::bigint = (SELECT backend_id FROM replicas WHERE id = $1)",
        row["id"],
    )
    assert [r["reason"] for r in repairs] == ["corrupt"]
    fed.wait_for(
        lambda: (
            fed.sql("SELECT status FROM replicas WHERE id = $1", row["id"]) == [{"status": "ok"}]
        ),
        timeout_s=120,
        what="the corrupt replica's repair",
    )
    # ... and the repair put the recorded bytes back on the backend.
    (repaired,) = fed.sql("SELECT locator, sha256 FROM replicas WHERE id = $1", row["id"])
    stored = backend(fed, row["backend"]).get_object(
        Bucket=f"store-{row['backend']}", Key=repaired["locator"]
    )
    assert hashlib.sha256(stored["Body"].read()).digest() == bytes(repaired["sha256"])
    # ... and with the source as it was, a new verification is GREEN again.
    client.put_object(Bucket=SOURCE_BUCKET, Key=changed_key, Body=VERIFY[changed_key])
    client.put_object(Bucket=SOURCE_BUCKET, Key=gone_key, Body=VERIFY[gone_key])
    assert verify(fed, run_id, tmp_path / "verify-3.log").color is Color.GREEN
    assert problems(fed, run_id) == {}


# -- 1a. an ImportWorker's process killed midway ------------------------------------------------
def test_a_worker_killed_midway_the_run_still_ends_green(
    fed: Federation, tenant: Tenant, source: MotoServer, tmp_path: Path
) -> None:
    versioned_bucket(tenant, "killed")
    run_id = import_run(fed, tenant, source, "killed")
    proc = driver(run_id, tmp_path / "driver.log")
    try:
        # A worker holding a copy job some of whose objects it committed, not yet recorded.
        def holder() -> list[dict[str, Any]]:
            if committed(fed, "killed") < 10:
                return []
            return fed.sql(
                "SELECT id, lease_owner FROM jobs WHERE kind = 'import_copy'"
                " AND status = 'leased' AND (payload->>'run_id')::bigint = $1",
                run_id,
            )

        fed.wait_for(lambda: bool(holder()), timeout_s=300, what="a worker holding a job")
        job = holder()[0]
        pid = int(str(job["lease_owner"]).rsplit(":", 1)[1])
        done_before = fed.sql("SELECT objects_done FROM import_runs WHERE id = $1", run_id)
        os.kill(pid, signal.SIGKILL)
        assert done_before[0]["objects_done"] < len(WHOLE), "killed too late to test anything"
        code = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "driver.log").read_text()
    assert code == 0, log
    wait_green(fed, run_id)
    assert_every_key_once(fed, "killed", WHOLE)
    # The killed worker's job was leased again (its lease expired) and finished.
    again = fed.sql("SELECT status, attempts FROM jobs WHERE id = $1", job["id"])[0]
    assert (again["status"], again["attempts"] >= 2) == ("done", True), again
    run = db_call(fed, lambda conn: R.get_run(conn, run_id))
    assert (run.objects_done, run.errors) == (len(WHOLE), 0)


# -- 1b. PostgreSQL restarted midway ----------------------------------------------------------
@pytest.mark.skipif(PG_RESTART_SKIPPED, reason="BP_TEST_SKIP_PG_RESTART is set")
def test_postgres_restarted_midway_the_run_continues_to_green(
    fed: Federation, tenant: Tenant, source: MotoServer, tmp_path: Path
) -> None:
    versioned_bucket(tenant, "pgrestart")
    run_id = import_run(fed, tenant, source, "pgrestart")
    proc = driver(run_id, tmp_path / "driver.log")
    try:
        fed.wait_for(
            lambda: committed(fed, "pgrestart") >= 10, timeout_s=300, what="the first commits"
        )
        restart_postgres()
        code = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "driver.log").read_text()
    assert code == 0, log
    # The database really restarted while the run was going on (it started before, ended after).
    (times,) = fed.sql(
        "SELECT pg_postmaster_start_time() AS up, started_at, finished_at FROM import_runs"
        " WHERE id = $1",
        run_id,
    )
    assert times["started_at"] < times["up"] < times["finished_at"], times
    wait_green(fed, run_id)
    assert_every_key_once(fed, "pgrestart", WHOLE)
    run = db_call(fed, lambda conn: R.get_run(conn, run_id))
    assert (run.objects_done, run.errors) == (len(WHOLE), 0)
